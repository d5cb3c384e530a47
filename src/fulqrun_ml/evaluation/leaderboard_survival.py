"""Survival sections of the leaderboard (close timing as discrete-time survival, `task=close_timing_survival`).

Every row is a set of curves P(closed by the end of bin k) on the same time-based holdout, scored by the one
`tasks.survival_metrics.survival_report`: Harrell's C, integrated Brier, NLL, ECE at 30 days and at the horizon,
MAE of the predicted median. Networks are scored as they ship (hazard temperature inside, through
`tasks.survival_holdout.evaluate_survival_run`), exported, parity-checked on both graph outputs and timed.

Baselines on the same split:
- Kaplan-Meier per stage and pooled, fitted on the training split (the survival analog of a stage median);
- LightGBM as a logistic-hazard model: each training row becomes one row per time bin it is at risk in, with the
  bin index as one more feature and "closed in this bin" as the label (the person-period expansion), so any
  binary classifier yields hazards h_k and a curve 1 - prod(1 - h_j). This is the standard way to get a
  discrete-time survival model out of gradient boosting, and it sees exactly the rows and censoring the
  networks see. Written here because no maintained library does the expansion for LightGBM.
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
from fulqrun_ml.export.onnx_export import check_parity, export_survival_onnx
from fulqrun_ml.tasks.kaplan_meier import StageKaplanMeier
from fulqrun_ml.tasks.survival import CLOSE_PROBABILITY, EXPECTED_DAYS, predict_curves
from fulqrun_ml.tasks.survival_grid import bin_index, validate_bin_edges
from fulqrun_ml.tasks.survival_holdout import evaluate_survival_run, load_survival_record
from fulqrun_ml.tasks.survival_metrics import survival_report

# Report keys copied into a row (the per-edge Brier scores stay in the run's metrics.json).
ROW_METRICS = (
    "concordance",
    "integrated_brier",
    "nll",
    "ece_30d",
    "ece_horizon",
    "auc_30d",
    "auc_horizon",
    "mae_median_days",
    "mae_expected_days",
    "n",
    "n_events",
)


def survival_holdout(datamodule: TabularDataModuleBase, task_cfg: DictConfig | None = None) -> Holdout:
    """The datamodule's splits plus the task's time grid, which every baseline's curve is built on."""
    if task_cfg is None or task_cfg.get("bin_edges") is None:
        raise LeaderboardError("a survival section needs the task's bin_edges (task.bin_edges)")
    edges = validate_bin_edges(list(task_cfg.bin_edges), task_cfg.horizon_days)
    holdout = holdout_from(datamodule)
    holdout.bin_edges = tuple(float(e) for e in edges)
    return holdout


def _edges(holdout: Holdout) -> np.ndarray:
    return np.asarray(holdout.bin_edges, dtype=np.float64)


def _row_metrics(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in ROW_METRICS if key in report}


def _score(cdf: np.ndarray, holdout: Holdout) -> dict[str, Any]:
    test = holdout.frames["test"]
    durations, events = test["duration_days"].to_numpy(dtype=np.float64), test["label"].to_numpy() > 0.5
    return _row_metrics(survival_report(cdf, durations, events, _edges(holdout)))


