"""Data quality per feature and window: nulls, type errors, unknown categories vs a fitted spec, out-of-range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature
from fulqrun_ml.monitoring.drift import MonitoringInputError, spec_columns
from fulqrun_ml.monitoring.quality import QualityThresholds, ReferenceProfile, quality_by_window, quality_report


@pytest.fixture
def reference() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"value": rng.uniform(10, 100, 500), "industry": rng.choice(["tech", "retail"], 500)})


def test_clean_traffic_has_no_issues(reference: pd.DataFrame) -> None:
    profile = ReferenceProfile.from_frame(reference, ["value"], ["industry"])
    report = quality_report(reference.sample(200, random_state=1), profile)
    assert report.issues == {} and report.max_null_rate_excess == 0.0


def test_rates_are_measured_per_check(reference: pd.DataFrame) -> None:
    profile = ReferenceProfile.from_frame(reference, ["value"], ["industry"])
    current = pd.DataFrame(
        {
            # 10 rows: 2 null, 1 not a number, 2 out of the reference's [min, max], 5 fine
            "value": [None, None, "12k", 1e6, -5.0, 50.0, 51.0, 52.0, 53.0, 54.0],
            "industry": ["tech", "energy", None, "tech", "retail", "tech", "tech", "energy", "tech", "tech"],
        }
    )
    report = quality_report(current, profile)
    value, industry = report.features
    assert value.null_rate == pytest.approx(0.2) and value.type_error_rate == pytest.approx(0.1)
    assert value.out_of_range_rate == pytest.approx(0.2)
    assert set(value.issues) == {"null_rate", "type_errors", "out_of_range"}
    assert industry.unknown_rate == pytest.approx(0.2) and industry.null_rate == pytest.approx(0.1)
    assert set(industry.issues) == {"null_rate", "unknown_categories"}
    assert report.max_null_rate_excess == pytest.approx(0.2)


def test_unknown_categories_follow_the_fitted_spec_vocabulary(reference: pd.DataFrame) -> None:
    spec = FeatureSpec(
        numeric=(NumericFeature("value", "deal value"),), categorical=(CategoricalFeature("industry", "i"),)
    )
    fitted = spec.fit(reference[reference["industry"] == "tech"])  # the model only ever saw "tech"
    numeric, categorical, vocabularies = spec_columns(fitted)
    profile = ReferenceProfile.from_frame(reference, numeric, categorical, vocabularies=vocabularies)
    report = quality_report(reference, profile)
    share_retail = float((reference["industry"] == "retail").mean())
    assert report.features[1].unknown_rate == pytest.approx(share_retail)
    assert "unknown_categories" in report.features[1].issues


def test_quantile_ranges_and_windows(reference: pd.DataFrame) -> None:
    thresholds = QualityThresholds.from_config({"range_quantiles": [0.05, 0.95], "out_of_range_threshold": 0.2})
    profile = ReferenceProfile.from_frame(reference, ["value"], [], thresholds)
    current = reference.assign(predicted_at=pd.date_range("2026-11-02", periods=500, freq="h", tz="UTC"))
    reports = quality_by_window(current, profile, "predicted_at", "W-SUN", thresholds)
    assert len(reports) == 3 and sum(r.n for r in reports) == 500
    rates = [r.features[0].out_of_range_rate for r in reports]
    assert all(0.03 < rate < 0.2 for rate in rates)  # ~10% of the reference lies outside its 5-95% range


def test_bad_inputs_name_the_field(reference: pd.DataFrame) -> None:
    with pytest.raises(MonitoringInputError, match="'missing'"):
        ReferenceProfile.from_frame(reference, ["missing"], [])
    profile = ReferenceProfile.from_frame(reference, ["value"], ["industry"])
    with pytest.raises(MonitoringInputError, match="'industry'"):
        quality_report(reference[["value"]], profile)
    with pytest.raises(MonitoringInputError, match=r"quality\.range_quantiles"):
        QualityThresholds.from_config({"range_quantiles": [0.9, 0.1]})
