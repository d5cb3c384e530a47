"""Survival sections of the leaderboard (close timing as discrete-time survival, `task=close_timing_survival`).

Every row is a set of curves P(closed by the end of bin k) on the same time-based holdout, scored by the one
`tasks.survival_metrics.survival_report`: Harrell's C, integrated Brier, NLL, ECE at 30 days and at the horizon,
MAE of the predicted median. Networks are scored as they ship (hazard temperature inside, through
`tasks.survival_holdout.evaluate_survival_curves`), exported, parity-checked on both graph outputs and timed.

Baselines on the same split:
- Kaplan-Meier per stage and pooled, fitted on the training split (the survival analog of a stage median);
- LightGBM as a logistic-hazard model: each training row becomes one row per time bin it is at risk in, with the
  bin index as one more feature and "closed in this bin" as the label (the person-period expansion), so any
  binary classifier yields hazards h_k and a curve 1 - prod(1 - h_j). This is the standard way to get a
  discrete-time survival model out of gradient boosting, and it sees exactly the rows and censoring the
  networks see. Written here because no maintained library does the expansion for LightGBM.
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
from fulqrun_ml.benchmarks.leaderboard_stats import (
    judge_difference,
    select_best,
    weighted_concordance,
    weighted_mean,
)
from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.evaluation.lightgbm_baseline import (
    fit_lightgbm,
    lightgbm_microseconds_per_row,
    lightgbm_size,
    seeds_for,
)
from fulqrun_ml.export.onnx_export import check_parity, export_survival_onnx
from fulqrun_ml.tasks.kaplan_meier import StageKaplanMeier
from fulqrun_ml.tasks.survival import CLOSE_PROBABILITY, EXPECTED_DAYS, predict_curves
from fulqrun_ml.tasks.survival_grid import bin_index, restricted_mean, validate_bin_edges
from fulqrun_ml.tasks.survival_holdout import evaluate_survival_curves, load_survival_record
from fulqrun_ml.tasks.survival_metrics import harrell_concordance, survival_report

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
INTERVAL_METRICS = ("concordance", "integrated_brier", "nll", "mae_median_days")


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


def _truth(holdout: Holdout, split: str) -> tuple[np.ndarray, np.ndarray]:
    frame = holdout.frames[split]
    return frame["duration_days"].to_numpy(dtype=np.float64), frame["label"].to_numpy() > 0.5


def _val_concordance(val_cdf: np.ndarray, holdout: Holdout) -> float:
    """Harrell's C of a curve set on the validation split: what the board chooses on."""
    return harrell_concordance(restricted_mean(val_cdf, _edges(holdout)), *_truth(holdout, "val"))


def _score(cdf: np.ndarray, holdout: Holdout, val_cdf: np.ndarray) -> dict[str, Any]:
    """Holdout metrics of a curve set plus its validation concordance."""
    report = survival_report(cdf, *_truth(holdout, "test"), _edges(holdout))
    return {**_row_metrics(report), "val_concordance": _val_concordance(val_cdf, holdout)}


def evaluate_neural(run: NeuralRun, holdout: Holdout) -> Scored:
    """Score (as exported, temperature inside), export, parity-check both outputs and time what the run publishes."""
    record = load_survival_record(run.run_dir)
    if tuple(float(e) for e in record["bin_edges"]) != holdout.bin_edges:
        raise LeaderboardError(f"model '{run.model}': run grid {record['bin_edges']} != task grid {holdout.bin_edges}")
    val, test = holdout.frames["val"], holdout.frames["test"]
    temperature = record["calibration"]["temperature"]
    cdf, expected = predict_curves(run.net, run.spec.encode(test), record["bin_edges"], temperature)
    metrics = evaluate_survival_curves(record, cdf, test)["model"]
    val_cdf, _ = predict_curves(run.net, run.spec.encode(val), record["bin_edges"], temperature)
    graph = export_survival_onnx(run.net, run.spec, record["bin_edges"], temperature)
    parity = check_parity(graph, cdf.reshape(-1), run.spec, test, output=CLOSE_PROBABILITY)
    parity_days = check_parity(graph, expected, run.spec, test, output=EXPECTED_DAYS)
    row = {
        **run.common_row(),
        **_row_metrics(metrics),
        "val_concordance": _val_concordance(val_cdf, holdout),
        "hazard_temperature": temperature,
        "inference_us_per_row": onnx_microseconds_per_row(
            graph, run.spec, test, outputs=(CLOSE_PROBABILITY, EXPECTED_DAYS)
        ),
        "export_parity_max_abs_diff": parity,
        "export_parity_expected_days": parity_days,
    }
    return Scored(row, np.asarray(cdf, dtype=np.float64))


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