def evaluate_neural(run: NeuralRun, holdout: Holdout) -> dict[str, Any]:
    """Score (as exported, temperature inside), export, parity-check both outputs and time what the run publishes."""
    record = load_survival_record(run.run_dir)
    if tuple(float(e) for e in record["bin_edges"]) != holdout.bin_edges:
        raise LeaderboardError(f"model '{run.model}': run grid {record['bin_edges']} != task grid {holdout.bin_edges}")
    test = holdout.frames["test"]
    metrics = evaluate_survival_run(run.run_dir, test)["model"]
    temperature = record["calibration"]["temperature"]
    cdf, expected = predict_curves(run.net, run.spec.encode(test), record["bin_edges"], temperature)
    graph = export_survival_onnx(run.net, run.spec, record["bin_edges"], temperature)
    parity = check_parity(graph, cdf.reshape(-1), run.spec, test, output=CLOSE_PROBABILITY)
    parity_days = check_parity(graph, expected, run.spec, test, output=EXPECTED_DAYS)
    return {
        **run.common_row(),
        **_row_metrics(metrics),
        "hazard_temperature": temperature,
        "inference_us_per_row": onnx_microseconds_per_row(
            graph, run.spec, test, outputs=(CLOSE_PROBABILITY, EXPECTED_DAYS)
        ),
        "export_parity_max_abs_diff": parity,
        "export_parity_expected_days": parity_days,
    }


def person_period(
    arrays: dict[str, np.ndarray], durations: np.ndarray, events: np.ndarray, edges: np.ndarray
) -> dict[str, np.ndarray]:
    """One row per (row, bin it is at risk in), the bin index appended as the last continuous column, target 1
    in the bin where the row's deal closed. Rows censored in a bin are at risk through it (as in the networks'
    `tasks.survival.logistic_hazard_nll`)."""
    bins = bin_index(durations, edges)
    repeats = bins + 1
    rows = np.repeat(np.arange(len(bins)), repeats)
    k = np.arange(rows.size) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    return {
        "continuous": np.hstack([arrays["continuous"][rows], k[:, None].astype(np.float32)]),
        "categorical": arrays["categorical"][rows],
        "target": ((k == bins[rows]) & (np.asarray(events)[rows] > 0.5)).astype(np.float32),
    }


def every_bin(arrays: dict[str, np.ndarray], n_bins: int) -> dict[str, np.ndarray]:
    """Each row repeated once per bin (bin index last), to read a full hazard curve off a person-period model."""
    n = arrays["continuous"].shape[0]
    rows = np.repeat(np.arange(n), n_bins)
    k = np.tile(np.arange(n_bins, dtype=np.float32), n)
    continuous = np.hstack([arrays["continuous"][rows], k[:, None]])
    return {"continuous": continuous, "categorical": arrays["categorical"][rows]}


def hazard_curve(hazards: np.ndarray) -> np.ndarray:
    """[N, K] hazards -> P(closed by the end of bin k) = 1 - prod_{j <= k} (1 - h_j)."""
    return 1.0 - np.cumprod(1.0 - hazards, axis=1)


def evaluate_lightgbm(name: str, params: dict[str, Any], holdout: Holdout, seed: int) -> dict[str, Any]:
    edges = _edges(holdout)
    n_bins = len(edges) - 1

    def expanded(split: str) -> dict[str, np.ndarray]:
        frame = holdout.frames[split]
        durations = frame["duration_days"].to_numpy(dtype=np.float64)
        return person_period(holdout.arrays[split], durations, frame["label"].to_numpy(), edges)

    fit = fit_lightgbm(expanded("train"), expanded("val"), params, seed, kind="binary")
    test_rows = every_bin(holdout.arrays["test"], n_bins)
    hazards = fit.predict(test_rows).reshape(-1, n_bins)
    per_deal = lightgbm_microseconds_per_row(fit, {k: v[: 50 * n_bins] for k, v in test_rows.items()}, n_bins)
    return {
        "name": name,
        "kind": "baseline",
        **_score(hazard_curve(hazards), holdout),
        "train_seconds": fit.fit_seconds,
        "parameters": None,
        **lightgbm_size(fit),
        # Per deal: its curve is one predict call on K expanded rows.
        "inference_us_per_row": per_deal,
        "inference_runtime": f"lightgbm native predict on encoded rows x {n_bins} bins (no preprocessing, 1 thread)",
        "params": {"objective": "binary (logistic hazard, person-period)", **params},
    }


