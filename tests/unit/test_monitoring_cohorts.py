"""Drift cohorts: a shift confined to new records is invisible in the whole window and caught in its cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.monitoring.alerts import AlertManager, observations_from_results, rules_from_config
from fulqrun_ml.monitoring.cohorts import cohort_reports, cohorts_from_config
from fulqrun_ml.monitoring.drift import MonitoringInputError, drift_report

CONFIG = {"drift_cohorts": [{"name": "new_deals", "query": "deal_age_days < 14"}]}
RULE = {"name": "feature_drift", "metric": "drift.features_drifted", "comparison": ">=", "threshold": 1,
        "min_samples": 200}  # fmt: skip


def _traffic(rng: np.random.Generator, n: int, new_share: float, new_value_shift: float) -> pd.DataFrame:
    """Open deals: `new_share` of them younger than 14 days, whose values move by `new_value_shift` sd."""
    new = rng.random(n) < new_share
    age = np.where(new, rng.uniform(0, 14, n), rng.uniform(14, 200, n))
    value = rng.normal(0, 1, n) + np.where(new, new_value_shift, 0.0)
    return pd.DataFrame({"deal_age_days": age, "value": value})


def test_a_shift_in_new_deals_only_is_caught_in_their_cohort():
    rng = np.random.default_rng(2)  # whole-window KS p = 0.008 here, against alpha 0.001; the cohort's p < 1e-6
    reference, current = _traffic(rng, 20_000, 0.12, 0.0), _traffic(rng, 2_500, 0.12, 0.5)
    whole = drift_report(reference, current, numeric=["value"])
    cohort = cohort_reports(cohorts_from_config(CONFIG), reference, current, numeric=["value"])
    assert whole.drifted_features == []  # 12 % of the rows moved: below what the whole window can see
    (report,) = cohort.reports
    assert report.segment == "new_deals" and report.drifted_features == ["value"] and cohort.skipped == []
    assert 200 < report.n_current < 400
    observed = observations_from_results({"drift": {"windows": [whole.to_dict(), report.to_dict()]}})
    fired = AlertManager(rules_from_config([RULE])).evaluate(observed).fired
    assert [(a.rule, a.segment) for a in fired] == [("feature_drift", "new_deals")]
    # The same traffic without the shift: the cohort stays quiet.
    quiet = cohort_reports(cohorts_from_config(CONFIG), reference, _traffic(rng, 2_500, 0.12, 0.0), numeric=["value"])
    assert quiet.reports[0].drifted_features == []


def test_cohorts_are_validated_and_skipped_with_a_reason():
    for bad, field in (
        ({"drift_cohorts": "deal_age_days < 14"}, "drift_cohorts"),
        ({"drift_cohorts": [{"name": "x"}]}, r"drift_cohorts\[0\]"),
        ({"drift_cohorts": [{"name": "all", "query": "a < 1"}]}, r"drift_cohorts\[0\]\.name"),
        ({"drift_cohorts": [CONFIG["drift_cohorts"][0]] * 2}, r"drift_cohorts\[1\]\.name"),
    ):
        with pytest.raises(MonitoringInputError, match=field):
            cohorts_from_config(bad)
    assert cohorts_from_config({}) == []
    frame = pd.DataFrame({"score": [0.1, 0.2]})  # a lead model's traffic: no deal age
    skipped = cohort_reports(cohorts_from_config(CONFIG), frame, frame, numeric=["score"])
    assert skipped.reports == [] and skipped.skipped[0]["name"] == "new_deals"
    broken = cohorts_from_config({"drift_cohorts": [{"name": "x", "query": "score <<< 1"}]})
    with pytest.raises(MonitoringInputError, match=r"drift_cohorts\.x\.query"):
        cohort_reports(broken, frame, frame, numeric=["score"])
