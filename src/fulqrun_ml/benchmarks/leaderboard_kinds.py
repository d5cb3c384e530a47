"""What every leaderboard section shares, and the one interface a task kind implements to get a section.

A section kind ("binary", "regression", "survival") is its headline metric and six functions: how to turn the
task's datamodule into the holdout every row is scored on, how to score a trained network on it, which baselines
to fit and score, how to score a set of holdout predictions on bootstrap resamples of the rows (the paired
intervals), which of the issue's targets to check, and how to render the section as Markdown.
Training the networks (the real `train` entry point, one run per seed, the data-hash check, loading the run
back) is the same for every kind and lives in `benchmarks/leaderboard.py`; a kind only sees the finished run
(`NeuralRun`). Every scored row also carries its validation metric (`val_<metric>`), because whatever the board
chooses (best network, best baseline) it chooses on validation, never on the holdout it reports.
This module imports no kind, so kinds (`leaderboard_binary.py`, `leaderboard_regression.py`) and the
section logic (`leaderboard.py`) can all import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from torch import nn

from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling


class LeaderboardError(FulqrunMLError):
    """The leaderboard's models did not see the same data, a model or task has no experiment config, or a
    task's kind has no section on the board."""


@dataclass
class Holdout:
    """The one split every row of a section is scored on.

    `arrays[split]["target"]` is what models are fitted to (0/1 labels, or the scaled regression target);
    `frames[split]["label"]` is the label in the task's own units, which every row is scored against."""

    kind: str
    spec: FittedFeatureSpec
    frames: dict[str, pd.DataFrame]
    arrays: dict[str, dict[str, np.ndarray]]
    data_hash: str
    sizes: dict[str, int]
    baseline_columns: dict[str, str]
    target_scaling: TargetScaling | None = None
    bin_edges: tuple[float, ...] | None = None  # survival: the task's time grid (days), from `task.bin_edges`

    def labels(self, split: str) -> np.ndarray:
        return self.frames[split]["label"].to_numpy(dtype=np.float64)


def holdout_from(datamodule: TabularDataModuleBase, task_cfg: DictConfig | None = None) -> Holdout:
    """The set-up datamodule's splits, encoded once, with the training target the datamodule itself trains on.
    `task_cfg` (the composed `task` group) is for kinds that need more of the task than its data."""
    arrays = {
        split: {**datamodule.spec.encode(frame), "target": datamodule.target(split)}
        for split, frame in datamodule.frames.items()
    }
    return Holdout(
        kind=datamodule.target_kind,
        spec=datamodule.spec,
        frames=datamodule.frames,
        arrays=arrays,
        data_hash=datamodule.data_hash,
        sizes=datamodule.sizes,
        baseline_columns=dict(datamodule.baseline_columns),
        target_scaling=datamodule.target_scaling,
    )


@dataclass
class NeuralRun:
    """One finished `train` run loaded back from its run directory: what a kind scores, exports and times."""

    model: str
    seed: int
    run_dir: Path
    spec: FittedFeatureSpec
    net: nn.Module
    summary: dict[str, Any]
    optimizer: dict[str, Any]

    def common_row(self) -> dict[str, Any]:
        """The row fields every kind reports for a network, whatever its metrics."""
        return {
            "name": self.model,
            "kind": "neural",
            "seed": self.seed,
            "train_seconds": self.summary["seconds"]["fit"],
            "epochs": self.summary["epochs"],
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "inference_runtime": "onnxruntime (exported graph incl. preprocessing, 1 thread)",
            "net_config": self.summary["net_config"],
            "optimizer": self.optimizer,
        }


