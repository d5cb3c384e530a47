"""CQR offsets reach nominal coverage on exchangeable synthetic data, whatever the raw intervals' width."""

import numpy as np
import pytest

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.conformal import apply_offsets, conformal_quantile, fit_cqr_offsets, symmetric_pairs
from fulqrun_ml.forecasting.metrics import coverage

QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9]


def synthetic(n: int, width: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heteroscedastic targets around a known level; 'raw' quantiles are the level +- width * scale * z."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(10, 1000, size=n)
    level = scale * 5.0
    y = level[:, None] + scale[:, None] * rng.standard_normal((n, 2))
    z = np.array([-1.2816, -0.6745, 0.0, 0.6745, 1.2816])
    q = level[:, None, None] + width * scale[:, None, None] * z[None, None, :]
    return y, np.broadcast_to(q, (n, 2, 5)).copy(), scale


@pytest.mark.parametrize("width", [0.4, 1.0, 2.5])  # raw intervals too narrow, right, too wide
def test_calibrated_intervals_cover_nominal_share(width):
    y_cal, q_cal, s_cal = synthetic(4000, width, seed=1)
    y_test, q_test, s_test = synthetic(20000, width, seed=2)
    offsets = fit_cqr_offsets(y_cal, q_cal, s_cal, QUANTILES)
    adjusted = apply_offsets(q_test, offsets, s_test)
    assert coverage(y_test, adjusted[..., 0], adjusted[..., 4]) == pytest.approx(0.80, abs=0.015)
    assert coverage(y_test, adjusted[..., 1], adjusted[..., 3]) == pytest.approx(0.50, abs=0.015)
    raw_cover = coverage(y_test, q_test[..., 0], q_test[..., 4])
    assert (raw_cover < 0.7) if width < 1 else (raw_cover > 0.9 if width > 1 else True)
    assert np.all(offsets[:, 2] == 0) and np.all(adjusted[..., 1:] >= adjusted[..., :-1])


def test_conformal_quantile_is_finite_sample_conservative():
    scores = np.arange(1, 10, dtype=float)  # n = 9: rank ceil(10 * 0.8) = 8
    assert conformal_quantile(scores, 0.8) == 8.0
    assert conformal_quantile(scores, 0.99) == 9.0


def test_pairs_and_errors():
    assert symmetric_pairs(QUANTILES) == [(0, 4), (1, 3)]
    with pytest.raises(FulqrunMLError, match="no finite"):
        conformal_quantile(np.array([np.nan]), 0.8)
    with pytest.raises(FulqrunMLError, match="shape"):
        fit_cqr_offsets(np.zeros((3, 2)), np.zeros((3, 2, 4)), np.ones(3), QUANTILES)


def test_wape_floor_matches_the_poisson_limit():
    """Y = 5 x Poisson(100): E|Y - median| / E[Y] -> sqrt(2 / pi) / 10 ~ 0.080; more deals, lower floor."""
    from fulqrun_ml.forecasting.noise_floor import compound_poisson_wape_floor

    values = np.array([5.0])
    assert compound_poisson_wape_floor(np.array([500.0]), values, draws=20000) == pytest.approx(0.0798, abs=0.004)
    assert compound_poisson_wape_floor(np.array([5000.0]), values) < compound_poisson_wape_floor(
        np.array([50.0]), values
    )
