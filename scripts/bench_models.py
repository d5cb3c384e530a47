#!/usr/bin/env python
"""Model leaderboard on deal win: every backbone and the baselines, one seed, one time-based holdout.

    .venv/bin/python scripts/bench_models.py                               # all of mlp, mlp_plr, ft_transformer, tabm
    .venv/bin/python scripts/bench_models.py --models mlp tabm             # a subset
    .venv/bin/python scripts/bench_models.py --override data.source.n_opportunities=20000

Trains each `experiment=deal_win_<model>` with `fulqrun_ml.training.train.train` (logger=none), exports and
parity-checks it, times the ONNX graph, fits LightGBM (default + one light setting) on the same split, and
scores the rep's probability and the oracle. Writes reports/leaderboard.json (with machine info) and
reports/leaderboard.md (see `fulqrun_ml.evaluation.leaderboard`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

from fulqrun_ml.evaluation.leaderboard import NEURAL_MODELS, render_markdown, run_leaderboard, write_leaderboard
from fulqrun_ml.project import REPO_ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(NEURAL_MODELS), help="model configs to train")
    parser.add_argument("--override", action="append", default=[], help="Hydra override for every model run")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temp dir)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the report's notes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning_fabric", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="fulqrun-leaderboard-") as tmp:
        board = run_leaderboard(args.workdir or Path(tmp), args.models, args.override)
    board["notes"] += args.note
    json_path, md_path = write_leaderboard(board, args.reports_dir)
    print(render_markdown(board))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