def reference_row(name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """A row for a score that needs no model of ours (rep, oracle, stage median, Kaplan-Meier): its metrics and
    no training time, size or latency."""
    return {
        "name": name,
        "kind": "reference",
        **metrics,
        "train_seconds": None,
        "parameters": None,
        "inference_us_per_row": None,
    }


@dataclass
class Scored:
    """One fit's row (metrics, cost, provenance) and its holdout predictions, which the paired bootstrap rescores
    on resampled rows: probabilities (binary), predictions in task units (regression), curves [N, K] (survival)."""

    row: dict[str, Any]
    predictions: np.ndarray


# Holdout predictions of one row (one array per seed) and bootstrap counts [resamples + 1, rows] -> metric ->
# [resamples + 1] values (seed-mean per resample; index 0 is the full holdout).
Resampler = Callable[[Sequence[np.ndarray], Holdout, np.ndarray], dict[str, np.ndarray]]


@dataclass(frozen=True)
class SectionKind:
    """A task kind's part of the board. Adding a kind = one module defining these and one registry entry.

    - `metric`, `greater_is_better`: the headline metric the board chooses on (as `val_<metric>`) and compares.
    - `interval_metrics`: the metrics reported as mean and 95% t-interval over training seeds.
    - `load_holdout(datamodule, task_cfg)`: the set-up datamodule as a `Holdout` (usually `holdout_from`).
    - `evaluate_neural(run, holdout)`: a trained network's row (metrics, `val_<metric>`, export parity, ONNX
      µs/row) and its holdout predictions.
    - `evaluate_baselines(holdout, lightgbm_settings, seeds)`: the LightGBM, linear and reference rows; a fit
      that depends on its seed appears once per seed (same name), a deterministic one once.
    - `resample(predictions, holdout, counts)`: the paired-bootstrap metrics of one row (`metric` among them).
    - `target_check(rows, task)`: the issue's targets against this run's rows, judged on their intervals.
    - `render_markdown(section)`: the section's table and target lines."""

    name: str
    metric: str
    greater_is_better: bool
    interval_metrics: tuple[str, ...]
    load_holdout: Callable[[TabularDataModuleBase, DictConfig], Holdout]
    evaluate_neural: Callable[[NeuralRun, Holdout], Scored]
    evaluate_baselines: Callable[[Holdout, dict[str, dict[str, Any]], Sequence[int]], list[Scored]]
    resample: Resampler
    target_check: Callable[[list[dict[str, Any]], str], dict[str, Any]]
    render_markdown: Callable[[dict[str, Any]], list[str]]


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` places, missing values as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def model_size(row: dict[str, Any]) -> str:
    """Parameters for networks and linear models; trees / leaves for LightGBM (no comparable count)."""
    if "leaves" in row:  # a seed-mean for seeded settings, hence the rounding
        return f"{row['trees']:.0f} trees / {row['leaves']:.0f} leaves"
    return fmt(row.get("parameters"))


# The cost columns every section's table ends with (after its own metrics), and their cells.
COST_HEADER = ["train s", "params", "µs/row b=1", "µs/row b=1024"]


def cost_cells(row: dict[str, Any]) -> list[str]:
    """Training seconds, model size and inference µs/row (batch 1 and 1024) of one row, formatted."""
    latency = row.get("inference_us_per_row") or {}
    return [
        fmt(row.get("train_seconds"), 1),
        model_size(row),
        fmt(latency.get("batch_1"), 1),
        fmt(latency.get("batch_1024"), 2),
    ]


def parity_cell(row: dict[str, Any]) -> str:
    """The export parity gap of a network row; a dash for rows with no exported graph."""
    parity = row.get("export_parity_max_abs_diff")
    return "–" if parity is None else f"{parity:.1e}"


def section_intro(section: dict[str, Any]) -> list[str]:
    """A section's heading and the data line every kind shows: horizon, seeds, data hash, split sizes, time, and
    how to read its intervals."""
    sizes = section["data"]["sizes"]
    seeds = ", ".join(str(s) for s in section["seeds"])
    boot = section["bootstrap"]
    return [
        f"## {section['task']}",
        "",
        f"{section['kind'].capitalize()} task. Horizon {section['horizon_days']} days, training seeds {seeds}, "
        f"data `{section['data']['data_hash']}` ({sizes.get('train_rows')} train / {sizes.get('val_rows')} val / "
        f"{sizes.get('test_rows')} holdout rows), {section['wall_seconds']} s. Seeded rows show the mean over "
        f"seeds ± the half-width of its 95% t-interval; Δ is the difference to the best baseline chosen on "
        f"validation ({section['selection']['best_baseline']}), with a paired bootstrap 95% interval "
        f"({boot['resamples']} resamples of the holdout rows). Best is chosen on validation `val_{section['metric']}`.",
        "",
    ]


def mean_cell(row: dict[str, Any], metric: str, digits: int = 4) -> str:
    """A metric cell: the seed-mean ± its 95% t-interval half-width where the row was trained with seeds."""
    interval = (row.get("interval") or {}).get(metric)
    if not interval or interval.get("ci95") is None:
        return fmt(row.get(metric), digits)
    lo, hi = interval["ci95"]
    return f"{interval['mean']:.{digits}f} ± {(hi - lo) / 2:.{digits}f}"


def paired_cell(row: dict[str, Any], other: str | None, metric: str, digits: int = 4) -> str:
    """Δ metric to `other` with its paired bootstrap interval, e.g. `+0.0021 [-0.0010, +0.0052]`."""
    paired = (row.get("paired") or {}).get(other or "", {}).get(metric)
    if paired is None:
        return "–"
    lo, hi = paired["ci95"]
    return f"{paired['diff']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def comparison(row: dict[str, Any], other: dict[str, Any], metric: str) -> dict[str, Any]:
    """The paired interval of `row` against `other` on `metric`, as the kinds' target checks read it."""
    paired = (row.get("paired") or {}).get(other["name"], {}).get(metric)
    if paired is None:
        raise KeyError(f"row '{row['name']}' has no paired {metric} interval against '{other['name']}'")
    return paired


def table_lines(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table from a header and rows of already formatted cells."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]
