"""Binary sections of the leaderboard (deal win, lead conversion, account expansion/churn).

Each network is evaluated the way it ships: calibrated with the run's own calibration (temperature or
isotonic), exported to the single raw-columns ONNX graph (`probability` out), parity-checked and timed.
LightGBM (default and one light setting), logistic regression and the task's model-free reference scores (the
rep's own probability where the task has one; the oracle where the simulator provides it) are scored on the
same validation/holdout rows. The best-F1 threshold of every row is chosen on validation.
"""

from __future__ import annotations

from typing import Any

from fulqrun_ml.evaluation.latency import onnx_microseconds_per_row
from fulqrun_ml.evaluation.leaderboard_kinds import (
    COST_HEADER,
    Holdout,
    NeuralRun,
    SectionKind,
    cost_cells,
    fmt,
    holdout_from,
    met,
    reference_row,
    section_intro,
    table_lines,
)
from fulqrun_ml.evaluation.lightgbm_baseline import fit_lightgbm, lightgbm_microseconds_per_row, lightgbm_size
from fulqrun_ml.evaluation.logistic_baseline import L2_C, fit_logistic, linear_microseconds_per_row
from fulqrun_ml.evaluation.scoring import holdout_scores
from fulqrun_ml.export.onnx_export import check_parity, export_onnx
from fulqrun_ml.export.package import load_calibration
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.metrics import binary_report

# The targets, checked (not asserted) in every report. The oracle-ratio, ECE and rep targets are the
# deal-win ones; "best neural >= LightGBM" applies to every binary task on the board.
ORACLE_TARGET_TASKS = frozenset({"deal_win"})
TARGET_AUC_RATIO_TO_ORACLE = 0.97
TARGET_ECE = 0.02


def evaluate_neural(run: NeuralRun, holdout: Holdout) -> dict[str, Any]:
    """Score, export, parity-check and time what the run would publish (its calibration included)."""
    spec, net = run.spec, run.net
    calibration = load_calibration(run.run_dir)  # temperature or isotonic, as the run chose
    val, test = holdout.frames["val"], holdout.frames["test"]
    val_probs = predict_probabilities(net, spec.encode(val), calibration)
    test_probs = predict_probabilities(net, spec.encode(test), calibration)
    graph = export_onnx(net, spec, calibration=calibration)
    parity = check_parity(graph, test_probs, spec, test)
    scores = holdout_scores(val_probs, holdout.labels("val"), test_probs, holdout.labels("test"))
    scores["ece_uncalibrated"] = binary_report(predict_probabilities(net, spec.encode(test)), test["label"])["ece"]
    return {
        **run.common_row(),
        **scores,
        "inference_us_per_row": onnx_microseconds_per_row(graph, spec, test),
        "calibration": calibration.get("method", "none"),
        "temperature": calibration.get("temperature"),
        "export_parity_max_abs_diff": parity,
    }


def evaluate_lightgbm(name: str, params: dict[str, Any], holdout: Holdout, seed: int) -> dict[str, Any]:
    fit = fit_lightgbm(holdout.arrays["train"], holdout.arrays["val"], params, seed)
    val_probs, test_probs = fit.predict(holdout.arrays["val"]), fit.predict(holdout.arrays["test"])
    return {
        "name": name,
        "kind": "baseline",
        **holdout_scores(val_probs, holdout.labels("val"), test_probs, holdout.labels("test")),
        "train_seconds": fit.fit_seconds,
        "parameters": None,
        **lightgbm_size(fit),
        "inference_us_per_row": lightgbm_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "lightgbm native predict on encoded rows (no preprocessing, 1 thread)",
        "params": params,
    }


def evaluate_logistic(holdout: Holdout) -> dict[str, Any]:
    fit = fit_logistic(holdout.arrays["train"])
    val_probs, test_probs = fit.predict(holdout.arrays["val"]), fit.predict(holdout.arrays["test"])
    return {
        "name": "logistic_regression",
        "kind": "baseline",
        **holdout_scores(val_probs, holdout.labels("val"), test_probs, holdout.labels("test")),
        "train_seconds": fit.fit_seconds,
        "parameters": fit.parameters,
        "inference_us_per_row": linear_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "scikit-learn predict on encoded rows (one-hot + linear, no preprocessing)",
        "params": {"C": L2_C},
    }


def evaluate_reference(name: str, column: str, holdout: Holdout) -> dict[str, Any]:
    """A score that already exists on every row: the rep's probability, or the simulator's oracle."""
    val, test = holdout.frames["val"], holdout.frames["test"]
    return reference_row(name, holdout_scores(val[column], holdout.labels("val"), test[column], holdout.labels("test")))


