#!/usr/bin/env python
"""Model leaderboard per task: every backbone and the baselines, one seed, one time-based holdout per task.

    .venv/bin/python scripts/bench_models.py                                  # every board task, 4 models
    .venv/bin/python scripts/bench_models.py --tasks close_timing --models mlp
    .venv/bin/python scripts/bench_models.py --tasks deal_win --models mlp tabm
    .venv/bin/python scripts/bench_models.py --skip lead_conversion:ft_transformer
    .venv/bin/python scripts/bench_models.py --forecast --sequence             # also re-run those two benchmarks

The default tasks are deal_win, lead_conversion, account_expansion, account_churn (binary), close_timing
(regression) and close_timing_survival (survival). Trains each `experiment=<task>_<model>` with
`fulqrun_ml.training.train.train` (logger=none), exports and parity-checks it, times the ONNX graph, fits LightGBM
(default + tuned) and a linear model (logistic regression for binary tasks, ridge for regression) on the same
split, and scores the task's reference columns (rep, oracle; close timing's stage median). Binary sections report
AUC / PR-AUC / log loss / Brier / ECE, regression sections MAE / RMSE / R² / concordance, survival sections
Harrell's C / integrated Brier / NLL / ECE against LightGBM as a logistic hazard and Kaplan-Meier curves
(`evaluation/leaderboard.py::SECTION_KINDS`).
The forecaster's and the sequence fusion's results are merged from their committed reports
(reports/forecast_leaderboard.json, reports/sequence_fusion.json) unless --forecast / --sequence re-run them first.
Writes reports/leaderboard.json and reports/leaderboard.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

from fulqrun_ml.evaluation.external_sections import (
    FORECAST_REPORT,
    SEQUENCE_REPORT,
    forecast_section,
    sequence_section,
)
from fulqrun_ml.evaluation.leaderboard import (
    DEFAULT_TASKS,
    NEURAL_MODELS,
    render_markdown,
    run_leaderboard,
    write_leaderboard,
)
from fulqrun_ml.benchmarks.forecast_study import run_forecast_leaderboard, write_forecast_leaderboard
from fulqrun_ml.project import REPO_ROOT


def models_by_task(tasks: list[str], models: list[str], skips: list[str]) -> dict[str, list[str]]:
    """`task:model` skips applied to the shared model list (e.g. drop a slow backbone on one task)."""
    by_task = {task: list(models) for task in tasks}
    for skip in skips:
        task, _, model = skip.partition(":")
        if task not in by_task or model not in by_task[task]:
            raise SystemExit(f"--skip {skip!r}: expected task:model with task in {tasks} and model in {models}")
        by_task[task].remove(model)
    return by_task


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated tasks (binary, regression or survival)"
    )
    parser.add_argument("--models", nargs="+", default=list(NEURAL_MODELS), help="model configs to train")
    parser.add_argument("--skip", action="append", default=[], help="task:model to leave out (repeatable)")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for every model run")
    parser.add_argument("--forecast", action="store_true", help="re-run the forecast board (~18 min) first")
    parser.add_argument("--sequence", action="store_true", help="re-run scripts/bench_sequence.py first")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temp dir)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the report's notes")
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="no training: re-read the forecast/sequence reports into the existing leaderboard.json, rewrite the .md",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning_fabric", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    plan = models_by_task(tasks, args.models, args.skip)

    if args.forecast:
        write_forecast_leaderboard(run_forecast_leaderboard(), args.reports_dir)
    if args.sequence:
        # bench_sequence is a script (not importable as a module); run it as its own process, as documented.
        command = [sys.executable, str(REPO_ROOT / "scripts" / "bench_sequence.py"), "--reports-dir"]
        subprocess.run([*command, str(args.reports_dir)], check=True)
    if args.rerender:  # the merged sections follow their own reports; the trained sections stay as measured
        board = json.loads((args.reports_dir / "leaderboard.json").read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="fulqrun-leaderboard-") as tmp:
            board = run_leaderboard(
                args.workdir or Path(tmp), args.models, args.override, tasks=tasks, models_by_task=plan
            )
    board["forecast"] = forecast_section(args.reports_dir / FORECAST_REPORT)
    board["sequence"] = sequence_section(args.reports_dir / SEQUENCE_REPORT)
    board["notes"] += [f"Skipped: {s}." for s in args.skip] + args.note
    json_path, md_path = write_leaderboard(board, args.reports_dir)
    print(render_markdown(board))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
