"""Leaderboard metric helpers against scikit-learn's reference implementations, and the leaderboard itself."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from fulqrun_ml.evaluation.leaderboard import LeaderboardError, compose_experiment, run_leaderboard, write_leaderboard
from fulqrun_ml.evaluation.scoring import holdout_scores
from fulqrun_ml.tasks.metrics import MetricInputError, accuracy_at, best_f1_threshold, lift_at, pr_auc


def scored(n: int = 2000, seed: int = 0, rounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Noisy scores that carry signal; `rounded` makes many ties, as a calibrated model's bins would."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=n) < 0.35
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 0.6)))
    return (np.round(p, 1) if rounded else p), y.astype(float)


@pytest.mark.parametrize("rounded", [False, True])
def test_pr_auc_is_sklearns_average_precision(rounded):
    p, y = scored(rounded=rounded)
    assert pr_auc(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-6)


@pytest.mark.parametrize(("seed", "rounded"), [(0, False), (1, False), (2, True)])
def test_best_f1_threshold_reaches_sklearns_best_f1(seed, rounded):
    p, y = scored(seed=seed, rounded=rounded)
    precision, recall, _ = precision_recall_curve(y, p)
    best_possible = np.nanmax(2 * precision * recall / np.where(precision + recall > 0, precision + recall, np.nan))
    threshold = best_f1_threshold(p, y)
    assert f1_score(y, p >= threshold) == pytest.approx(best_possible, abs=1e-9)
    assert f1_score(y, p > threshold) == pytest.approx(best_possible, abs=1e-9)  # no row sits on the cut


def test_accuracy_at_threshold_counts_p_at_or_above_as_positive():
    p, y = np.array([0.2, 0.5, 0.7, 0.9]), np.array([0.0, 1.0, 0.0, 1.0])
    assert accuracy_at(p, y, 0.5) == 0.75  # 0.5 counts as positive (right), 0.7 is the one miss
    assert accuracy_at(p, y, 0.51) == 0.5  # now 0.5 is called negative too
    p, y = scored()
    assert accuracy_at(p, y, 0.4) == pytest.approx(np.mean((p >= 0.4) == y))


def test_lift_at_ten_percent_is_top_decile_rate_over_base_rate():
    p, y = scored(n=1000)
    top = np.argsort(-p)[:100]
    assert lift_at(p, y, 0.1) == pytest.approx(y[top].mean() / y.mean())
    assert lift_at(p, y, 1.0) == pytest.approx(1.0)
    assert lift_at(y, y, 0.1) == pytest.approx(1 / y.mean())  # a perfect ranking


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        ([0.1, 0.2], [0, 1, 1], "rows"),
        ([0.1, 0.2], [1, 1], "single class"),
        ([0.1, np.nan], [0, 1], "finite"),
        ([0.1, 0.9], [0, 2], "0 or 1"),
    ],
)
def test_bad_inputs_say_what_is_wrong(probs, labels, message):
    for metric in (pr_auc, best_f1_threshold, lift_at):
        with pytest.raises(MetricInputError, match=message):
            metric(np.array(probs), np.array(labels))


def test_holdout_scores_pick_the_threshold_on_validation_and_apply_it_to_the_holdout():
    val_p, val_y = scored(seed=3)
    test_p, test_y = scored(seed=4)
    scores = holdout_scores(val_p, val_y, test_p, test_y)
    assert scores["best_f1_threshold_on_val"] == best_f1_threshold(val_p, val_y)
    assert scores["accuracy_at_best_f1"] == accuracy_at(test_p, test_y, scores["best_f1_threshold_on_val"])
    assert scores["pr_auc"] == pytest.approx(average_precision_score(test_y, test_p), abs=1e-6)
    assert scores["n"] == len(test_y)


@pytest.mark.slow
def test_leaderboard_runs_end_to_end_on_tiny_data(tmp_path):
    """One tiny model plus every baseline: the report has every row, honest parity and real timings."""
    tiny = ["data.source.n_opportunities=1500", "data.source.n_companies=300", "data.source.n_reps=10"]
    board = run_leaderboard(
        tmp_path / "runs",
        models=["mlp"],
        overrides=[*tiny, "trainer.max_epochs=2"],
        lightgbm_settings={"lightgbm_default": {}},
    )
    rows = {r["name"]: r for r in board["rows"]}
    assert set(rows) == {"mlp", "lightgbm_default", "logistic_regression", "rep", "oracle"}
    for row in rows.values():
        assert 0 <= row["auc"] <= 1 and 0 <= row["ece"] <= 1 and row["lift_at_10pct"] > 0, row["name"]
    mlp = rows["mlp"]
    assert mlp["export_parity_max_abs_diff"] <= 1e-5 and mlp["parameters"] > 0 and mlp["train_seconds"] > 0
    assert mlp["inference_us_per_row"]["batch_1"] > mlp["inference_us_per_row"]["batch_1024"] > 0
    assert rows["lightgbm_default"]["trees"] >= 1
    assert board["targets"]["auc_ratio_to_oracle"] == pytest.approx(mlp["auc"] / rows["oracle"]["auc"])
    json_path, md_path = write_leaderboard(board, tmp_path / "reports")
    assert json.loads(json_path.read_text())["data"]["data_hash"] == board["data"]["data_hash"]
    assert all(f"| {name} |" in md_path.read_text() for name in rows)


def test_unknown_model_is_named():
    with pytest.raises(LeaderboardError, match="no_such_model"):
        compose_experiment("no_such_model", Path("unused"))
