"""The model leaderboard: per task, every neural backbone and every baseline scored on one time-based holdout.

Each neural model is trained by the real entry point (`training.train.train` on the composed
`experiment=<task>_<model>` config, no logger), then evaluated the way it ships: calibrated with the
run's temperature, exported to the single raw-columns ONNX graph, parity-checked, and timed in ONNX Runtime.
LightGBM (default and one light setting), logistic regression and the task's model-free reference scores
(the rep's own probability where the task has one; the oracle where the simulator provides it) are scored on
the same validation/holdout rows. The best-F1 threshold of every row is chosen on validation.
The forecaster and the sequence fusion have their own (long) benchmarks; their committed reports are merged
into the same board by `external_sections.py` rather than re-run here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.data.datamodule import TabularSnapshotDataModule
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.evaluation.external_sections import render_external_markdown
from fulqrun_ml.evaluation.latency import onnx_microseconds_per_row
from fulqrun_ml.evaluation.lightgbm_baseline import (
    LIGHTGBM_SETTINGS,
    fit_lightgbm,
    lightgbm_microseconds_per_row,
    lightgbm_size,
)
from fulqrun_ml.evaluation.logistic_baseline import L2_C, fit_logistic, logistic_microseconds_per_row
from fulqrun_ml.evaluation.scoring import holdout_scores
from fulqrun_ml.export.onnx_export import check_parity, export_onnx
from fulqrun_ml.export.package import load_calibration, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, git_commit
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.train import train

log = logging.getLogger(__name__)
DEFAULT_TASKS = ("deal_win", "lead_conversion")
NEURAL_MODELS = ("mlp", "mlp_plr", "ft_transformer", "tabm")
# The targets, checked (not asserted) in every report. The oracle-ratio, ECE and rep targets are the
# deal-win ones; "best neural >= LightGBM" applies to every binary task on the board.
ORACLE_TARGET_TASKS = frozenset({"deal_win"})
TARGET_AUC_RATIO_TO_ORACLE = 0.97
TARGET_ECE = 0.02


class LeaderboardError(FulqrunMLError):
    """The leaderboard's models did not see the same data, or a model name has no experiment config."""


@dataclass
class Holdout:
    """The one split every row of the leaderboard is scored on."""

    spec: FittedFeatureSpec
    frames: dict[str, pd.DataFrame]
    arrays: dict[str, dict[str, np.ndarray]]
    data_hash: str
    sizes: dict[str, int]
    baseline_columns: dict[str, str]

    def labels(self, split: str) -> np.ndarray:
        return self.frames[split]["label"].to_numpy(dtype=np.float64)


def compose_experiment(
    model: str, output_dir: Path, overrides: Sequence[str] = (), task: str = "deal_win"
) -> DictConfig:
    """`experiment=<task>_<model>` composed from the real configs, no experiment logger, quiet trainer."""
    if not (CONFIG_DIR / "experiment" / f"{task}_{model}.yaml").is_file():
        raise LeaderboardError(f"task '{task}', model '{model}': no configs/experiment/{task}_{model}.yaml")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"experiment={task}_{model}",
                "logger=none",
                f"paths.output_dir={output_dir}",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


def load_holdout(cfg: DictConfig) -> Holdout:
    """Build the dataset once, as `train` does, for the baselines and the validation-side thresholds."""
    datamodule: TabularSnapshotDataModule = instantiate(cfg.data)
    if datamodule.target_kind != "binary":
        # Regression rows (MAE/RMSE/R², their baseline, LightGBM regressor) are not on the board yet.
        raise LeaderboardError(
            f"task '{cfg.task.name}': kind '{datamodule.target_kind}' is not supported by the leaderboard yet; "
            "use binary tasks (deal_win, lead_conversion, account_expansion)"
        )
    datamodule.setup("fit")
    spec = datamodule.spec
    arrays = {}
    for split, frame in datamodule.frames.items():
        arrays[split] = {**spec.encode(frame), "target": frame["label"].to_numpy(dtype=np.float32)}
    return Holdout(
        spec, datamodule.frames, arrays, datamodule.data_hash, datamodule.sizes, dict(datamodule.baseline_columns)
    )


