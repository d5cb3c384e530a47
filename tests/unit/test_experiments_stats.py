"""The always-valid test's arithmetic: a hand computation, its interval, and agreement with the z-test."""

import numpy as np
import pytest
from scipy import stats

from fulqrun_ml.monitoring.experiments_stats import (
    clopper_pearson,
    difference_and_variance,
    first_true,
    fixed_horizon_n_per_arm,
    msprt_half_width,
    msprt_log_lambda,
    msprt_path,
    z_test,
)


def test_lambda_matches_a_hand_computation():
    # control 40/100, treatment 60/100, tau = 0.1:
    # v = 0.4*0.6/100 + 0.6*0.4/100 = 0.0048; theta_hat = 0.2
    # Lambda = sqrt(0.0048 / 0.0148) * exp(0.01 * 0.04 / (2 * 0.0048 * 0.0148)) = 0.569495 * e^2.815315 = 9.50967
    diff, variance = difference_and_variance(100, 40, 100, 60)
    assert diff == pytest.approx(0.2)
    assert variance == pytest.approx(0.0048)
    assert np.exp(msprt_log_lambda(diff, variance, tau=0.1)) == pytest.approx(9.50967, rel=1e-5)
    path = msprt_path(np.array([100]), np.array([40]), np.array([100]), np.array([60]), tau=0.1, alpha=0.05)
    assert path.p_value[0] == pytest.approx(1 / 9.50967, rel=1e-5)  # 0.10516: not significant at 0.05
    assert not path.rejected[0]


def test_the_interval_is_where_lambda_crosses_one_over_alpha():
    diff, variance = difference_and_variance(800, 350, 900, 430)
    half = msprt_half_width(variance, tau=0.05, alpha=0.05)
    for theta0 in (diff - half, diff + half):
        assert np.exp(msprt_log_lambda(diff, variance, tau=0.05, theta0=theta0)) == pytest.approx(20.0)
    inside = np.exp(msprt_log_lambda(diff, variance, tau=0.05, theta0=diff + 0.9 * half))
    assert inside < 20.0


def test_a_single_look_rejection_implies_the_z_test_rejects_in_the_same_direction():
    """At one look the mSPRT needs |z| > ~2.45 where the z-test needs 1.96: it never rejects alone, and when
    both reject they agree on the sign. Its interval always contains the fixed-horizon 95% interval."""
    rng = np.random.default_rng(0)
    n = rng.integers(2_000, 200_000, size=(2, 5_000))
    base = rng.uniform(0.3, 0.6, size=5_000)
    rates = np.stack([base, base + rng.normal(0, 0.01, size=5_000)])
    s = rng.binomial(n, rates)[..., None]  # 5,000 independent experiments with one look each
    n = n[..., None]
    path = msprt_path(n[0], s[0], n[1], s[1], tau=0.05, alpha=0.05)
    z, p = z_test(n[0], s[0], n[1], s[1])
    assert path.rejected.sum() > 1_000  # the comparison is not vacuous
    assert np.all(p[path.rejected] < 0.05)
    assert np.all(np.sign(path.diff[path.rejected]) == np.sign(z[path.rejected]))
    _, variance = difference_and_variance(n[0], s[0], n[1], s[1])
    fixed_half = 1.959964 * np.sqrt(variance)
    assert np.all(path.ci_high - path.ci_low >= 2 * fixed_half)


def test_in_the_large_sample_limit_both_tests_find_a_real_effect():
    n = np.array([400_000])
    path = msprt_path(n, np.array([180_000]), n, np.array([184_000]), tau=0.05, alpha=0.05)  # 0.45 vs 0.46
    z, p = z_test(n, np.array([180_000]), n, np.array([184_000]))
    assert path.rejected[0] and p[0] < 1e-6 and z[0] > 0
    assert path.ci_low[0] > 0 and path.ci_low[0] < 0.01 < path.ci_high[0]


def test_running_p_value_and_intersected_interval_are_monotone_and_consistent():
    rng = np.random.default_rng(1)
    arm = rng.integers(0, 2, size=(300, 3_000))
    won = rng.uniform(size=arm.shape) < np.where(arm == 1, 0.52, 0.5)
    n_a, s_a = np.cumsum(arm == 0, 1), np.cumsum((arm == 0) & won, 1)
    n_b, s_b = np.cumsum(arm == 1, 1), np.cumsum((arm == 1) & won, 1)
    path = msprt_path(n_a, s_a, n_b, s_b, tau=0.05, alpha=0.05, min_per_arm=50)
    assert np.all(np.diff(path.p_value, axis=1) <= 0)
    assert np.all(np.diff(path.ci_low, axis=1) >= 0) and np.all(np.diff(path.ci_high, axis=1) <= 0)
    excludes_zero = (path.ci_low > 0) | (path.ci_high < 0)
    assert np.array_equal(path.rejected, excludes_zero)
    early = (n_a < 50) | (n_b < 50)
    assert np.all(path.p_value[early] == 1.0) and np.all(path.ci_low[early] == -1.0)


def test_degenerate_arms_do_not_produce_infinite_evidence():
    path = msprt_path(np.array([5]), np.array([0]), np.array([5]), np.array([5]), tau=0.05, alpha=0.05)
    assert np.isfinite(path.p_value).all() and np.isfinite(path.ci_low).all()


def test_first_true_and_clopper_pearson():
    assert first_true(np.array([[False, True, True], [False, False, False]])).tolist() == [1, -1]
    for k, n in [(0, 10), (3, 200), (200, 200), (57, 1000)]:
        exact = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((exact.low, exact.high), abs=1e-9)
    with pytest.raises(ValueError):
        clopper_pearson(0, 0)


def test_fixed_horizon_sample_size_matches_the_textbook_formula():
    # (1.959964 + 0.841621)^2 * (0.5 * 0.5 + 0.55 * 0.45) / 0.05^2 = 7.84888 * 0.4975 / 0.0025 = 1561.9 -> 1562
    assert fixed_horizon_n_per_arm(0.5, 0.05, 0.05, 0.8) == 1562