def evaluate_lightgbm(name: str, params: dict[str, Any], holdout: Holdout, seed: int) -> Scored:
    edges = _edges(holdout)
    n_bins = len(edges) - 1

    def expanded(split: str) -> dict[str, np.ndarray]:
        frame = holdout.frames[split]
        durations = frame["duration_days"].to_numpy(dtype=np.float64)
        return person_period(holdout.arrays[split], durations, frame["label"].to_numpy(), edges)

    def curves(split: str) -> np.ndarray:
        return hazard_curve(fit.predict(every_bin(holdout.arrays[split], n_bins)).reshape(-1, n_bins))

    fit = fit_lightgbm(expanded("train"), expanded("val"), params, seed, kind="binary")
    cdf = curves("test")
    test_rows = every_bin(holdout.arrays["test"], n_bins)
    per_deal = lightgbm_microseconds_per_row(fit, {k: v[: 50 * n_bins] for k, v in test_rows.items()}, n_bins)
    row = {
        "name": name,
        "kind": "baseline",
        "seed": seed,
        **_score(cdf, holdout, curves("val")),
        "train_seconds": fit.fit_seconds,
        "parameters": None,
        **lightgbm_size(fit),
        # Per deal: its curve is one predict call on K expanded rows.
        "inference_us_per_row": per_deal,
        "inference_runtime": f"lightgbm native predict on encoded rows x {n_bins} bins (no preprocessing, 1 thread)",
        "params": {"objective": "binary (logistic hazard, person-period)", **params},
    }
    return Scored(row, cdf)


def evaluate_kaplan_meier(holdout: Holdout) -> list[Scored]:
    km = StageKaplanMeier.fit(holdout.frames["train"], _edges(holdout))
    val, test = holdout.frames["val"], holdout.frames["test"]
    stage, pooled = km.predict(test), km.predict_pooled(len(test))
    return [
        Scored(reference_row("km_stage", _score(stage, holdout, km.predict(val))), stage),
        Scored(reference_row("km_pooled", _score(pooled, holdout, km.predict_pooled(len(val)))), pooled),
    ]


def evaluate_baselines(
    holdout: Holdout, lightgbm_settings: dict[str, dict[str, Any]], seeds: Sequence[int]
) -> list[Scored]:
    rows = [
        evaluate_lightgbm(name, params, holdout, seed)
        for name, params in lightgbm_settings.items()
        for seed in seeds_for(params, seeds)
    ]
    return rows + evaluate_kaplan_meier(holdout)


def brier_per_row(cdf: np.ndarray, holdout: Holdout) -> np.ndarray:
    """Each row's Brier score of P(closed by e_k), averaged over the edges: their mean is the integrated Brier."""
    durations, events = _truth(holdout, "test")
    closed = events[:, None] & (durations[:, None] <= _edges(holdout)[None, 1:])
    return ((np.asarray(cdf, dtype=np.float64) - closed) ** 2).mean(axis=1)


