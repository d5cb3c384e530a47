"""Regression sections of the leaderboard (close timing; user-table regressions): MAE, RMSE, R², concordance.

Every row is scored in the task's own units (days, for close timing) by `tasks.metrics.regression_report`
on the same time-based holdout. Networks are evaluated the way they ship: the run's target scaling undone
inside the exported graph (`prediction` out), parity-checked against PyTorch and timed in ONNX Runtime.
LightGBM (default and tuned, the same settings as the binary board, objective regression) and ridge regression
learn the same scaled target the networks learn and are decoded with the same scaling; the task's reference
columns (close timing: the training split's median days per stage) need no fitting. Rows sort by holdout RMSE;
the best network and the best LightGBM are chosen by validation RMSE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

from fulqrun_ml.benchmarks.graph_latency import onnx_microseconds_per_row
from fulqrun_ml.benchmarks.leaderboard_kinds import (
    COST_HEADER,
    Holdout,
    LeaderboardError,
    NeuralRun,
    Scored,
    SectionKind,
    comparison,
    cost_cells,
    fmt,
    holdout_from,
    mean_cell,
    paired_cell,
    parity_cell,
    reference_row,
    section_intro,
    table_lines,
)
from fulqrun_ml.benchmarks.leaderboard_stats import judge_difference, select_best, weighted_mean
from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.evaluation.lightgbm_baseline import (
    fit_lightgbm,
    lightgbm_microseconds_per_row,
    lightgbm_size,
    seeds_for,
)
from fulqrun_ml.evaluation.logistic_baseline import RIDGE_ALPHA, fit_ridge, linear_microseconds_per_row
from fulqrun_ml.export.onnx_export import PREDICTION_OUTPUT, check_parity, export_onnx
from fulqrun_ml.export.package import load_target_scaling
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.metrics import regression_report
from fulqrun_ml.tasks.regression import predict_values

INTERVAL_METRICS = ("mae", "rmse", "r2", "concordance")


def regression_holdout(datamodule: TabularDataModuleBase, task_cfg: DictConfig | None = None) -> Holdout:
    """The datamodule's splits with the scaled training target; the scaling decodes every fitted baseline."""
    holdout = holdout_from(datamodule)
    if holdout.target_scaling is None:
        raise LeaderboardError(f"{type(datamodule).__name__}: a regression datamodule without target scaling")
    return holdout


def scaling_record(scaling: TargetScaling) -> dict[str, Any]:
    return {"log1p": scaling.log1p, "mean": scaling.mean, "std": scaling.std}


def scores(val_predictions: np.ndarray, test_predictions: np.ndarray, holdout: Holdout) -> dict[str, Any]:
    """Holdout metrics in task units plus the validation RMSE the board chooses on."""
    return {
        **regression_report(test_predictions, holdout.labels("test")),
        "val_rmse": regression_report(val_predictions, holdout.labels("val"))["rmse"],
    }


def evaluate_neural(run: NeuralRun, holdout: Holdout) -> Scored:
    """Score, export (`prediction` in task units), parity-check and time what the run would publish."""
    scaling = load_target_scaling(run.run_dir)
    if scaling is None:
        raise LeaderboardError(f"model '{run.model}': run {run.run_dir} has no target.json; not a regression run")
    val, test = holdout.frames["val"], holdout.frames["test"]
    predictions = predict_values(run.net, run.spec.encode(test), scaling)
    graph = export_onnx(run.net, run.spec, target=scaling)
    parity = check_parity(graph, predictions, run.spec, test, output=PREDICTION_OUTPUT)
    row = {
        **run.common_row(),
        **scores(predict_values(run.net, run.spec.encode(val), scaling), predictions, holdout),
        "inference_us_per_row": onnx_microseconds_per_row(graph, run.spec, test, outputs=(PREDICTION_OUTPUT,)),
        "target_scaling": scaling_record(scaling),
        "export_parity_max_abs_diff": parity,
    }
    return Scored(row, np.asarray(predictions, dtype=np.float64))


def decoded(holdout: Holdout, scaled: np.ndarray) -> np.ndarray:
    """A fitted baseline's scaled predictions in the task's units, exactly as the exported graph decodes."""
    return holdout.target_scaling.decode(scaled)


def evaluate_lightgbm(name: str, params: dict[str, Any], holdout: Holdout, seed: int) -> Scored:
    fit = fit_lightgbm(holdout.arrays["train"], holdout.arrays["val"], params, seed, kind="regression")
    predictions = decoded(holdout, fit.predict(holdout.arrays["test"]))
    row = {
        "name": name,
        "kind": "baseline",
        "seed": seed,
        **scores(decoded(holdout, fit.predict(holdout.arrays["val"])), predictions, holdout),
        "train_seconds": fit.fit_seconds,
        "parameters": None,
        **lightgbm_size(fit),
        "inference_us_per_row": lightgbm_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "lightgbm native predict on encoded rows (no preprocessing, 1 thread)",
        "params": {"objective": "regression", **params},
    }
    return Scored(row, predictions)


def evaluate_ridge(holdout: Holdout) -> Scored:
    fit = fit_ridge(holdout.arrays["train"])
    predictions = decoded(holdout, fit.predict(holdout.arrays["test"]))
    row = {
        "name": "ridge_regression",
        "kind": "baseline",
        **scores(decoded(holdout, fit.predict(holdout.arrays["val"])), predictions, holdout),
        "train_seconds": fit.fit_seconds,
        "parameters": fit.parameters,
        "inference_us_per_row": linear_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "scikit-learn predict on encoded rows (one-hot + linear, no preprocessing)",
        "params": {"alpha": RIDGE_ALPHA},
    }
    return Scored(row, predictions)


