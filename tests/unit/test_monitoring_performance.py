"""Outcomes join, rolling realised metrics (as the leaderboard defines them) and CBPE estimates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fulqrun_ml.monitoring.drift import MonitoringInputError
from fulqrun_ml.monitoring.performance import (
    compare_estimates,
    estimate_performance,
    expected_auc_closed_form,
    join_outcomes,
    performance_by_window,
    performance_to_dict,
    rank_auc,
    realised_metrics,
)
from fulqrun_ml.tasks.metrics import binary_report, ece_noise_floor


def _log(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["entity_id", "predicted_at", "probability"])


def test_join_keeps_only_predictions_made_before_the_close() -> None:
    predictions = _log(
        [
            ("D1", "2026-10-01", 0.6),
            ("D1", "2026-10-20", 0.7),
            ("D1", "2026-11-02", 0.9),  # after D1 closed: could have seen the answer
            ("D2", "2026-10-05", 0.3),  # D2 still open: unresolved
            ("D3", "2026-10-06", 0.2),
        ]
    )
    outcomes = pd.DataFrame(
        {"entity_id": ["D1", "D3"], "closed_at": ["2026-11-01", "2026-10-30"], "won": [True, False]}
    )
    joined, summary = join_outcomes(predictions, outcomes)
    assert summary.after_close_dropped == 1 and summary.labelled == 3 and summary.unresolved == 1
    assert joined["label"].tolist()[:2] == [1.0, 1.0] and np.isnan(joined["label"].iloc[2])
    assert joined["label"].iloc[3] == 0.0


def test_join_errors_name_the_column() -> None:
    predictions = _log([("D1", "2026-10-01", 0.6)])
    with pytest.raises(MonitoringInputError, match="'closed_at'"):
        join_outcomes(predictions, pd.DataFrame({"entity_id": ["D1"], "won": [1]}))
    dup = pd.DataFrame({"entity_id": ["D1", "D1"], "closed_at": ["2026-11-01"] * 2, "won": [1, 0]})
    with pytest.raises(MonitoringInputError, match="more than one row"):
        join_outcomes(predictions, dup)
    text = pd.DataFrame({"entity_id": ["D1"], "closed_at": ["2026-11-01"], "won": ["True"]})
    assert join_outcomes(predictions, text)[0]["label"].tolist() == [1.0]
    with pytest.raises(MonitoringInputError, match="'won'"):
        join_outcomes(predictions, text.assign(won="maybe"))
    with pytest.raises(MonitoringInputError, match="'probability'"):
        join_outcomes(_log([("D1", "2026-10-01", 1.5)]), dup.iloc[:1])


def test_realised_metrics_agree_with_the_leaderboard_definitions() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 600)
    y = (rng.random(600) < p).astype(float)
    ours, theirs = realised_metrics(p, y, noise_floor_draws=50), binary_report(p, y)
    assert ours["auc"] == pytest.approx(roc_auc_score(y, p)) == pytest.approx(theirs["auc"], abs=1e-6)
    for metric in ("brier", "ece", "log_loss"):
        assert ours[metric] == pytest.approx(theirs[metric], abs=1e-5), metric
    assert sum(b["n"] for b in ours["calibration_curve"]) == 600
    assert ours["ece"] < ours["ece_noise_floor_p99"]  # calibrated: within the floor
    floor = ece_noise_floor(p, draws=50)  # the leaderboard's floor, reproduced exactly
    assert (ours["ece_noise_floor"], ours["ece_noise_floor_p90"]) == (floor["mean"], floor["p90"])
    assert realised_metrics(p, np.ones(600), noise_floor_draws=10)["auc"] is None  # one class: undefined


def test_rank_auc_handles_ties_and_batches() -> None:
    p = np.array([0.1, 0.4, 0.4, 0.8])
    y = np.array([[0, 1, 0, 1], [1, 0, 0, 1]])
    assert rank_auc(p, y).tolist() == pytest.approx([roc_auc_score(y[0], p), roc_auc_score(y[1], p)])


def test_cbpe_estimates_match_labels_drawn_from_calibrated_probabilities() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(2, 3, 2000)
    estimate = estimate_performance(p, draws=200)
    assert estimate["accuracy"] == pytest.approx(np.mean(np.maximum(p, 1 - p)))
    assert estimate["auc_closed_form"] == pytest.approx(estimate["auc"], abs=0.01)
    hits = 0
    for seed in range(20):
        y = (np.random.default_rng(100 + seed).random(p.size) < p).astype(float)
        realised = realised_metrics(p, y, noise_floor_draws=10)
        comparison = compare_estimates(estimate, realised)
        hits += comparison["auc_within_band"]
        assert comparison["abs_error"]["brier"] < 0.01 and comparison["abs_error"]["accuracy"] < 0.03
    assert hits >= 15  # a 90% band


def test_cbpe_is_off_when_the_probabilities_are_not_calibrated() -> None:
    """The estimate trusts calibration; a downturn (true rate 10 points lower) shows up as the gap."""
    rng = np.random.default_rng(2)
    p = rng.beta(2, 3, 3000)
    y = (rng.random(p.size) < np.clip(p - 0.1, 0, 1)).astype(float)
    comparison = compare_estimates(estimate_performance(p), realised_metrics(p, y, noise_floor_draws=10))
    assert comparison["error"]["win_rate"] == pytest.approx(-0.1, abs=0.02)


def test_closed_form_auc_of_perfectly_separable_probabilities() -> None:
    assert expected_auc_closed_form(np.array([1e-9, 1 - 1e-9])) == pytest.approx(1.0, abs=1e-6)


def test_performance_by_week_and_segment() -> None:
    rng = np.random.default_rng(3)
    n = 1200
    p = rng.uniform(0.1, 0.9, n)
    predictions = pd.DataFrame(
        {
            "entity_id": [f"D{i}" for i in range(n)],
            "predicted_at": pd.Timestamp("2026-11-02", tz="UTC") + pd.to_timedelta(rng.integers(0, 14 * 24, n), "h"),
            "probability": p,
            "region": rng.choice(["na", "emea"], n),
        }
    )
    closed = predictions.sample(900, random_state=0)
    outcomes = pd.DataFrame(
        {
            "entity_id": closed["entity_id"],
            "closed_at": closed["predicted_at"] + pd.Timedelta(days=30),
            "won": rng.random(900) < closed["probability"].to_numpy(),
        }
    )
    joined, summary = join_outcomes(predictions, outcomes)
    windows = performance_by_window(joined, "W-SUN", "region", min_samples=100, noise_floor_draws=20, cbpe_draws=50)
    assert [(w.window_start, w.segment) for w in windows] == [
        ("2026-11-02", "all"), ("2026-11-02", "emea"), ("2026-11-02", "na"),
        ("2026-11-09", "all"), ("2026-11-09", "emea"), ("2026-11-09", "na"),
    ]  # fmt: skip
    assert sum(w.n for w in windows if w.segment == "all") == n
    assert all(w.realised is not None and w.comparison is not None for w in windows)
    report = performance_to_dict(windows, summary)
    assert report["join"]["labelled"] == 900 and report["cbpe_mean_abs_error"]["auc"] < 0.1
    few = performance_by_window(joined, "W-SUN", min_samples=10_000, noise_floor_draws=10, cbpe_draws=10)
    assert all(w.realised is None for w in few)  # labels not yet in: CBPE only