def resample(predictions: Sequence[np.ndarray], holdout: Holdout, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Harrell's C (on expected days) and the integrated Brier per bootstrap resample, averaged over seeds."""
    durations, events = _truth(holdout, "test")
    expected = [restricted_mean(cdf, _edges(holdout)) for cdf in predictions]
    brier = np.mean([brier_per_row(cdf, holdout) for cdf in predictions], axis=0)
    return {
        "concordance": weighted_concordance(expected, durations, events, counts),
        "integrated_brier": weighted_mean(brier, counts),
    }


def target_check(rows: list[dict[str, Any]], task: str = "close_timing_survival") -> dict[str, Any]:
    """Best neural (highest *validation* concordance) against the best LightGBM (also by validation) and
    Kaplan-Meier per stage, on C and integrated Brier, each judged on its paired bootstrap interval."""
    best = select_best([r for r in rows if r["kind"] == "neural"], "concordance", greater_is_better=True)
    if best is None:
        return {}
    result: dict[str, Any] = {
        "chosen_on": "val_concordance",
        "best_neural": best["name"],
        "best_neural_val_concordance": best["val_concordance"],
        "best_neural_concordance": best["concordance"],
        "best_neural_concordance_ci95": ((best.get("interval") or {}).get("concordance") or {}).get("ci95"),
        "best_neural_integrated_brier": best["integrated_brier"],
    }
    for label, candidates in (
        ("lightgbm", [r for r in rows if r["name"].startswith("lightgbm")]),
        ("km_stage", [r for r in rows if r["name"] == "km_stage"]),
    ):
        other = select_best(candidates, "concordance", greater_is_better=True)
        if other is not None:
            c, brier = comparison(best, other, "concordance"), comparison(best, other, "integrated_brier")
            result[label] = {
                "name": other["name"],
                "concordance": other["concordance"],
                "integrated_brier": other["integrated_brier"],
                "concordance_diff": c["diff"],
                "concordance_diff_ci95": c["ci95"],
                "integrated_brier_diff": brier["diff"],
                "integrated_brier_diff_ci95": brier["ci95"],
                "beaten_on_concordance": judge_difference(c["ci95"], greater_is_better=True),
                "beaten_on_brier": judge_difference(brier["ci95"], greater_is_better=False),
            }
    return result


HEADER = [
    "model",
    "kind",
    "Harrell's C",
    "val C",
    "Δ C vs best baseline",
    "integrated Brier",
    "NLL",
    "ECE 30 d",
    "ECE horizon",
    "MAE median (d)",
    *COST_HEADER,
    "export parity",
]


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]"


def render_markdown(section: dict[str, Any]) -> list[str]:
    """One survival task's table (highest holdout concordance first, for reading; choices are made on
    validation concordance) plus its target checks with their intervals."""
    best_baseline = section["selection"]["best_baseline"]
    cells = []
    for r in sorted(section["rows"], key=lambda r: -r["concordance"]):
        cells.append(
            [
                r["name"],
                r["kind"],
                mean_cell(r, "concordance"),
                fmt(r.get("val_concordance")),
                paired_cell(r, best_baseline, "concordance"),
                mean_cell(r, "integrated_brier"),
                mean_cell(r, "nll", 3),
                fmt(r.get("ece_30d")),
                fmt(r.get("ece_horizon")),
                mean_cell(r, "mae_median_days", 2),
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
    t = section["targets"]
    lines += [
        "",
        f"Targets ({section['task']}; best neural {t.get('best_neural')} chosen on validation concordance):",
        "",
    ]
    for key in ("lightgbm", "km_stage"):
        if key in t:
            o = t[key]
            lines.append(
                f"- Best neural vs {o['name']}: C {t['best_neural_concordance']:.4f} vs {o['concordance']:.4f}, "
                f"Δ {o['concordance_diff']:+.4f} {_interval(o['concordance_diff_ci95'])} "
                f"({o['beaten_on_concordance']}); integrated Brier {t['best_neural_integrated_brier']:.4f} vs "
                f"{o['integrated_brier']:.4f}, Δ {o['integrated_brier_diff']:+.4f} "
                f"{_interval(o['integrated_brier_diff_ci95'])} ({o['beaten_on_brier']})."
            )
    return [*lines, ""]


SURVIVAL = SectionKind(
    name="survival",
    metric="concordance",
    greater_is_better=True,
    interval_metrics=INTERVAL_METRICS,
    load_holdout=survival_holdout,
    evaluate_neural=evaluate_neural,
    evaluate_baselines=evaluate_baselines,
    resample=resample,
    target_check=target_check,
    render_markdown=render_markdown,
)
