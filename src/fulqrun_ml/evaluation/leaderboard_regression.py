"""Regression sections of the leaderboard (close timing; user-table regressions): MAE, RMSE, R², concordance.

Every row is scored in the task's own units (days, for close timing) by `tasks.metrics.regression_report`
on the same time-based holdout. Networks are evaluated the way they ship: the run's target scaling undone
inside the exported graph (`prediction` out), parity-checked against PyTorch and timed in ONNX Runtime.
LightGBM (default and tuned, the same settings as the binary board, objective regression) and ridge regression
learn the same scaled target the networks learn and are decoded with the same scaling; the task's reference
columns (close timing: the training split's median days per stage) need no fitting. Rows sort by RMSE.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from omegaconf import DictConfig

from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.evaluation.latency import onnx_microseconds_per_row
from fulqrun_ml.evaluation.leaderboard_kinds import (
    COST_HEADER,
    Holdout,
    LeaderboardError,
    NeuralRun,
    SectionKind,
    cost_cells,
    fmt,
    holdout_from,
    met,
    parity_cell,
    reference_row,
    section_intro,
    table_lines,
)
from fulqrun_ml.evaluation.lightgbm_baseline import fit_lightgbm, lightgbm_microseconds_per_row, lightgbm_size
from fulqrun_ml.evaluation.logistic_baseline import RIDGE_ALPHA, fit_ridge, linear_microseconds_per_row
from fulqrun_ml.export.onnx_export import PREDICTION_OUTPUT, check_parity, export_onnx
from fulqrun_ml.export.package import load_target_scaling
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.metrics import regression_report
from fulqrun_ml.tasks.regression import predict_values


def regression_holdout(datamodule: TabularDataModuleBase, task_cfg: DictConfig | None = None) -> Holdout:
    """The datamodule's splits with the scaled training target; the scaling decodes every fitted baseline."""
    holdout = holdout_from(datamodule)
    if holdout.target_scaling is None:
        raise LeaderboardError(f"{type(datamodule).__name__}: a regression datamodule without target scaling")
    return holdout


def scaling_record(scaling: TargetScaling) -> dict[str, Any]:
    return {"log1p": scaling.log1p, "mean": scaling.mean, "std": scaling.std}


def evaluate_neural(run: NeuralRun, holdout: Holdout) -> dict[str, Any]:
    """Score, export (`prediction` in task units), parity-check and time what the run would publish."""
    scaling = load_target_scaling(run.run_dir)
    if scaling is None:
        raise LeaderboardError(f"model '{run.model}': run {run.run_dir} has no target.json; not a regression run")
    test = holdout.frames["test"]
    predictions = predict_values(run.net, run.spec.encode(test), scaling)
    graph = export_onnx(run.net, run.spec, target=scaling)
    parity = check_parity(graph, predictions, run.spec, test, output=PREDICTION_OUTPUT)
    return {
        **run.common_row(),
        **regression_report(predictions, holdout.labels("test")),
        "inference_us_per_row": onnx_microseconds_per_row(graph, run.spec, test, outputs=(PREDICTION_OUTPUT,)),
        "target_scaling": scaling_record(scaling),
        "export_parity_max_abs_diff": parity,
    }


def decoded(holdout: Holdout, scaled: np.ndarray) -> np.ndarray:
    """A fitted baseline's scaled predictions in the task's units, exactly as the exported graph decodes."""
    return holdout.target_scaling.decode(scaled)


def evaluate_lightgbm(name: str, params: dict[str, Any], holdout: Holdout, seed: int) -> dict[str, Any]:
    fit = fit_lightgbm(holdout.arrays["train"], holdout.arrays["val"], params, seed, kind="regression")
    predictions = decoded(holdout, fit.predict(holdout.arrays["test"]))
    return {
        "name": name,
        "kind": "baseline",
        **regression_report(predictions, holdout.labels("test")),
        "train_seconds": fit.fit_seconds,
        "parameters": None,
        **lightgbm_size(fit),
        "inference_us_per_row": lightgbm_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "lightgbm native predict on encoded rows (no preprocessing, 1 thread)",
        "params": {"objective": "regression", **params},
    }


