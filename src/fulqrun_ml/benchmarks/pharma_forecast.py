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
import json
import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.forecast_series_study import oracle_wape, summarise, write_series_sections
from fulqrun_ml.benchmarks.forecast_study import onnx_microseconds_per_row
from fulqrun_ml.benchmarks.pharma_forecast_report import render_pharma_section
from fulqrun_ml.data.pharma_series import pharma_series_frame
from fulqrun_ml.data.series_table import SeriesTableSpec
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.forecasting.export import export_forecaster_onnx, load_calibrated_forecaster
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.training.train import train

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
    overrides = [
        "task=forecast",
        "model=nbeats",
        f"model.ensemble={ensemble}",
        f"data.path={table}",
        f"data.target={target}",
        *COMMON,
        "logger=none",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"paths.output_dir={run_dir}",
        f"paths.root_dir={workdir}",
        f"seed={seed}",
    ]
    if max_epochs is not None:
        overrides.append(f"trainer.max_epochs={max_epochs}")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    t0 = time.perf_counter()
    if reuse and (run_dir / "run_info.json").is_file() and (run_dir / "metrics.json").is_file():
        summary = json.loads((run_dir / "run_info.json").read_text())
        summary["metrics"] = json.loads((run_dir / "metrics.json").read_text())
        wall = float(summary["seconds"]["total"])
    else:
        summary = train(cfg)
        wall = time.perf_counter() - t0
    model = load_calibrated_forecaster(run_dir)
    n_calendar = int(json.loads((run_dir / "net_config.json").read_text())["n_calendar"])
    graph = export_forecaster_onnx(model, n_calendar).SerializeToString()
    with np.load(run_dir / "backtest.npz") as data:
        windows = {k: data[k] for k in data.files}
    spec = SeriesTableSpec(ID_COLS, "week", target, hierarchy=ID_COLS)
    levels = list(summary["metrics"])
    return {
        "target": target,
        "seed": seed,
        "metrics": summary["metrics"],
        "noise_floor_wape": oracle_wape(table, run_dir, spec, expected[f"expected_{target}"], levels),
        "train_seconds": summary["seconds"]["fit"],
        "wall_seconds": round(wall, 1),
        "epochs": summary["epochs"],
        "params": summary["extra"]["parameters"],
        "baseline_seconds": summary["extra"]["baseline_fit_forecast_seconds"],
        "onnx_us_per_row": onnx_microseconds_per_row(graph, windows),
        "sizes": summary["sizes"],
    }


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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("pytorch_lightning", "lightning", "lightning_fabric", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
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