def evaluate_reference(name: str, column: str, holdout: Holdout) -> Scored:
    """A prediction that already exists on every row (close timing: the training split's median per stage)."""
    val, test = holdout.frames["val"], holdout.frames["test"]
    predictions = test[column].to_numpy(dtype=np.float64)
    return Scored(
        reference_row(name, scores(val[column].to_numpy(dtype=np.float64), predictions, holdout)), predictions
    )


def evaluate_baselines(
    holdout: Holdout, lightgbm_settings: dict[str, dict[str, Any]], seeds: Sequence[int]
) -> list[Scored]:
    rows = [
        evaluate_lightgbm(name, params, holdout, seed)
        for name, params in lightgbm_settings.items()
        for seed in seeds_for(params, seeds)
    ]
    rows.append(evaluate_ridge(holdout))
    rows += [evaluate_reference(name, column, holdout) for name, column in holdout.baseline_columns.items()]
    return rows


def resample(predictions: Sequence[np.ndarray], holdout: Holdout, counts: np.ndarray) -> dict[str, np.ndarray]:
    """RMSE and MAE per bootstrap resample, averaged over the row's seeds."""
    labels = holdout.labels("test")
    rmse = [np.sqrt(weighted_mean((p - labels) ** 2, counts)) for p in predictions]
    mae = [weighted_mean(np.abs(p - labels), counts) for p in predictions]
    return {"rmse": np.mean(rmse, axis=0), "mae": np.mean(mae, axis=0)}


def target_check(rows: list[dict[str, Any]], task: str = "close_timing") -> dict[str, Any]:
    """Best neural (lowest *validation* RMSE) against the best LightGBM (also by validation RMSE) and every
    reference row (stage median), each judged on the paired bootstrap interval of the holdout RMSE difference."""
    best = select_best([r for r in rows if r["kind"] == "neural"], "rmse", greater_is_better=False)
    if best is None:
        return {}
    result: dict[str, Any] = {
        "chosen_on": "val_rmse",
        "best_neural": best["name"],
        "best_neural_val_rmse": best["val_rmse"],
        "best_neural_rmse": best["rmse"],
        "best_neural_rmse_ci95": ((best.get("interval") or {}).get("rmse") or {}).get("ci95"),
        "best_neural_mae": best["mae"],
    }
    best_gbm = select_best([r for r in rows if r["name"].startswith("lightgbm")], "rmse", greater_is_better=False)
    if best_gbm is not None:
        gbm = comparison(best, best_gbm, "rmse")
        result["best_lightgbm"] = best_gbm["name"]
        result["best_lightgbm_val_rmse"] = best_gbm["val_rmse"]
        result["best_lightgbm_rmse"] = best_gbm["rmse"]
        result["lightgbm_rmse_diff"], result["lightgbm_rmse_diff_ci95"] = gbm["diff"], gbm["ci95"]
        result["beats_lightgbm"] = judge_difference(gbm["ci95"], greater_is_better=False)
    references = [r for r in rows if r["kind"] == "reference"]
    if references:
        result["references"] = {}
        for r in references:
            paired = comparison(best, r, "rmse")
            result["references"][r["name"]] = {
                "rmse": r["rmse"],
                "mae": r["mae"],
                "rmse_diff": paired["diff"],
                "rmse_diff_ci95": paired["ci95"],
                "beaten": judge_difference(paired["ci95"], greater_is_better=False),
            }
    return result


HEADER = [
    "model",
    "kind",
    "MAE",
    "RMSE",
    "val RMSE",
    "Δ RMSE vs best baseline",
    "R²",
    "concordance",
    *COST_HEADER,
    "export parity",
]


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def render_markdown(section: dict[str, Any]) -> list[str]:
    """One regression task's table (lowest holdout RMSE first, for reading; choices are made on val RMSE) plus its
    target checks with their intervals."""
    best_baseline = section["selection"]["best_baseline"]
    cells = []
    for r in sorted(section["rows"], key=lambda r: r["rmse"]):
        cells.append(
            [
                r["name"],
                r["kind"],
                mean_cell(r, "mae", 3),
                mean_cell(r, "rmse", 3),
                fmt(r.get("val_rmse"), 3),
                paired_cell(r, best_baseline, "rmse", 3),
                mean_cell(r, "r2"),
                mean_cell(r, "concordance"),
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
    t = section["targets"]
    lines += ["", f"Targets ({section['task']}; best neural {t.get('best_neural')} chosen on validation RMSE):", ""]
    if "beats_lightgbm" in t:
        lines.append(
            f"- Best neural ≤ LightGBM RMSE: {t['best_neural']} {t['best_neural_rmse']:.3f} vs {t['best_lightgbm']} "
            f"{t['best_lightgbm_rmse']:.3f}, Δ {t['lightgbm_rmse_diff']:+.3f} "
            f"{_interval(t['lightgbm_rmse_diff_ci95'])} (paired bootstrap) — {t['beats_lightgbm']}."
        )
    for name, reference in t.get("references", {}).items():
        lines.append(
            f"- Best neural < {name} RMSE: {t['best_neural']} {t['best_neural_rmse']:.3f} vs {reference['rmse']:.3f}, "
            f"Δ {reference['rmse_diff']:+.3f} {_interval(reference['rmse_diff_ci95'])} — {reference['beaten']}."
        )
    return [*lines, ""]


REGRESSION = SectionKind(
    name="regression",
    metric="rmse",
    greater_is_better=False,
    interval_metrics=INTERVAL_METRICS,
    load_holdout=regression_holdout,
    evaluate_neural=evaluate_neural,
    evaluate_baselines=evaluate_baselines,
    resample=resample,
    target_check=target_check,
    render_markdown=render_markdown,
)