def evaluate_baselines(
    holdout: Holdout, lightgbm_settings: dict[str, dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    rows = [evaluate_lightgbm(name, params, holdout, seed) for name, params in lightgbm_settings.items()]
    rows.append(evaluate_logistic(holdout))
    rows += [evaluate_reference(name, column, holdout) for name, column in holdout.baseline_columns.items()]
    return rows


def target_check(rows: list[dict[str, Any]], task: str = "deal_win") -> dict[str, Any]:
    """The issue's targets against this run's numbers: met or not, with the gap (oracle/ECE/rep: deal win)."""
    by_name = {r["name"]: r for r in rows}
    neural = [r for r in rows if r["kind"] == "neural"]
    boosted = [r for r in rows if r["name"].startswith("lightgbm")]
    result: dict[str, Any] = {}
    if neural:
        best = max(neural, key=lambda r: r["auc"])
        result["best_neural"] = best["name"]
        result["best_neural_auc"] = best["auc"]
        result["best_neural_ece"] = best["ece"]
        result["best_neural_ece_noise_floor"] = best.get("ece_noise_floor")
        if task in ORACLE_TARGET_TASKS:
            result["ece_target"] = TARGET_ECE
            result["ece_met"] = best["ece"] <= TARGET_ECE
        if task in ORACLE_TARGET_TASKS and "oracle" in by_name:
            ratio = best["auc"] / by_name["oracle"]["auc"]
            result["auc_ratio_to_oracle"] = ratio
            result["auc_ratio_target"] = TARGET_AUC_RATIO_TO_ORACLE
            result["auc_ratio_met"] = ratio >= TARGET_AUC_RATIO_TO_ORACLE
        if "rep" in by_name:
            result["beats_rep"] = best["auc"] > by_name["rep"]["auc"]
        if boosted:
            best_gbm = max(boosted, key=lambda r: r["auc"])
            result["best_lightgbm"] = best_gbm["name"]
            result["best_lightgbm_auc"] = best_gbm["auc"]
            result["beats_lightgbm"] = best["auc"] >= best_gbm["auc"]
    return result


HEADER = [
    "model",
    "kind",
    "AUC",
    "PR-AUC",
    "log loss",
    "Brier",
    "ECE",
    "acc@0.5",
    "acc@best-F1",
    "lift@10%",
    *COST_HEADER,
]


def render_markdown(section: dict[str, Any]) -> list[str]:
    """One binary task's table (best AUC first) plus its target checks."""
    cells = []
    for r in sorted(section["rows"], key=lambda r: -r["auc"]):
        cells.append(
            [
                r["name"],
                r["kind"],
                fmt(r["auc"]),
                fmt(r["pr_auc"]),
                fmt(r["log_loss"]),
                fmt(r["brier"]),
                fmt(r["ece"]),
                fmt(r["accuracy_at_0_5"]),
                fmt(r["accuracy_at_best_f1"]),
                fmt(r["lift_at_10pct"], 2),
                *cost_cells(r),
            ]
        )
    lines = [*section_intro(section), *table_lines(HEADER, cells)]
    targets = section["targets"]
    lines += ["", f"Targets ({section['task']}):", ""]
    if "auc_ratio_to_oracle" in targets:
        lines.append(
            f"- AUC ≥ {targets['auc_ratio_target']} × oracle: best neural ({targets['best_neural']}) reaches "
            f"{targets['auc_ratio_to_oracle']:.3f} × oracle — {met(targets['auc_ratio_met'])}."
        )
    if "ece_met" in targets:
        lines.append(
            f"- ECE ≤ {targets['ece_target']}: {targets['best_neural']} has {targets['best_neural_ece']:.4f} — "
            f"{met(targets['ece_met'])}"
            + (
                f" (a perfectly calibrated model with the same scores would show {floor:.4f} on these rows)."
                if (floor := targets.get("best_neural_ece_noise_floor")) is not None
                else "."
            )
        )
    if "beats_lightgbm" in targets:
        lines.append(
            f"- Best neural ≥ LightGBM: {targets['best_neural']} {targets['best_neural_auc']:.4f} vs "
            f"{targets['best_lightgbm']} {targets['best_lightgbm_auc']:.4f} — {met(targets['beats_lightgbm'])}."
        )
    if "beats_rep" in targets:
        lines.append(f"- Beats the rep's probability: {'yes' if targets['beats_rep'] else 'no'}.")
    return [*lines, ""]


BINARY = SectionKind(
    name="binary",
    load_holdout=holdout_from,  # the datamodule's own 0/1 target
    evaluate_neural=evaluate_neural,
    evaluate_baselines=evaluate_baselines,
    target_check=target_check,
    render_markdown=render_markdown,
)