def evaluate_ridge(holdout: Holdout) -> dict[str, Any]:
    fit = fit_ridge(holdout.arrays["train"])
    predictions = decoded(holdout, fit.predict(holdout.arrays["test"]))
    return {
        "name": "ridge_regression",
        "kind": "baseline",
        **regression_report(predictions, holdout.labels("test")),
        "train_seconds": fit.fit_seconds,
        "parameters": fit.parameters,
        "inference_us_per_row": linear_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "scikit-learn predict on encoded rows (one-hot + linear, no preprocessing)",
        "params": {"alpha": RIDGE_ALPHA},
    }


def evaluate_reference(name: str, column: str, holdout: Holdout) -> dict[str, Any]:
    """A prediction that already exists on every row (close timing: the training split's median per stage)."""
    predictions = holdout.frames["test"][column].to_numpy(dtype=np.float64)
    return reference_row(name, regression_report(predictions, holdout.labels("test")))


def evaluate_baselines(
    holdout: Holdout, lightgbm_settings: dict[str, dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    rows = [evaluate_lightgbm(name, params, holdout, seed) for name, params in lightgbm_settings.items()]
    rows.append(evaluate_ridge(holdout))
    rows += [evaluate_reference(name, column, holdout) for name, column in holdout.baseline_columns.items()]
    return rows


def target_check(rows: list[dict[str, Any]], task: str = "close_timing") -> dict[str, Any]:
    """Best neural (lowest RMSE) against the best LightGBM and against every reference row (stage median)."""
    neural = [r for r in rows if r["kind"] == "neural"]
    if not neural:
        return {}
    best = min(neural, key=lambda r: r["rmse"])
    result: dict[str, Any] = {
        "best_neural": best["name"],
        "best_neural_rmse": best["rmse"],
        "best_neural_mae": best["mae"],
    }
    boosted = [r for r in rows if r["name"].startswith("lightgbm")]
    if boosted:
        best_gbm = min(boosted, key=lambda r: r["rmse"])
        result["best_lightgbm"] = best_gbm["name"]
        result["best_lightgbm_rmse"] = best_gbm["rmse"]
        result["beats_lightgbm"] = best["rmse"] <= best_gbm["rmse"]
    references = {r["name"]: r for r in rows if r["kind"] == "reference"}
    if references:
        result["references"] = {
            name: {"rmse": r["rmse"], "mae": r["mae"], "beaten": best["rmse"] < r["rmse"]}
            for name, r in references.items()
        }
    return result


HEADER = [
    "model",
    "kind",
    "MAE",
    "RMSE",
    "R²",
    "concordance",
    *COST_HEADER,
    "export parity",
]


def render_markdown(section: dict[str, Any]) -> list[str]:
    """One regression task's table (lowest RMSE first) plus its target checks."""
    cells = []
    for r in sorted(section["rows"], key=lambda r: r["rmse"]):
        cells.append(
            [
                r["name"],
                r["kind"],
                fmt(r["mae"], 3),
                fmt(r["rmse"], 3),
                fmt(r["r2"]),
                fmt(r["concordance"]),
                *cost_cells(r),
                parity_cell(r),
            ]
        )
    lines = [
        *section_intro(section),
        "MAE and RMSE are in the label's own units (close timing: days until the deal closes); concordance is "
        "the share of holdout pairs ordered like the labels (0.5 = no ranking skill).",
        "",
        *table_lines(HEADER, cells),
    ]
    targets = section["targets"]
    lines += ["", f"Targets ({section['task']}):", ""]
    if "beats_lightgbm" in targets:
        lines.append(
            f"- Best neural ≤ LightGBM RMSE: {targets['best_neural']} {targets['best_neural_rmse']:.3f} vs "
            f"{targets['best_lightgbm']} {targets['best_lightgbm_rmse']:.3f} — {met(targets['beats_lightgbm'])}."
        )
    for name, reference in targets.get("references", {}).items():
        lines.append(
            f"- Best neural < {name} RMSE: {targets['best_neural']} {targets['best_neural_rmse']:.3f} vs "
            f"{reference['rmse']:.3f} — {met(reference['beaten'])}."
        )
    return [*lines, ""]


REGRESSION = SectionKind(
    name="regression",
    load_holdout=regression_holdout,
    evaluate_neural=evaluate_neural,
    evaluate_baselines=evaluate_baselines,
    target_check=target_check,
    render_markdown=render_markdown,
)