def evaluate_kaplan_meier(holdout: Holdout) -> list[dict[str, Any]]:
    km = StageKaplanMeier.fit(holdout.frames["train"], _edges(holdout))
    test = holdout.frames["test"]
    return [
        reference_row("km_stage", _score(km.predict(test), holdout)),
        reference_row("km_pooled", _score(km.predict_pooled(len(test)), holdout)),
    ]


def evaluate_baselines(
    holdout: Holdout, lightgbm_settings: dict[str, dict[str, Any]], seed: int
) -> list[dict[str, Any]]:
    rows = [evaluate_lightgbm(name, params, holdout, seed) for name, params in lightgbm_settings.items()]
    return rows + evaluate_kaplan_meier(holdout)


def target_check(rows: list[dict[str, Any]], task: str = "close_timing_survival") -> dict[str, Any]:
    """Best neural (highest concordance) against the best LightGBM and Kaplan-Meier per stage, on C and Brier."""
    neural = [r for r in rows if r["kind"] == "neural"]
    if not neural:
        return {}
    best = max(neural, key=lambda r: r["concordance"])
    result: dict[str, Any] = {
        "best_neural": best["name"],
        "best_neural_concordance": best["concordance"],
        "best_neural_integrated_brier": best["integrated_brier"],
    }
    for label, candidates in (
        ("lightgbm", [r for r in rows if r["name"].startswith("lightgbm")]),
        ("km_stage", [r for r in rows if r["name"] == "km_stage"]),
    ):
        if candidates:
            other = max(candidates, key=lambda r: r["concordance"])
            result[label] = {
                "name": other["name"],
                "concordance": other["concordance"],
                "integrated_brier": other["integrated_brier"],
                "beaten_on_concordance": best["concordance"] >= other["concordance"],
                "beaten_on_brier": best["integrated_brier"] <= other["integrated_brier"],
            }
    return result


HEADER = [
    "model",
    "kind",
    "Harrell's C",
    "integrated Brier",
    "NLL",
    "ECE 30 d",
    "ECE horizon",
    "MAE median (d)",
    *COST_HEADER,
    "export parity",
]


def render_markdown(section: dict[str, Any]) -> list[str]:
    """One survival task's table (highest concordance first) plus its target checks."""
    cells = []
    for r in sorted(section["rows"], key=lambda r: -r["concordance"]):
        cells.append(
            [
                r["name"],
                r["kind"],
                fmt(r["concordance"]),
                fmt(r["integrated_brier"]),
                fmt(r["nll"], 3),
                fmt(r.get("ece_30d")),
                fmt(r.get("ece_horizon")),
                fmt(r["mae_median_days"], 2),
                *cost_cells(r),
                parity_cell(r),
            ]
        )
    lines = [
        *section_intro(section),
        "Every row is a curve P(closed by the end of week k) per open deal; deals still open at the horizon are "
        "censored there. Harrell's C ranks expected days to close (0.5 = no skill); integrated Brier is the mean "
        "Brier score of P(closed by t) over the weekly edges; MAE of the predicted median is over deals that closed.",
        "",
        *table_lines(HEADER, cells),
    ]
    targets = section["targets"]
    lines += ["", f"Targets ({section['task']}):", ""]
    for key in ("lightgbm", "km_stage"):
        if key in targets:
            other = targets[key]
            lines.append(
                f"- Best neural vs {other['name']}: C {targets['best_neural_concordance']:.4f} vs "
                f"{other['concordance']:.4f} ({met(other['beaten_on_concordance'])}), integrated Brier "
                f"{targets['best_neural_integrated_brier']:.4f} vs {other['integrated_brier']:.4f} "
                f"({met(other['beaten_on_brier'])})."
            )
    return [*lines, ""]


SURVIVAL = SectionKind(
    name="survival",
    load_holdout=survival_holdout,
    evaluate_neural=evaluate_neural,
    evaluate_baselines=evaluate_baselines,
    target_check=target_check,
    render_markdown=render_markdown,
)
