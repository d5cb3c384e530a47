#!/usr/bin/env python
"""Revenue-forecast leaderboard: N-HiTS-style forecaster vs seasonal naive, SES and Holt-Winters, per level.

    .venv/bin/python scripts/bench_forecast.py                           # weekly (2- and 6-year CRM), monthly (6-year)
    .venv/bin/python scripts/bench_forecast.py --settings W-2y --levels rep  # a subset
    .venv/bin/python scripts/bench_forecast.py --max-epochs 5        # quicker, for a smoke check

Writes reports/forecast_leaderboard.json (rows, target checks, machine info) and .md
(see `fulqrun_ml.forecasting.leaderboard`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import warnings
from pathlib import Path

from fulqrun_ml.forecasting.leaderboard import (
    DEFAULT_SETTINGS,
    render_forecast_markdown,
    run_forecast_leaderboard,
    write_forecast_leaderboard,
)
from fulqrun_ml.project import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in DEFAULT_SETTINGS]
    parser.add_argument("--settings", nargs="+", default=names, choices=names, help="table blocks to run")
    parser.add_argument("--levels", nargs="+", default=None, choices=["organization", "region", "rep"])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the experiments' max_epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning_fabric", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)

    settings = [s for s in DEFAULT_SETTINGS if s.name in args.settings]
    if args.levels:
        settings = [dataclasses.replace(s, levels=tuple(args.levels)) for s in settings]
    board = run_forecast_leaderboard(args.workdir, settings, args.seed, args.max_epochs)
    json_path, md_path = write_forecast_leaderboard(board, args.reports_dir)
    sys.stdout.write(render_forecast_markdown(board))
    sys.stdout.write(f"\nwrote {json_path} and {md_path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
