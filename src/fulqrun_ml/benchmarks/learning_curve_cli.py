"""Deal-win learning curve: does AUC approach 0.97 x the oracle with more data, or is the gap information?

    .venv/bin/python scripts/bench_learning_curve.py                      # 200k deals, the committed report
    .venv/bin/python scripts/bench_learning_curve.py --opportunities 2000 --sizes 500,1000,2000 --out /tmp/lc.json

1. Simulates one large CRM with the default story (`data/simulator_scale.py`, shards of `--per-shard` deals,
   reps and companies scaled with the deals) into `--cache-dir` (outside the repository; reused when the same
   arguments made it before), and builds its deal-win snapshots + features with DuckDB
   (`features/crm_scale_build.py`, the default snapshot grid and horizon).
2. Splits by time like the default data config (val/test 0.15, label-time embargo); the test split is the one
   fixed holdout. Trains logistic regression, LightGBM (tuned) and the default MLP on nested deal subsets
   (`benchmarks/learning_curve.py`; the MLP trains through `train()`) and fits the latent-truth ceilings.
3. Writes `--out` (JSON, with machine info, git commit and wall seconds), the PNG and the Markdown next to it.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fulqrun_ml.benchmarks.learning_curve import LearningCurveConfig, load_deal_win, run_learning_curve, validate_sizes
from fulqrun_ml.benchmarks.learning_curve_models import MLPSettings
from fulqrun_ml.benchmarks.learning_curve_report import plot_learning_curve, render_markdown
from fulqrun_ml.data.crm_duckdb import open_crm
from fulqrun_ml.data.simulator_scale import iter_latent, read_manifest, write_simulated_crm
from fulqrun_ml.data.snapshots_duckdb import snapshot_dates
from fulqrun_ml.features.crm_scale_build import ScaleBuildConfig, build_crm_datasets
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT, git_commit

DEFAULT_SIZES = "6000,12000,25000,50000,100000,200000"
BUILD_RECORD = "learning_curve_build.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the module docstring is its help."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opportunities", type=int, default=200_000, help="deals in the simulated CRM")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated training sizes, in CRM deals")
    parser.add_argument("--seed", type=int, default=7, help="CRM seed (the default config's), subsets and models")
    parser.add_argument("--per-shard", type=int, default=50_000, help="deals per simulated organization")
    parser.add_argument("--workers", type=int, default=2, help="processes simulating shards")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/fulqrun_learning_curve"))
    parser.add_argument("--mlp-max-opportunities", type=int, default=50_000, help="skip the MLP above this size")
    parser.add_argument("--mlp-max-epochs", type=int, default=25)
    parser.add_argument("--mlp-max-seconds", type=float, default=150.0, help="time cap of one MLP fit")
    parser.add_argument("--models", default="logistic,lightgbm_tuned,mlp")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "learning_curve.json")
    parser.add_argument("--note", action="append", default=[], help="a line for the report's notes (repeatable)")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="redraw the PNG and Markdown from an existing --out JSON (adding any --note to it); measures nothing",
    )
    return parser.parse_args(argv)


def parse_sizes(text: str, crm_opportunities: int) -> tuple[int, ...]:
    """`--sizes` as validated integers: a typo fails here, before minutes of simulation."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise SystemExit(f"--sizes: expected comma-separated integers, got {text!r}") from exc
    return validate_sizes(values, crm_opportunities)


def ensure_build(args: argparse.Namespace) -> tuple[Path, Path, dict[str, Any]]:
    """The cached CRM and its deal-win build for these arguments, made (and timed) if not there yet."""
    key = f"crm_{args.opportunities}_seed{args.seed}_shard{args.per_shard}"
    crm_dir, build_dir = args.cache_dir / key, args.cache_dir / f"{key}_build"
    record = build_dir / BUILD_RECORD
    if record.is_file() and (crm_dir / "crm_export.json").is_file():
        return crm_dir, build_dir, {**json.loads(record.read_text()), "cached": True}
    t0 = time.perf_counter()
    write_simulated_crm(crm_dir, args.opportunities, args.seed, args.per_shard, workers=args.workers)
    generation = time.perf_counter() - t0
    report = build_crm_datasets(crm_dir, build_dir, config=ScaleBuildConfig(sequences=False))
    info = {
        "generation_seconds": round(generation, 2),
        "build_seconds": report.to_dict()["seconds_total"],
        "rows_in": read_manifest(crm_dir)["rows"],
        "deal_win_rows": report.rows["deal_win"],
        "leakage_audit": report.audit,
    }
    record.write_text(json.dumps(info, indent=2))
    return crm_dir, build_dir, {**info, "cached": False}


def write_views(report: dict[str, Any], out: Path) -> None:
    """The PNG and the Markdown next to the JSON."""
    plot_learning_curve(report, out.with_suffix(".png"))
    out.with_suffix(".md").write_text(render_markdown(report))


def render_only(args: argparse.Namespace) -> dict[str, Any]:
    """Presentation changes without a 10-minute rerun: the measurements in the JSON stay as they were."""
    report = json.loads(args.out.read_text())
    if args.note:
        report["notes"] = [*report.get("notes", []), *args.note]
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_views(report, args.out)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure (or, with --render-only, redraw) the learning curve; returns the report written to --out."""
    args = parse_args(argv)
    if args.render_only:
        return render_only(args)
    started, t0 = datetime.now(UTC), time.perf_counter()
    sizes = parse_sizes(args.sizes, args.opportunities)
    torch.set_num_threads(args.threads)
    config = LearningCurveConfig(
        sizes=sizes,
        crm_opportunities=args.opportunities,
        seed=args.seed,
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        mlp_max_opportunities=args.mlp_max_opportunities,
        mlp=MLPSettings(max_epochs=args.mlp_max_epochs, max_seconds=args.mlp_max_seconds),
    )
    crm_dir, build_dir, data = ensure_build(args)
    build = ScaleBuildConfig()
    with open_crm(crm_dir) as db:
        dates = snapshot_dates(db, build.every_days, build.warmup_days, build.deal_horizon_days)
    frame = load_deal_win(build_dir, crm_dir, dates, config)
    opportunity_ids = pd.concat(list(iter_latent(crm_dir)), ignore_index=True)["opportunity_id"].to_numpy()
    print(f"data ready in {time.perf_counter() - t0:.1f} s: {len(frame)} deal-win rows", flush=True)
    result = run_learning_curve(frame, config, opportunity_ids, log=lambda m: print(m, flush=True))
    report = {
        "benchmark": "deal-win learning curve vs the oracle on one large simulated CRM",
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(torch_threads=args.threads),
        "data": {
            **data,
            "crm_opportunities": args.opportunities,
            "opportunities_per_shard": args.per_shard,
            "snapshot_every_days": build.every_days,
            "warmup_days": build.warmup_days,
            "horizon_days": build.deal_horizon_days,
            "as_of_dates": len(dates),
        },
        **result,
        "notes": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    write_views(report, args.out)
    print(f"wrote {args.out} (+ .png, .md) in {report['wall_seconds']} s", flush=True)
    return report
