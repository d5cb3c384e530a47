"""Value tests of the leaderboard's target checks on synthetic boards (no training): choices are made on
validation, claims are judged on intervals (met / not met / inconclusive), seeds combine into a mean and a
t-interval, and the calibration methods are compared on validation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from fulqrun_ml.benchmarks import leaderboard_binary, leaderboard_regression, leaderboard_survival
from fulqrun_ml.benchmarks.leaderboard_board import build_section, combine
from fulqrun_ml.benchmarks.leaderboard_calibration import calibration_choice, cross_fitted_calibration
from fulqrun_ml.benchmarks.leaderboard_kinds import Holdout, Scored
from fulqrun_ml.benchmarks.leaderboard_stats import INCONCLUSIVE, MET, NOT_MET

N = 3000
RNG = np.random.default_rng(0)
LABELS = (RNG.uniform(size=N) < 0.35).astype(float)


def holdout() -> Holdout:
    frames = {"val": pd.DataFrame({"label": LABELS[:500]}), "test": pd.DataFrame({"label": LABELS})}
    return Holdout("binary", None, frames, {}, "hash", {"test_rows": N, "val_rows": 500}, {})


def probabilities(signal: float, seed: int) -> np.ndarray:
    """Scores whose holdout AUC grows with `signal`."""
    noise = np.random.default_rng(seed).normal(size=N)
    return 1 / (1 + np.exp(-(signal * (LABELS - 0.35) + noise)))


def fit(name: str, kind: str, p: np.ndarray, val_auc: float, seed: int | None = None, **extra) -> Scored:
    """A binary row with every field the target check and the renderer read."""
    row = {
        "name": name,
        "kind": kind,
        "auc": roc_auc_score(LABELS, p),
        "val_auc": val_auc,
        "pr_auc": 0.5,
        "log_loss": 0.6,
        "brier": 0.2,
        "ece": 0.03,
        "ece_noise_floor": 0.015,
        "accuracy_at_0_5": 0.7,
        "accuracy_at_best_f1": 0.7,
        "lift_at_10pct": 1.5,
        **({} if seed is None else {"seed": seed}),
        **extra,
    }
    return Scored(row, p)


def section(fits: list[Scored], task: str = "deal_win") -> dict:
    built = build_section(leaderboard_binary.BINARY, holdout(), fits, task, resamples=300)
    return {**built, "task": task, "seeds": [0], "horizon_days": 90, "wall_seconds": 1.0,
            "data": {"data_hash": "hash", "sizes": {"train_rows": 1, "val_rows": 500, "test_rows": N}}}  # fmt: skip


def test_best_network_and_best_lightgbm_are_chosen_on_validation_not_on_the_holdout():
    """Validation and holdout orderings disagree: a selection on the holdout would pick mlp and lightgbm_tuned."""
    fits = [
        fit("tabm", "neural", probabilities(1.0, 1), val_auc=0.80),  # best on validation, weaker on the holdout
        fit("mlp", "neural", probabilities(3.0, 2), val_auc=0.75),
        fit("lightgbm_default", "baseline", probabilities(0.8, 3), val_auc=0.79),
        fit("lightgbm_tuned", "baseline", probabilities(2.5, 4), val_auc=0.70),
        fit("logistic_regression", "baseline", probabilities(0.5, 5), val_auc=0.60),
    ]
    board = section(fits)
    rows = {r["name"]: r for r in board["rows"]}
    assert rows["mlp"]["auc"] > rows["tabm"]["auc"] and rows["lightgbm_tuned"]["auc"] > rows["lightgbm_default"]["auc"]
    targets = board["targets"]
    assert targets["best_neural"] == "tabm" and targets["chosen_on"] == "val_auc"
    assert targets["best_lightgbm"] == "lightgbm_default"
    assert board["selection"] == {"metric": "val_auc", "best_neural": "tabm", "best_baseline": "lightgbm_default"}
    # The Δ column of every row is against the baseline chosen on validation.
    assert set(rows["lightgbm_tuned"]["paired"]) == {"lightgbm_default"}
    assert set(rows["tabm"]["paired"]) == {"lightgbm_default", "lightgbm_tuned", "logistic_regression"}


@pytest.mark.parametrize(
    ("neural_signal", "verdict"),
    [(3.0, MET), (0.4, NOT_MET), (None, INCONCLUSIVE)],  # None: the network's scores are LightGBM's, nudged
)
def test_best_neural_vs_lightgbm_is_judged_on_the_paired_interval(neural_signal, verdict):
    gbm = probabilities(1.2, 7)
    if neural_signal is None:
        neural = gbm + np.random.default_rng(8).normal(0, 1e-3, size=N)
    else:
        neural = probabilities(neural_signal, 9)
    board = section([fit("mlp", "neural", neural, 0.7), fit("lightgbm_default", "baseline", gbm, 0.7)])
    targets = board["targets"]
    lo, hi = targets["lightgbm_auc_diff_ci95"]
    assert targets["beats_lightgbm"] == verdict
    assert (lo > 0) == (verdict == MET) and (hi < 0) == (verdict == NOT_MET)
    assert targets["lightgbm_auc_diff"] == pytest.approx(
        roc_auc_score(LABELS, neural) - roc_auc_score(LABELS, gbm), abs=1e-9
    )
    markdown = "\n".join(leaderboard_binary.render_markdown(board))
    assert f"(paired bootstrap) — {verdict}." in markdown and "chosen on validation AUC" in markdown


def test_seeds_combine_into_a_mean_a_t_interval_and_a_worst_parity():
    fits = [
        fit("mlp", "neural", probabilities(1.0 + 0.2 * s, s), 0.70 + 0.01 * s, seed=s, export_parity_max_abs_diff=p)
        for s, p in zip((0, 1, 2), (1e-7, 3e-6, 2e-7), strict=True)
    ]
    row, predictions = combine(fits, leaderboard_binary.BINARY)
    aucs = [f.row["auc"] for f in fits]
    assert row["seeds"] == [0, 1, 2] and len(predictions) == 3 and "seed" not in row
    assert row["auc"] == pytest.approx(np.mean(aucs)) and row["val_auc"] == pytest.approx(0.71)
    lo, hi = row["interval"]["auc"]["ci95"]
    assert lo < np.mean(aucs) < hi and row["interval"]["auc"]["n"] == 3
    assert row["export_parity_max_abs_diff"] == 3e-6 and row["ece"] == 0.03  # a shared value keeps its type
    assert [s["auc"] for s in row["per_seed"]] == aucs
    board = section([*fits, fit("lightgbm_default", "baseline", probabilities(1.0, 5), 0.7)])
    assert "± " in "\n".join(leaderboard_binary.render_markdown(board))


def interval_row(name: str, auc: float, ece_ci: list[float], paired: dict) -> dict:
    return {
        "name": name,
        "kind": "neural",
        "auc": auc,
        "val_auc": auc,
        "ece": float(np.mean(ece_ci)),
        "ece_noise_floor": 0.01,
        "interval": {"auc": {"ci95": [auc - 0.01, auc + 0.01]}, "ece": {"ci95": ece_ci}},
        "paired": paired,
    }


@pytest.mark.parametrize(
    ("ece_ci", "ratio_ci", "rep_ci", "expected"),
    [
        ([0.010, 0.018], [0.975, 0.99], [0.01, 0.03], (MET, MET, MET)),
        ([0.015, 0.030], [0.95, 0.98], [-0.01, 0.03], (INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE)),
        ([0.021, 0.030], [0.90, 0.96], [-0.03, -0.01], (NOT_MET, NOT_MET, NOT_MET)),
    ],
)
def test_deal_win_targets_on_intervals(ece_ci, ratio_ci, rep_ci, expected):
    """ECE on its t-interval over seeds, AUC / oracle on the paired ratio interval, the rep on the paired Δ."""
    paired = {
        "oracle": {"auc": {"diff": -0.02, "ci95": [-0.03, -0.01], "ratio": np.mean(ratio_ci), "ratio_ci95": ratio_ci}},
        "rep": {"auc": {"diff": float(np.mean(rep_ci)), "ci95": rep_ci, "ratio": 1.0, "ratio_ci95": [1.0, 1.0]}},
    }
    rows = [
        interval_row("tabm", 0.75, ece_ci, paired),
        {"name": "oracle", "kind": "reference", "auc": 0.77, "val_auc": 0.78},
        {"name": "rep", "kind": "reference", "auc": 0.70, "val_auc": 0.71},
    ]
    targets = leaderboard_binary.target_check(rows, "deal_win")
    assert (targets["ece_met"], targets["auc_ratio_met"], targets["beats_rep"]) == expected
    other_task = leaderboard_binary.target_check(rows, "lead_conversion")
    assert "ece_met" not in other_task and "auc_ratio_met" not in other_task  # deal-win targets only


def test_no_network_no_targets():
    rows = [{"name": "lightgbm_default", "kind": "baseline", "auc": 0.7, "val_auc": 0.7}]
    assert leaderboard_binary.target_check(rows) == {}


def test_calibration_choice_is_made_on_cross_fitted_validation_log_loss():
    """Logits shifted by +1 (a base-rate shift): Platt's intercept wins on held-out validation halves; the choice
    is reported against the method the runs used, and the censoring weights reach every fit."""
    rng = np.random.default_rng(4)
    true_logits = rng.normal(0, 1.5, 1000)
    labels = (rng.uniform(size=true_logits.size) < 1 / (1 + np.exp(-true_logits))).astype(float)
    shifted = cross_fitted_calibration(true_logits + 1.0, labels)
    assert min(shifted, key=lambda m: shifted[m]["log_loss"]) == "platt"
    assert shifted["platt"]["ece"] < shifted["temperature"]["ece"]
    weights = np.where(labels == 1, 2.0, 1.0)
    weighted = cross_fitted_calibration(true_logits + 1.0, labels, weights, methods=("platt",))
    assert weighted["platt"] != shifted["platt"]

    isotonic_best = {m: {"log_loss": loss, "ece": 0.02} for m, loss in (("temperature", 0.60), ("platt", 0.58),
                                                                        ("isotonic", 0.55))}  # fmt: skip
    rows = [
        {"name": "mlp", "kind": "neural", "calibration": "platt", "calibration_cv": isotonic_best},
        {"name": "tabm", "kind": "neural", "calibration": "platt", "calibration_cv": shifted},
    ]
    choice = calibration_choice(rows)
    assert choice["by_model"] == {"mlp": "isotonic", "tabm": "platt"}
    expected = min(choice["by_method"], key=lambda m: choice["by_method"][m]["log_loss"])
    assert choice["pick"] == expected and choice["configured"] == "platt"
    assert choice["agrees"] is (expected == "platt")
    assert calibration_choice(rows[:1])["agrees"] is False
    assert calibration_choice([{"name": "lightgbm_default", "kind": "baseline"}]) is None


def regression_row(name: str, kind: str, rmse: float, val_rmse: float, paired: dict | None = None) -> dict:
    return {"name": name, "kind": kind, "rmse": rmse, "val_rmse": val_rmse, "mae": rmse * 0.8, "paired": paired}


def test_regression_targets_choose_on_validation_and_judge_on_intervals():
    def paired(gbm_ci, median_ci):
        return {
            "lightgbm_default": {"rmse": {"diff": float(np.mean(gbm_ci)), "ci95": gbm_ci}},
            "lightgbm_tuned": {"rmse": {"diff": 0.0, "ci95": [-9.0, 9.0]}},
            "ridge_regression": {"rmse": {"diff": 0.0, "ci95": [-9.0, 9.0]}},
            "stage_median": {"rmse": {"diff": float(np.mean(median_ci)), "ci95": median_ci}},
        }

    rows = [
        regression_row("mlp", "neural", 9.0, 12.0, paired([-3.0, -1.0], [-2.0, 1.0])),  # best holdout, worse val
        regression_row("tabm", "neural", 10.5, 10.0, paired([-0.5, 0.8], [-4.0, -2.0])),
        regression_row("lightgbm_default", "baseline", 10.0, 10.5),  # best on validation
        regression_row("lightgbm_tuned", "baseline", 9.5, 11.0),
        regression_row("ridge_regression", "baseline", 8.0, 13.0),  # not LightGBM: not the boosted reference
        regression_row("stage_median", "reference", 11.0, 11.0),
    ]
    targets = leaderboard_regression.target_check(rows)
    assert targets["best_neural"] == "tabm" and targets["best_lightgbm"] == "lightgbm_default"
    assert targets["beats_lightgbm"] == INCONCLUSIVE and targets["lightgbm_rmse_diff_ci95"] == [-0.5, 0.8]
    assert targets["references"]["stage_median"]["beaten"] == MET
    assert leaderboard_regression.target_check(rows[2:]) == {}  # no network, nothing to check


def test_survival_targets_choose_on_validation_and_judge_both_metrics():
    paired = {
        name: {
            "concordance": {"diff": 0.01, "ci95": c_ci},
            "integrated_brier": {"diff": -0.01, "ci95": brier_ci},
        }
        for name, c_ci, brier_ci in (
            ("lightgbm_default", [0.002, 0.02], [0.001, 0.01]),
            ("lightgbm_tuned", [-0.1, 0.1], [-0.1, 0.1]),
            ("km_stage", [-0.01, 0.02], [-0.02, -0.005]),
        )
    }
    base = {"integrated_brier": 0.1}
    rows = [
        {"name": "mlp", "kind": "neural", "concordance": 0.80, "val_concordance": 0.70, **base, "paired": paired},
        {"name": "tabm", "kind": "neural", "concordance": 0.75, "val_concordance": 0.78, **base, "paired": paired},
        {"name": "lightgbm_default", "kind": "baseline", "concordance": 0.70, "val_concordance": 0.76, **base},
        {"name": "lightgbm_tuned", "kind": "baseline", "concordance": 0.79, "val_concordance": 0.72, **base},
        {"name": "km_stage", "kind": "reference", "concordance": 0.7, "val_concordance": 0.7, **base},
    ]
    targets = leaderboard_survival.target_check(rows)
    assert targets["best_neural"] == "tabm" and targets["lightgbm"]["name"] == "lightgbm_default"
    assert targets["lightgbm"]["beaten_on_concordance"] == MET and targets["lightgbm"]["beaten_on_brier"] == NOT_MET
    assert targets["km_stage"]["beaten_on_concordance"] == INCONCLUSIVE
    assert targets["km_stage"]["beaten_on_brier"] == MET
