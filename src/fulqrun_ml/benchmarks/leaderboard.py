"""The model leaderboard: every tabular backbone (several seeds) and every baseline per task, with intervals.

`fulqrun-ml bench models` and `scripts/bench_models.py` run `main`; each task's rows share one time-based holdout.

    fulqrun-ml bench models                                      # every board task, every tabular backbone
    fulqrun-ml bench models --tasks close_timing --models mlp
    fulqrun-ml bench models --tasks deal_win --models mlp tabm --seeds 42,43,44,45,46
    fulqrun-ml bench models --skip lead_conversion:ft_transformer
    fulqrun-ml bench models --forecast --sequence               # also re-run those two benchmarks first

The backbones are discovered, not listed: every `configs/model/*.yaml` whose `family` is `tabular` (a survival
task keeps those whose class takes `n_outputs`), so a new backbone is on every section with no edit here. Each
network is trained by the real entry point, `train(cfg)` on `task=<task> model=<model> seed=<s> logger=none`,
once per seed, on one dataset built once per task; it is loaded back from its run directory, exported,
parity-checked and timed by its section kind (`benchmarks/leaderboard_*.py`). LightGBM (default + tuned, the
tuned one once per seed because it samples), a linear model and the task's reference columns are scored on the
same split. Rows report the mean and 95% t-interval over seeds and a paired bootstrap interval of the
difference to the best baseline; the best network and baseline are chosen on validation
(`benchmarks/leaderboard_board.py::build_section`). The forecaster's and the sequence fusion's results are merged from
their committed reports unless --forecast / --sequence re-run them first.
Writes reports/leaderboard.json and reports/leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.benchmarks import sequence_study
from fulqrun_ml.benchmarks.external_sections import (
    FORECAST_REPORT,
    SEQUENCE_REPORT,
    forecast_section,
    sequence_section,
)
from fulqrun_ml.benchmarks.forecast_study import run_forecast_leaderboard, write_forecast_leaderboard
from fulqrun_ml.benchmarks.leaderboard_board import build_section, render_markdown, section_kind
from fulqrun_ml.benchmarks.leaderboard_kinds import Holdout, LeaderboardError, NeuralRun
from fulqrun_ml.benchmarks.leaderboard_stats import RESAMPLES
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS
from fulqrun_ml.export.package import load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.models import backbone_family
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT, git_commit
from fulqrun_ml.training.train import build_pipeline, train

log = logging.getLogger(__name__)
DEFAULT_TASKS = (
    "deal_win",
    "lead_conversion",
    "account_expansion",
    "account_churn",
    "close_timing",
    "close_timing_survival",
)
# 42 first: the seed every config trains with by default, so a board's first seed is a plain `fulqrun-ml train`.
DEFAULT_SEEDS = (42, 43, 44)
MIN_SEEDS = 3
NOTES = [
    "Every metric is on the time-based holdout (test split); every choice is made on validation: binary best-F1 "
    "thresholds, the best network and the best baseline (by validation AUC, RMSE or concordance), and the "
    "calibration method the binary sections compare.",
    "Networks are trained once per seed; a seeded row is the mean over seeds with a 95% t-interval. Δ columns and "
    "targets use a paired bootstrap over holdout rows (both rows scored on the same resampled rows; seeded rows "
    "as seed-means per resample). A target is met / not met when its interval is on one side, else inconclusive.",
    "Binary neural rows are calibrated on censoring-weighted validation rows (temperature, Platt or isotonic, "
    "as the run chose and exports); ece_uncalibrated is before it; ece_noise_floor is the ECE a perfectly "
    "calibrated model with the same scores would show on these rows.",
    "Regression rows are in the label's units; LightGBM and ridge learn the networks' scaled target and are "
    "decoded with the same scaling; the neural rows are timed and parity-checked on the exported "
    "`prediction` graph.",
    "train_seconds: neural = Lightning fit (train + validation loops, early stopping); LightGBM, linear = fit.",
    "Timings come from a shared CPU with other work running (see load averages); compare within a run.",
]


def discover_backbones(kind: str | None = None) -> list[str]:
    """Every model config whose `family` is tabular, by name; a survival section needs one output per time bin,
    so it keeps the backbones whose class declares MULTI_OUTPUT."""
    names = []
    for path in sorted((CONFIG_DIR / "model").glob("*.yaml")):
        model = OmegaConf.load(path)
        if model.get("family") != "tabular":
            continue
        if kind == "survival" and not backbone_family(model.net._target_)[1]:
            continue
        names.append(str(model.get("name", path.stem)))
    return names


def compose_run(task: str, model: str, output_dir: Path, seed: int, overrides: Sequence[str] = ()) -> DictConfig:
    """`task=<task> model=<model>` composed from the real configs (the task's own recipe), no logger."""
    for group, name in (("task", task), ("model", model)):
        if not (CONFIG_DIR / group / f"{name}.yaml").is_file():
            raise LeaderboardError(f"task '{task}', model '{model}': no configs/{group}/{name}.yaml")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"task={task}",
                f"model={model}",
                "logger=none",
                f"seed={seed}",
                f"paths.output_dir={output_dir}",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


def load_holdout(cfg: DictConfig) -> tuple[Holdout, pl.LightningDataModule]:
    """Build the dataset once, with the task's own pipeline, for the baselines and every network's run.

    A snapshot task's kind is known before the (slow) set-up, so a task without a section fails at once, by
    name; a user table's kind (`kind: auto`) is inferred from its target during set-up, so it is looked up after."""
    declared = cfg.task.get("kind")
    if declared not in (None, "auto"):
        section_kind(declared, cfg.task.name)
    pipeline = build_pipeline(cfg)
    datamodule = pipeline.build_datamodule(cfg)
    datamodule.setup("fit")
    kind = section_kind(pipeline.target_kind(cfg, datamodule), cfg.task.name)
    return kind.load_holdout(datamodule, cfg.task), datamodule


def train_neural(
    task: str,
    model: str,
    seed: int,
    holdout: Holdout,
    datamodule: pl.LightningDataModule,
    workdir: Path,
    overrides: Sequence[str] = (),
) -> NeuralRun:
    """Train one (task, model, seed) with the real entry point on the shared dataset; load it back as export would."""
    cfg = compose_run(task, model, workdir / task / model / f"seed_{seed}", seed, overrides)
    summary = train(cfg, datamodule=datamodule)
    if summary["data_hash"] != holdout.data_hash:
        raise LeaderboardError(
            f"task '{task}', model '{model}': trained on data {summary['data_hash']}, "
            f"leaderboard holdout is {holdout.data_hash}"
        )
    run_dir = Path(summary["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    optimizer = OmegaConf.select(cfg, "task.module.optimizer")
    return NeuralRun(
        model=model,
        seed=seed,
        run_dir=run_dir,
        spec=spec,
        net=load_trained_net(run_dir, spec),
        summary=summary,
        optimizer=OmegaConf.to_container(optimizer, resolve=True) if optimizer is not None else {},
    )


def run_task(
    task: str,
    workdir: Path,
    models: Sequence[str] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    overrides: Sequence[str] = (),
    lightgbm_settings: dict[str, dict[str, Any]] | None = None,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """One task's section: every backbone (once per seed) and every baseline on that task's one split."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    # The data config is the task's, so any backbone composes the dataset every run of the section shares.
    cfg = compose_run(task, (models or discover_backbones())[0], workdir / task / "data", seeds[0], overrides)
    holdout, datamodule = load_holdout(cfg)
    kind = section_kind(holdout.kind, task)
    models = discover_backbones(kind.name) if models is None else models
    fits = []
    for model in models:
        for seed in seeds:
            log.info("leaderboard %s: training %s (seed %s)", task, model, seed)
            fits.append(
                kind.evaluate_neural(train_neural(task, model, seed, holdout, datamodule, workdir, overrides), holdout)
            )
    settings = LIGHTGBM_SETTINGS if lightgbm_settings is None else lightgbm_settings
    fits += kind.evaluate_baselines(holdout, settings, seeds)
    section = build_section(kind, holdout, fits, task, resamples)
    return {
        "task": task,
        **section,
        "generated_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "seeds": list(seeds),
        "models": list(models),
        "horizon_days": int(cfg.data.horizon_days),
        "data": {
            "source": OmegaConf.to_container(cfg.data.source, resolve=True),
            "data_hash": holdout.data_hash,
            "sizes": holdout.sizes,
            "split": "by as_of time with embargo: train < val < test (holdout)",
        },
    }


def run_leaderboard(
    workdir: Path,
    models: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    lightgbm_settings: dict[str, dict[str, Any]] | None = None,
    tasks: Sequence[str] = DEFAULT_TASKS,
    models_by_task: dict[str, Sequence[str]] | None = None,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    resamples: int = RESAMPLES,
) -> dict[str, Any]:
    """Train and score every backbone and baseline per task; returns the board as plain data (a section per task).

    `models` None means every discovered tabular backbone; `models_by_task` overrides it for a task."""
    workdir = Path(workdir)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    load_before = machine_info()["load_average_1m_5m_15m"]
    sections = {
        task: run_task(
            task, workdir, (models_by_task or {}).get(task, models), seeds, overrides, lightgbm_settings, resamples
        )
        for task in tasks
    }
    return {
        "tasks": list(tasks),
        "generated_at": started.isoformat(timespec="seconds"),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "git_commit": git_commit(),
        "overrides": list(overrides),
        "seeds": list(seeds),
        "machine": {**machine_info(), "load_average_at_start": load_before},
        "notes": list(NOTES),
        "sections": sections,
    }


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


def models_by_task(tasks: list[str], models: list[str] | None, skips: list[str]) -> dict[str, list[str]]:
    """`task:model` skips applied to each task's model list (the given one, or the discovered backbones)."""
    by_task = {task: list(models) if models else None for task in tasks}
    for skip in skips:
        task, _, model = skip.partition(":")
        if task not in by_task:
            raise SystemExit(f"--skip {skip!r}: expected task:model with task in {tasks}")
        if by_task[task] is None:
            by_task[task] = discover_backbones(compose_run(task, discover_backbones()[0], Path("unused"), 0).task.kind)
        if model not in by_task[task]:
            raise SystemExit(f"--skip {skip!r}: model must be one of {by_task[task]}")
        by_task[task].remove(model)
    return {task: names for task, names in by_task.items() if names is not None}


def parse_seeds(text: str) -> list[int]:
    """`42,43,44` -> [42, 43, 44]; at least MIN_SEEDS distinct seeds, or the intervals mean nothing."""
    seeds = [int(s) for s in text.split(",") if s.strip()]
    if len(set(seeds)) != len(seeds) or len(seeds) < MIN_SEEDS:
        raise argparse.ArgumentTypeError(f"--seeds needs at least {MIN_SEEDS} distinct seeds, got {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml bench models", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated board tasks")
    parser.add_argument("--models", nargs="+", default=None, help="model configs (default: every tabular backbone)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(DEFAULT_SEEDS), help="e.g. 42,43,44 (>= 3)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES, help="paired bootstrap resamples")
    parser.add_argument("--skip", action="append", default=[], help="task:model to leave out (repeatable)")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for every model run")
    parser.add_argument("--forecast", action="store_true", help="re-run the forecast board (~18 min) first")
    parser.add_argument("--sequence", action="store_true", help="re-run the sequence fusion study first")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temp dir)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the report's notes")
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="no training: re-read the forecast/sequence reports into the existing leaderboard.json, rewrite the .md",
    )
    args = parser.parse_args(argv)
    configure_study_logging()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    plan = models_by_task(tasks, args.models, args.skip)

    if args.forecast:
        write_forecast_leaderboard(run_forecast_leaderboard(), args.reports_dir)
    if args.sequence:
        sequence_study.main(["--reports-dir", str(args.reports_dir)])
    if args.rerender:  # the merged sections follow their own reports; the trained sections stay as measured
        board = json.loads((args.reports_dir / "leaderboard.json").read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="fulqrun-leaderboard-") as tmp:
            board = run_leaderboard(
                args.workdir or Path(tmp),
                args.models,
                args.override,
                tasks=tasks,
                models_by_task=plan,
                seeds=args.seeds,
                resamples=args.resamples,
            )
    board["forecast"] = forecast_section(args.reports_dir / FORECAST_REPORT)
    board["sequence"] = sequence_section(args.reports_dir / SEQUENCE_REPORT)
    board["notes"] += [f"Skipped: {s}." for s in args.skip] + args.note
    json_path, md_path = write_leaderboard(board, args.reports_dir)
    print(render_markdown(board))
    print(f"wrote {json_path} and {md_path}")
    return 0
