"""The `pharma` section of reports/forecast_leaderboard.{json,md}: TRx / NRx by HCP and territory (issue 16 item 7).

    .venv/bin/python scripts/bench_pharma_forecast.py   # trx and nrx, seeds 0 1, ensemble 2, <= 30 epochs (the report)
    .venv/bin/python scripts/bench_pharma_forecast.py --targets nrx --seeds 0 --max-epochs 3   # a smoke check

Why through a CSV and `train()`: the issue asks for the SAME forecaster a user gets, so `simulate_pharma`'s
contract tables are exported to a long table (`data.pharma_series`: territory, HCP, week, trx, nrx, calls,
samples, specialty) and trained exactly as `fulqrun-ml train task=forecast data=series` would: calls and samples
are known-future covariates (the rep plan covers the weeks after the extraction), specialty a static
categorical, the hierarchy territory -> HCP with the total, every level forecast and reconciled (bottom-up,
MinT-shrink: `forecasting.reconcile`). Each (target, seed) row: the network (CQR intervals), its raw quantiles,
seasonal naive, SES, Holt-Winters, AutoETS, AutoARIMA, Theta and the reconciled network on the same
rolling-origin backtest; training seconds and ONNX serving latency. The noise floor is the WAPE of the
simulator's expected TRx / NRx on the same test cells. `summary` is keyed "<target>/<level>" so the series
report's table and PNG code reads it unchanged.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fulqrun_ml.benchmarks.forecast_series_study import summarise, train_and_measure, write_series_sections
from fulqrun_ml.benchmarks.pharma_forecast_report import render_pharma_section
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.data.pharma_series import pharma_series_frame
from fulqrun_ml.data.series_table import SeriesTableSpec
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT

SECTION = "pharma"
TARGETS = ("trx", "nrx")
ID_COLS = ("territory", "hcp")
COMMON = [
    "data.id_cols=[territory,hcp]",
    "data.hierarchy=[territory,hcp]",
    "data.time_col=week",
    "data.known_future_cols=[calls,samples]",
    "data.static_cols=[specialty]",
    "data.lookback=26",
    "data.horizon=4",
    "data.val_periods=13",
    "data.calibration_periods=13",
    "data.test_periods=13",
]


def write_pharma_table(seed: int, n_territories: int, hcps_per_territory: int, workdir: Path) -> tuple[Path, Any]:
    """The promoted product's long table as CSV (what a user would hand over) and its expected TRx / NRx."""
    sim = simulate_pharma(seed, n_territories=n_territories, hcps_per_territory=hcps_per_territory)
    frame, expected = pharma_series_frame(sim.tables, str(sim.meta["promoted_product"]), sim.truth)
    path = workdir / f"pharma_{seed}_{n_territories}x{hcps_per_territory}.csv"
    frame.to_csv(path, index=False)
    return path, expected


def run_one(
    target: str,
    seed: int,
    workdir: Path,
    scale: tuple[int, int],
    max_epochs: int | None,
    ensemble: int,
    reuse: bool = False,
) -> dict[str, Any]:
    """Train + backtest + export one (target, seed); its metrics per level, timings and noise floor. With
    `reuse`, a finished run of the same (target, seed) in `workdir` is read instead of retrained (an
    interrupted study resumes without repeating hours of CPU)."""
    table, expected = write_pharma_table(seed, *scale, workdir)
    run_dir = workdir / f"{target}_{seed}"
    spec = SeriesTableSpec(ID_COLS, "week", target, hierarchy=ID_COLS)
    data_overrides = [f"data.target={target}", *COMMON]
    measured = train_and_measure(
        table, run_dir, workdir, seed, data_overrides, spec, expected[f"expected_{target}"], max_epochs, ensemble, reuse
    )
    return {"target": target, **measured}


def run_section(
    targets: Sequence[str],
    seeds: Sequence[int] | dict[str, Sequence[int]],
    scale: tuple[int, int],
    max_epochs: int | None,
    ensemble: int,
    workdir: Path | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    """Every (target, seed); `summary` keyed "<target>/<level>" (mean, min-max over seeds, goal checks).
    `seeds` is one list for every target or a list per target (a study cut short by the CPU budget)."""
    per_target = {t: list(seeds[t] if isinstance(seeds, dict) else seeds) for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        by_target = {
            t: [run_one(t, s, root, scale, max_epochs, ensemble, reuse) for s in per_target[t]] for t in targets
        }
    summary = {
        f"{target}/{level}": value for target, runs in by_target.items() for level, value in summarise(runs).items()
    }
    runs = [r for rs in by_target.values() for r in rs]
    return {
        "data": f"simulate_pharma: {scale[0]} territories x {scale[1]} HCPs, 156 weeks, promoted product; targets "
        f"{list(targets)}; calls + samples known-future (rep plan), specialty static; hierarchy territory -> HCP "
        "with the total",
        "protocol": "rolling-origin backtest over the last 13 weeks (10 origins, H=4); anchors fitted once per "
        "series up to the first origin, then rolled forward with those parameters",
        "seeds": per_target if len({tuple(v) for v in per_target.values()}) > 1 else per_target[targets[0]],
        "targets": list(targets),
        "summary": summary,
        "runs": [{k: v for k, v in r.items() if k != "metrics"} for r in runs],
        "per_seed_metrics": [{"target": r["target"], "seed": r["seed"], **r["metrics"]} for r in runs],
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument(
        "--target-seeds", nargs="+", default=[], metavar="TARGET=S,S", help="seeds of one target (e.g. nrx=0)"
    )
    parser.add_argument("--territories", type=int, default=3)
    parser.add_argument("--hcps-per-territory", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--ensemble", type=int, default=2)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="read finished runs in --workdir instead of retraining")
    args = parser.parse_args(argv)
    configure_study_logging()
    warnings.filterwarnings("ignore")
    scale = (args.territories, args.hcps_per_territory)
    seeds = {t: list(args.seeds) for t in args.targets}
    for item in args.target_seeds:
        target, _, values = item.partition("=")
        if target not in seeds or not values:
            parser.error(f"--target-seeds {item!r}: expected one of {list(seeds)}=S[,S...]")
        seeds[target] = [int(v) for v in values.split(",")]
    section = run_section(args.targets, seeds, scale, args.max_epochs, args.ensemble, args.workdir, args.reuse)
    paths = write_series_sections({"sections": {SECTION: section}, "machine": section["machine"]}, args.reports_dir)
    sys.stdout.write(render_pharma_section(SECTION, section))
    sys.stdout.write(f"\nwrote {', '.join(str(p) for p in paths)}\n")
    return 0