def evaluate_neural(
    model: str, holdout: Holdout, workdir: Path, overrides: Sequence[str] = (), task: str = "deal_win"
) -> dict[str, Any]:
    """Train one experiment, then score, export, parity-check and time what it would publish."""
    cfg = compose_experiment(model, workdir / task / model, overrides, task)
    summary = train(cfg)
    if summary["data_hash"] != holdout.data_hash:
        raise LeaderboardError(
            f"task '{task}', model '{model}': trained on data {summary['data_hash']}, "
            f"leaderboard holdout is {holdout.data_hash}"
        )
    run_dir = Path(summary["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    calibration = load_calibration(run_dir)  # temperature or isotonic, as the run chose
    val, test = holdout.frames["val"], holdout.frames["test"]
    val_probs = predict_probabilities(net, spec.encode(val), calibration)
    test_probs = predict_probabilities(net, spec.encode(test), calibration)
    graph = export_onnx(net, spec, calibration=calibration)
    parity = check_parity(graph, test_probs, spec, test)
    scores = holdout_scores(val_probs, holdout.labels("val"), test_probs, holdout.labels("test"))
    scores["ece_uncalibrated"] = binary_report(predict_probabilities(net, spec.encode(test)), test["label"])["ece"]
    return {
        "name": model,
        "kind": "neural",
        **scores,
        "train_seconds": summary["seconds"]["fit"],
        "epochs": summary["epochs"],
        "parameters": sum(p.numel() for p in net.parameters()),
        "inference_us_per_row": onnx_microseconds_per_row(graph, spec, test),
        "inference_runtime": "onnxruntime (exported graph incl. preprocessing, 1 thread)",
        "calibration": calibration.get("method", "none"),
        "temperature": calibration.get("temperature"),
        "export_parity_max_abs_diff": parity,
        "net_config": summary["net_config"],
        "optimizer": OmegaConf.to_container(cfg.task.module.optimizer, resolve=True),
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
        "inference_us_per_row": logistic_microseconds_per_row(fit, holdout.arrays["test"]),
        "inference_runtime": "scikit-learn predict on encoded rows (one-hot + linear, no preprocessing)",
        "params": {"C": L2_C},
    }


def evaluate_reference(name: str, column: str, holdout: Holdout) -> dict[str, Any]:
    """A score that already exists on every row: the rep's probability, or the simulator's oracle."""
    val, test = holdout.frames["val"], holdout.frames["test"]
    return {
        "name": name,
        "kind": "reference",
        **holdout_scores(val[column], holdout.labels("val"), test[column], holdout.labels("test")),
        "train_seconds": None,
        "parameters": None,
        "inference_us_per_row": None,
    }


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


def run_task(
    task: str,
    workdir: Path,
    models: Sequence[str] = NEURAL_MODELS,
    overrides: Sequence[str] = (),
    lightgbm_settings: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One task's section: every model and baseline trained and scored on that task's one split."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    # Every experiment of a task composes the same data config; the first one defines the holdout.
    cfg = compose_experiment(models[0] if models else NEURAL_MODELS[0], workdir / task / "data", overrides, task)
    holdout = load_holdout(cfg)
    rows = []
    for model in models:
        log.info("leaderboard %s: training %s", task, model)
        rows.append(evaluate_neural(model, holdout, workdir, overrides, task))
    for name, params in (LIGHTGBM_SETTINGS if lightgbm_settings is None else lightgbm_settings).items():
        rows.append(evaluate_lightgbm(name, params, holdout, int(cfg.seed)))
    rows.append(evaluate_logistic(holdout))
    for name, column in holdout.baseline_columns.items():
        rows.append(evaluate_reference(name, column, holdout))
    return {
        "task": task,
        "kind": "binary",
        "generated_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "seed": int(cfg.seed),
        "horizon_days": int(cfg.data.horizon_days),
        "data": {
            "source": OmegaConf.to_container(cfg.data.source, resolve=True),
            "data_hash": holdout.data_hash,
            "sizes": holdout.sizes,
            "split": "by as_of time with embargo: train < val < test (holdout)",
        },
        "rows": rows,
        "targets": target_check(rows, task),
    }


def run_leaderboard(
    workdir: Path,
    models: Sequence[str] = NEURAL_MODELS,
    overrides: Sequence[str] = (),
    lightgbm_settings: dict[str, dict[str, Any]] | None = None,
    tasks: Sequence[str] = DEFAULT_TASKS,
    models_by_task: dict[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Train and score every model and baseline per task; returns the board as plain data (a section per task).

    `models_by_task` overrides `models` for a task (e.g. a run that drops one slow backbone on one task)."""
    workdir = Path(workdir)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    load_before = machine_info()["load_average_1m_5m_15m"]
    sections = {
        task: run_task(task, workdir, (models_by_task or {}).get(task, models), overrides, lightgbm_settings)
        for task in tasks
    }
    return {
        "tasks": list(tasks),
        "generated_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "git_commit": git_commit(),
        "overrides": list(overrides),
        "machine": {**machine_info(), "load_average_at_start": load_before},
        "notes": [
            "Every metric is on the time-based holdout (test split); best-F1 thresholds are chosen on validation.",
            "Neural rows are calibrated on validation (temperature or isotonic, as the run chose and exports); "
            "ece_uncalibrated is before it.",
            "train_seconds: neural = Lightning fit (train + validation loops, early stopping); LightGBM = fit.",
            "Timings come from a shared CPU with other work running (see load averages); compare within a run.",
        ],
        "sections": sections,
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_task_markdown(section: dict[str, Any]) -> list[str]:
    """One task's table plus its target checks."""
    header = (
        "| model | kind | AUC | PR-AUC | log loss | Brier | ECE | acc@0.5 | acc@best-F1 | lift@10% "
        "| train s | params | µs/row b=1 | µs/row b=1024 |"
    )
    sizes = section["data"]["sizes"]
    lines = [
        f"## {section['task']}",
        "",
        f"Horizon {section['horizon_days']} days, seed {section['seed']}, data `{section['data']['data_hash']}` "
        f"({sizes.get('train_rows')} train / {sizes.get('val_rows')} val / {sizes.get('test_rows')} holdout rows), "
        f"{section['wall_seconds']} s.",
        "",
        header,
        "|" + "---|" * (header.count("|") - 1),
    ]
    for r in sorted(section["rows"], key=lambda r: -r["auc"]):
        latency = r.get("inference_us_per_row") or {}
        params = f"{r['trees']} trees / {r['leaves']} leaves" if "leaves" in r else _fmt(r.get("parameters"))
        cells = [
            r["name"],
            r["kind"],
            _fmt(r["auc"]),
            _fmt(r["pr_auc"]),
            _fmt(r["log_loss"]),
            _fmt(r["brier"]),
            _fmt(r["ece"]),
            _fmt(r["accuracy_at_0_5"]),
            _fmt(r["accuracy_at_best_f1"]),
            _fmt(r["lift_at_10pct"], 2),
            _fmt(r.get("train_seconds"), 1),
            params,
            _fmt(latency.get("batch_1"), 1),
            _fmt(latency.get("batch_1024"), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    targets = section["targets"]
    lines += ["", f"Targets ({section['task']}):", ""]
    if "auc_ratio_to_oracle" in targets:
        lines.append(
            f"- AUC ≥ {targets['auc_ratio_target']} × oracle: best neural ({targets['best_neural']}) reaches "
            f"{targets['auc_ratio_to_oracle']:.3f} × oracle — {'met' if targets['auc_ratio_met'] else 'not met'}."
        )
    if "ece_met" in targets:
        lines.append(
            f"- ECE ≤ {targets['ece_target']}: {targets['best_neural']} has {targets['best_neural_ece']:.4f} — "
            f"{'met' if targets['ece_met'] else 'not met'}."
        )
    if "beats_lightgbm" in targets:
        lines.append(
            f"- Best neural ≥ LightGBM: {targets['best_neural']} {targets['best_neural_auc']:.4f} vs "
            f"{targets['best_lightgbm']} {targets['best_lightgbm_auc']:.4f} — "
            f"{'met' if targets['beats_lightgbm'] else 'not met'}."
        )
    if "beats_rep" in targets:
        lines.append(f"- Beats the rep's probability: {'yes' if targets['beats_rep'] else 'no'}.")
    return [*lines, ""]


def render_markdown(board: dict[str, Any]) -> str:
    """The board as Markdown: a table per task, the merged forecast/sequence sections, targets and notes."""
    lines = [
        "# Leaderboard",
        "",
        f"Generated {board['generated_at']} at commit `{board['git_commit']}` ({board['wall_seconds']} s); "
        f"tasks: {', '.join(board['tasks'])}. Every number is on a time-based holdout.",
        "",
    ]
    for section in board["sections"].values():
        lines += render_task_markdown(section)
    for key in ("forecast", "sequence"):
        if key in board:
            lines += [*render_external_markdown(board[key]), ""]
    machine = board["machine"]
    packages = machine["packages"]
    lines += ["## Notes", ""] + [f"- {n}" for n in board["notes"]]
    lines.append(
        f"- Machine: {machine['cpu_model']}, {machine['cpu_count']} CPUs, torch {packages.get('torch')}, "
        f"onnxruntime {packages.get('onnxruntime')}, lightgbm {packages.get('lightgbm')}; load average at start "
        f"{machine['load_average_at_start']}, at end {machine['load_average_1m_5m_15m']}."
    )
    return "\n".join(lines) + "\n"


def write_leaderboard(board: dict[str, Any], reports_dir: Path) -> tuple[Path, Path]:
    """reports/leaderboard.json and .md, each written to a temp file and renamed (complete or absent)."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    paths = (reports_dir / "leaderboard.json", reports_dir / "leaderboard.md")
    contents = (json.dumps(board, indent=2, default=str) + "\n", render_markdown(board))
    for path, text in zip(paths, contents, strict=True):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths
