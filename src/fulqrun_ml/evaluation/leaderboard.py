"""The model leaderboard: per task, every neural backbone and every baseline scored on one time-based holdout.

Each neural model is trained by the real entry point (`training.train.train` on the composed
`experiment=<task>_<model>` config, no logger) and loaded back from its run directory; the task's *kind*
decides the rest of its section. A small registry (`SECTION_KINDS`) maps a kind to its holdout loader, row
evaluators, target check and Markdown renderer (`leaderboard_kinds.SectionKind`):
  binary      `leaderboard_binary.py`: AUC, PR-AUC, log loss, Brier, ECE, thresholded metrics; LightGBM,
              logistic regression, rep / oracle
  regression  `leaderboard_regression.py`: MAE, RMSE, R², concordance; LightGBM regressor, ridge, stage median
  survival    `leaderboard_survival.py`: Harrell's C, integrated Brier, NLL, ECE, MAE of the median; LightGBM
              as a logistic-hazard model, Kaplan-Meier per stage and pooled
Another kind is one more module with those five functions and one more entry in `SECTION_KINDS`.
The forecaster and the sequence fusion have their own (long) benchmarks; their committed reports are merged
into the same board by `external_sections.py` rather than re-run here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.datamodules.tabular import TabularDataModuleBase
from fulqrun_ml.evaluation.external_sections import render_external_markdown
from fulqrun_ml.evaluation.leaderboard_binary import BINARY
from fulqrun_ml.evaluation.leaderboard_kinds import Holdout, LeaderboardError, NeuralRun, SectionKind
from fulqrun_ml.evaluation.leaderboard_regression import REGRESSION
from fulqrun_ml.evaluation.leaderboard_survival import SURVIVAL
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS
from fulqrun_ml.export.package import load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, git_commit
from fulqrun_ml.training.train import datamodule_override, train

log = logging.getLogger(__name__)
DEFAULT_TASKS = (
    "deal_win",
    "lead_conversion",
    "account_expansion",
    "account_churn",
    "close_timing",
    "close_timing_survival",
)
NEURAL_MODELS = ("mlp", "mlp_plr", "ft_transformer", "tabm")
# Task kind -> its section on the board. Add a kind here (and nowhere else in this file).
SECTION_KINDS: dict[str, SectionKind] = {kind.name: kind for kind in (BINARY, REGRESSION, SURVIVAL)}


def section_kind(kind: str, task: str | None = None) -> SectionKind:
    """The registered section for a task kind; an unregistered kind is an error naming the task and the kind."""
    if kind not in SECTION_KINDS:
        who = f"task '{task}': " if task else ""
        raise LeaderboardError(
            f"{who}kind '{kind}' has no leaderboard section; registered kinds: {', '.join(sorted(SECTION_KINDS))} "
            "(add one to evaluation/leaderboard.py::SECTION_KINDS)"
        )
    return SECTION_KINDS[kind]


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
    """Build the dataset once, as `train` does (same datamodule class), for the baselines (and, binary, the
    validation-side thresholds).

    A snapshot task's kind is known before the (slow) set-up, so a task without a section fails at once, by
    name; a user table's kind is inferred from its target during set-up, so it is looked up again after."""
    datamodule: TabularDataModuleBase = instantiate(cfg.data, **datamodule_override(cfg.task))
    section_kind(datamodule.target_kind, cfg.task.name)
    datamodule.setup("fit")
    return section_kind(datamodule.target_kind, cfg.task.name).load_holdout(datamodule, cfg.task)


def train_neural(
    model: str, holdout: Holdout, workdir: Path, overrides: Sequence[str] = (), task: str = "deal_win"
) -> NeuralRun:
    """Train one experiment with the real entry point and load its network back, as export would."""
    cfg = compose_experiment(model, workdir / task / model, overrides, task)
    summary = train(cfg)
    if summary["data_hash"] != holdout.data_hash:
        raise LeaderboardError(
            f"task '{task}', model '{model}': trained on data {summary['data_hash']}, "
            f"leaderboard holdout is {holdout.data_hash}"
        )
    run_dir = Path(summary["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    return NeuralRun(
        model=model,
        run_dir=run_dir,
        spec=spec,
        net=load_trained_net(run_dir, spec),
        summary=summary,
        optimizer=OmegaConf.to_container(cfg.task.module.optimizer, resolve=True),
    )


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
    kind = section_kind(holdout.kind, task)
    rows = []
    for model in models:
        log.info("leaderboard %s: training %s", task, model)
        rows.append(kind.evaluate_neural(train_neural(model, holdout, workdir, overrides, task), holdout))
    settings = LIGHTGBM_SETTINGS if lightgbm_settings is None else lightgbm_settings
    rows += kind.evaluate_baselines(holdout, settings, int(cfg.seed))
    return {
        "task": task,
        "kind": kind.name,
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
        "targets": kind.target_check(rows, task),
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
            "Every metric is on the time-based holdout (test split); binary best-F1 thresholds are chosen on "
            "validation.",
            "Binary neural rows are calibrated on censoring-weighted validation rows (temperature, Platt or isotonic, "
            "as the run chose and exports); ece_uncalibrated is before it; ece_noise_floor is the ECE a perfectly "
            "calibrated model with the same scores would show on these rows.",
            "Regression rows are in the label's units; LightGBM and ridge learn the networks' scaled target and are "
            "decoded with the same scaling; the neural rows are timed and parity-checked on the exported "
            "`prediction` graph.",
            "train_seconds: neural = Lightning fit (train + validation loops, early stopping); LightGBM, linear = fit.",
            "Timings come from a shared CPU with other work running (see load averages); compare within a run.",
        ],
        "sections": sections,
    }


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
        lines += section_kind(section["kind"], section["task"]).render_markdown(section)
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
