"""Fairness by group (evaluation/fairness.py): metrics against hand computations, gaps, the size floor, the
ThresholdOptimizer mitigation and its measured cost, rep tenure from the users table, and clear input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.datamodules.task_builders import REP_TENURE_COLUMN, DealWinBuilder
from fulqrun_ml.evaluation.fairness import (
    FairnessInputError,
    by_group,
    fairness_gaps,
    fairness_report,
    gaps,
    tenure_bands,
)
from fulqrun_ml.registry.fairness_gate import FairnessSettings

SETTINGS = FairnessSettings(attributes=("region", "rep_tenure"), min_group_size=5)


def test_tenure_bands_follow_the_edges_and_mark_unknown_reps():
    bands = tenure_bands(np.array([0.0, 179.9, 180.0, 400.0, 730.0, 5000.0, np.nan]), (180.0, 365.0, 730.0))
    assert bands.tolist() == ["<180d", "<180d", "180-365d", "365-730d", "730d+", "730d+", "unknown"]


def test_group_metrics_equal_a_hand_computation():
    labels = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    probs = np.array([0.9, 0.4, 0.6, 0.1, 0.8, 0.7, 0.2, 0.3])
    groups = np.array(["a", "a", "a", "a", "b", "b", "b", "b"], dtype=object)
    table = by_group(labels, probs, groups, FairnessSettings(threshold=0.5, ece_bins=10))
    a, b = table["a"], table["b"]
    assert a["n"] == 4 and b["n"] == 4
    assert a["selection_rate"] == pytest.approx(2 / 4)  # 0.9, 0.6 >= 0.5
    assert a["tpr"] == pytest.approx(1 / 2) and a["fpr"] == pytest.approx(1 / 2)
    assert b["tpr"] == pytest.approx(1.0) and b["fpr"] == pytest.approx(1 / 3)
    assert a["mean_predicted"] == pytest.approx(0.5) and a["observed_rate"] == pytest.approx(0.5)
    assert b["calibration_error"] == pytest.approx(np.mean([0.8, 0.7, 0.2, 0.3]) - 0.25)
    # ECE of group a with 10 bins: every row is in its own bin -> mean |p - y|.
    assert a["ece"] == pytest.approx(np.mean(np.abs(probs[:4] - labels[:4])))


def test_gaps_leave_out_groups_under_the_size_floor_and_name_the_groups():
    table = {
        "big_a": {"n": 50, "selection_rate": 0.2, "tpr": 0.5, "fpr": 0.1, "ece": 0.05, "calibration_error": 0.02},
        "big_b": {"n": 60, "selection_rate": 0.5, "tpr": 0.7, "fpr": 0.3, "ece": 0.02, "calibration_error": -0.08},
        "tiny": {"n": 3, "selection_rate": 1.0, "tpr": 1.0, "fpr": 1.0, "ece": 0.9, "calibration_error": 0.9},
    }
    result = gaps(table, min_group_size=30)
    assert result["selection_rate"] == {"gap": pytest.approx(0.3), "high": "big_b", "low": "big_a"}
    assert result["fpr"]["gap"] == pytest.approx(0.2)
    assert result["calibration"] == {"gap": pytest.approx(0.08), "high": "big_b", "low": None}
    assert gaps(table, min_group_size=55) == {"calibration": {"gap": pytest.approx(0.08), "high": "big_b", "low": None}}


def synthetic(n: int, seed: int, bias: float) -> tuple[pd.DataFrame, np.ndarray]:
    """Two regions with the same truth; the scorer adds `bias` to region "south"'s scores."""
    rng = np.random.default_rng(seed)
    region = rng.choice(["north", "south"], n)
    truth = rng.uniform(0.05, 0.95, n)
    labels = (rng.random(n) < truth).astype(float)
    scores = np.clip(truth + np.where(region == "south", bias, 0.0), 0.0, 1.0)
    frame = pd.DataFrame({"label": labels, "region": region, REP_TENURE_COLUMN: rng.uniform(0, 1200, n)})
    return frame, scores


def test_a_biased_scorer_shows_large_gaps_and_an_unbiased_one_small():
    fair, fair_scores = synthetic(4000, 0, bias=0.0)
    unfair, unfair_scores = synthetic(4000, 0, bias=0.3)
    fair_gaps = fairness_gaps(fair, fair_scores, SETTINGS)["region"]
    unfair_gaps = fairness_gaps(unfair, unfair_scores, SETTINGS)["region"]
    assert fair_gaps["tpr"]["gap"] < 0.05 and fair_gaps["calibration"]["gap"] < 0.03
    assert unfair_gaps["fpr"]["gap"] > 0.2 and unfair_gaps["fpr"]["high"] == "south"
    assert unfair_gaps["calibration"]["gap"] > 0.2 and unfair_gaps["calibration"]["high"] == "south"


def test_the_threshold_optimizer_closes_the_gap_at_a_measured_cost():
    val, val_scores = synthetic(3000, 1, bias=0.3)
    test, test_scores = synthetic(3000, 2, bias=0.3)
    report = fairness_report(test, test_scores, SETTINGS, val, val_scores)
    mitigation = report["mitigation"]
    assert mitigation["attribute"] == "region"  # auto: the attribute with the largest TPR/FPR gap
    cost = mitigation["cost"]
    assert cost["equalized_odds_gap_after"] < 0.5 * cost["equalized_odds_gap_before"]
    plain = (test_scores >= 0.5).astype(int)
    assert cost["accuracy_before"] == pytest.approx(float(np.mean(plain == test["label"])))
    assert cost["auc_change"] == pytest.approx(cost["auc_after"] - cost["auc_before"])
    assert set(report["summary"]["gaps"]) == {"region", "rep_tenure"}
    assert report["summary"]["mitigation"]["cost"] == cost


def test_a_missing_group_column_is_reported_not_invented():
    frame, scores = synthetic(200, 3, bias=0.0)
    report = fairness_report(frame.drop(columns=[REP_TENURE_COLUMN]), scores, SETTINGS)
    assert "rep_tenure" not in report["attributes"]
    assert REP_TENURE_COLUMN in report["missing_attributes"]["rep_tenure"]
    assert report["summary"]["missing_attributes"] == ["rep_tenure"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f, s: (f, s[:-1]), "holdout.probabilities"),
        (lambda f, s: (f, s + 2.0), "holdout.probabilities"),
        (lambda f, s: (f.assign(label=f["label"] * 3), s), "holdout.label"),
        (lambda f, s: (f.drop(columns=["label"]), s), "holdout.label"),
    ],
)
def test_bad_inputs_are_errors_naming_the_field(change, field):
    frame, scores = synthetic(50, 4, bias=0.0)
    with pytest.raises(FairnessInputError) as err:
        fairness_gaps(*change(frame, scores), SETTINGS)
    assert err.value.field == field


def test_the_deal_win_frame_carries_rep_tenure_from_the_users_table(tiny_crm):
    tables = tiny_crm.tables
    opps = tables.opportunities.head(20)
    as_of = pd.Timestamp("2025-03-01", tz="UTC")
    frame = pd.DataFrame({"opportunity_id": opps["id"].to_numpy(), "as_of": as_of})
    days = DealWinBuilder().group_columns(tables, frame)[REP_TENURE_COLUMN]
    joined = tables.users.set_index("id")["created_at"].reindex(opps["assigned_to"]).to_numpy()
    expected = (as_of - pd.to_datetime(joined, utc=True)).total_seconds() / 86400.0
    np.testing.assert_allclose(days, np.asarray(expected, dtype=float))
