"""Drift statistics against scipy and hand computations; planted shifts flagged, identical data not."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fulqrun_ml.monitoring.drift import (
    UNKNOWN_CATEGORY,
    DriftThresholds,
    MonitoringInputError,
    categorical_drift,
    category_counts,
    drift_by_window,
    drift_report,
    numeric_drift,
    numeric_psi,
    psi_from_shares,
)
from fulqrun_ml.monitoring.drift_check import CATEGORICAL, NUMERIC, error_rates, synthetic_window


def test_psi_matches_a_hand_computation() -> None:
    # (0.5 - 0.25) ln(0.5 / 0.25) + 0 + (0.25 - 0.5) ln(0.25 / 0.5) = 0.5 ln 2
    assert psi_from_shares(np.array([0.25, 0.25, 0.5]), np.array([0.5, 0.25, 0.25])) == pytest.approx(0.5 * math.log(2))
    assert psi_from_shares(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == 0.0


def test_numeric_psi_uses_reference_quantile_bins() -> None:
    reference = np.arange(1000, dtype=float)  # quartile edges 249.75, 499.5, 749.25
    current = np.array([10.0] * 50 + [600.0] * 150)  # shares 0.25, 0, 0.75, 0
    expected = (
        (0.25 - 0.25) * 0
        + (1e-4 - 0.25) * math.log(1e-4 / 0.25)
        + (0.75 - 0.25) * math.log(0.75 / 0.25)
        + (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    )
    assert numeric_psi(reference, current, bins=4) == pytest.approx(expected)
    assert numeric_psi(reference, reference, bins=10) == pytest.approx(0.0)


def test_numeric_statistics_equal_scipy() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 2, 400), rng.normal(0.3, 2, 300)
    result = numeric_drift("x", ref, cur, DriftThresholds(min_samples=10))
    ks = stats.ks_2samp(ref, cur, method="asymp")
    assert result.stat("ks").statistic == pytest.approx(ks.statistic)
    assert result.stat("ks").p_value == pytest.approx(ks.pvalue)
    assert result.stat("wasserstein").statistic == pytest.approx(stats.wasserstein_distance(ref, cur) / ref.std())
    assert result.stat("psi").statistic == pytest.approx(numeric_psi(ref, cur, 10))


def test_categorical_chi2_equals_scipy_with_an_unknown_bucket() -> None:
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    cur = ["a"] * 20 + ["b"] * 30 + ["c"] * 30 + ["new"] * 20
    counts = category_counts(cur, ["a", "b", "c"])
    assert counts.tolist() == [20, 30, 30, 20]  # the last bucket is UNKNOWN_CATEGORY
    result = categorical_drift("industry", ref, cur, DriftThresholds(min_samples=10))
    expected = stats.chi2_contingency(np.array([[50, 30, 20, 0], [20, 30, 30, 20]]), correction=False)
    assert result.stat("chi2").statistic == pytest.approx(expected.statistic)
    assert result.stat("chi2").p_value == pytest.approx(expected.pvalue)
    assert result.drifted
    shares_ref, shares_cur = np.array([0.5, 0.3, 0.2, 0.0]), np.array([0.2, 0.3, 0.3, 0.2])
    assert result.stat("psi").statistic == pytest.approx(psi_from_shares(shares_ref, shares_cur))


def test_vocabulary_defines_the_known_categories() -> None:
    cur = ["a", "b", "c"] * 100
    assert category_counts(cur, ["a", "b", "c"]).tolist() == [100, 100, 100, 0]
    assert category_counts(cur, ["a", "b"]).tolist() == [100, 100, 100]  # "c" is unknown to this vocabulary
    assert category_counts(["z", None, "a"], ["a"]).tolist() == [1, 1]  # nulls are quality, not drift
    result = categorical_drift("x", ["a", "b"] * 100, cur, DriftThresholds(min_samples=10), vocabulary=["a", "b"])
    assert result.drifted and result.stat("psi").statistic > 1.0  # a third of the rows are unknown
    assert UNKNOWN_CATEGORY == "__unknown__"


def test_planted_shift_is_flagged_and_identical_distributions_are_not() -> None:
    rng = np.random.default_rng(7)
    reference = synthetic_window(5000, rng)
    control = drift_report(reference, synthetic_window(500, rng), NUMERIC, CATEGORICAL, "probability")
    assert control.drifted_features == [] and not control.prediction.drifted
    shifted = drift_report(
        reference, synthetic_window(500, rng, "score_mean_plus_10pct"), NUMERIC, CATEGORICAL, "probability"
    )
    assert shifted.drifted_features == ["score"]
    mix = drift_report(reference, synthetic_window(500, rng, "industry_mix_10pt"), NUMERIC, CATEGORICAL)
    assert mix.drifted_features == ["industry"]


def test_too_few_rows_are_insufficient_not_drifted() -> None:
    result = numeric_drift("x", np.arange(100.0), np.arange(50.0) + 1000, DriftThresholds(min_samples=200))
    assert result.status == "insufficient" and not result.drifted


def test_tests_are_bonferroni_split_over_features() -> None:
    report = drift_report(
        pd.DataFrame({"a": np.arange(300.0), "b": np.arange(300.0), "c": ["x"] * 300}),
        pd.DataFrame({"a": np.arange(300.0), "b": np.arange(300.0), "c": ["x"] * 300}),
        ["a", "b"],
        ["c"],
        thresholds=DriftThresholds(alpha=0.03),
    )
    assert [f.stat("ks").threshold for f in report.features if f.kind == "numeric"] == [pytest.approx(0.01)] * 2
    assert report.features[2].stat("chi2").threshold == pytest.approx(0.01)


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(MonitoringInputError, match="'value'"):
        drift_report(pd.DataFrame({"x": [1.0]}), pd.DataFrame({"x": [1.0]}), ["value"])
    with pytest.raises(MonitoringInputError, match=r"drift\.alpha"):
        DriftThresholds.from_config({"alpha": 2})
    with pytest.raises(MonitoringInputError, match=r"drift\.nonsense"):
        DriftThresholds.from_config({"nonsense": 1})
    with pytest.raises(MonitoringInputError, match=r"drift\.decide_by"):
        DriftThresholds.from_config({"decide_by": ["auc"]})


def test_windows_split_the_current_traffic() -> None:
    rng = np.random.default_rng(3)
    reference = synthetic_window(2000, rng)
    week1 = synthetic_window(300, rng).assign(predicted_at=pd.Timestamp("2026-11-03", tz="UTC"))
    week2 = synthetic_window(300, rng, "industry_mix_10pt").assign(predicted_at=pd.Timestamp("2026-11-10", tz="UTC"))
    reports = drift_by_window(
        reference, pd.concat([week1, week2]), "predicted_at", "W-SUN", categorical=["industry"], numeric=["value"]
    )
    assert [r.window_start for r in reports] == ["2026-11-02", "2026-11-09"]
    assert [r.drifted_features for r in reports] == [[], ["industry"]]


@pytest.mark.slow
def test_false_alarm_rate_and_detection_over_repeats() -> None:
    """200 no-drift windows at the default thresholds: (almost) never a flag; a 10% shift caught."""
    rates = error_rates(repeats=200, n_reference=3000, n_current=400, seed=11, shifts=())
    assert rates["false_alarm_rate"] <= 0.01
    detection = error_rates(repeats=30, n_reference=3000, n_current=400, seed=12)["detection_rate"]
    assert detection["score_mean_plus_10pct"] >= 0.95
    assert detection["industry_mix_10pt"] >= 0.95
