"""The `user_tables` and `hierarchy` sections of reports/forecast_leaderboard.{json,md} (issue 16 items 1, 2, 8).

    .venv/bin/python scripts/bench_forecast_series.py                 # both sections, seeds 0 1
    .venv/bin/python scripts/bench_forecast_series.py --seeds 0 --max-epochs 5   # a smoke check

Data: the synthetic store fixture (`data.series_fixture`: weekly sales, 3 regions x 5 stores, trend, yearly
seasonality, holidays and promotions as known-future covariates, store type as a static categorical), written
to CSV and trained exactly as a user would (`train()` with task=forecast data=series). `user_tables`: the flat
table (one series per store); `hierarchy`: region -> store with the total, every level forecast and reconciled.
Each row: the network (CQR intervals), its raw quantiles, seasonal naive, SES, Holt-Winters, AutoETS, AutoARIMA,
Theta (and bottom-up / MinT-shrink reconciled network forecasts), on the same rolling-origin backtest; training
seconds and ONNX serving latency for the network. The noise floor is the oracle's WAPE: the fixture's true
expected sales scored on the same test cells. Every number is per seed, with the mean and min-max over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.forecast_series_report import png_path, render_series_png, render_series_sections
from fulqrun_ml.benchmarks.forecast_study import onnx_microseconds_per_row, write_forecast_leaderboard
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.data.series_fixture import make_series_fixture
from fulqrun_ml.data.series_table import SeriesTableSpec, build_series_table
from fulqrun_ml.data.snapshot_files import read_snapshot_arrays
from fulqrun_ml.forecasting.export import export_forecaster_onnx, load_calibrated_forecaster
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.training.train import train

SECTIONS = {
    "user_tables": ["data.id_cols=[region,store]"],
    "hierarchy": ["data.id_cols=[region,store]", "data.hierarchy=[region,store]"],
}
COMMON = [
    "data.time_col=week",
    "data.target=sales",
    "data.known_future_cols=[holiday,promo]",
    "data.static_cols=[store_type]",
    "data.lookback=26",
    "data.horizon=4",
    "data.val_periods=13",
    "data.calibration_periods=13",
    "data.test_periods=13",
]
METRICS = ("wape", "mase", "pinball", "coverage", "interval_width", "cells")


def oracle_wape(table_path: Path, run_dir: Path, spec: SeriesTableSpec, truth: Any, levels: Sequence[str]) -> dict:
    """WAPE of the true expected sales on the run's test cells, per level: the noise floor."""
    frame = __import__("pandas").read_csv(table_path)
    observed = build_series_table(frame, spec)
    expected = build_series_table(frame.assign(**{spec.target: truth.to_numpy()}), spec)
    data = read_snapshot_arrays(run_dir / "backtest.npz")
    series, origin, target = data["series"] - 1, data["origin"], data["target"]
    horizon = target.shape[1]
    cells = origin[:, None] + 1 + np.arange(horizon)[None, :]
    inside = cells < observed.n_observed
    oracle = expected.values[series[:, None], np.minimum(cells, observed.n_observed - 1)]
    y = observed.values[series[:, None], np.minimum(cells, observed.n_observed - 1)]
    result = {}
    level_of = np.asarray(observed.levels)[series]
    for lv in levels:
        keep = inside & (level_of == lv)[:, None] & np.isfinite(y)
        result[lv] = float(np.abs(y[keep] - oracle[keep]).sum() / np.abs(y[keep]).sum())
    return result


def train_and_measure(
    table: Path,
    run_dir: Path,
    workdir: Path,
    seed: int,
    data_overrides: Sequence[str],
    spec: SeriesTableSpec,
    truth: Any,
    max_epochs: int | None,
    ensemble: int,
    reuse: bool = False,
) -> dict[str, Any]:
    """Train + backtest + export one series table (`data_overrides`: its columns and windows) with the study's
    recipe, shared by the store sections and the pharma section; its metrics per level, timings and noise floor
    against `truth`. With `reuse`, a finished run in `run_dir` (e.g. from an interrupted study) is read instead of
    retrained."""
    overrides = [
        "task=forecast",
        "model=nbeats",
        f"model.ensemble={ensemble}",
        f"data.path={table}",
        *data_overrides,
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
    reused = reuse and (run_dir / "run_info.json").is_file() and (run_dir / "metrics.json").is_file()
    if reused:
        summary = {**json.loads((run_dir / "run_info.json").read_text())}
        summary["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    else:
        summary = train(cfg)
    wall = summary["seconds"]["total"] if reused else time.perf_counter() - t0
    model = load_calibrated_forecaster(run_dir)
    n_calendar = int(json.loads((run_dir / "net_config.json").read_text())["n_calendar"])
    graph = export_forecaster_onnx(model, n_calendar).SerializeToString()
    windows = read_snapshot_arrays(run_dir / "backtest.npz")
    levels = list(summary["metrics"])
    return {
        "seed": seed,
        "metrics": summary["metrics"],
        "noise_floor_wape": oracle_wape(table, run_dir, spec, truth, levels),
        "train_seconds": summary["seconds"]["fit"],
        "wall_seconds": round(wall, 1),
        "epochs": summary["epochs"],
        "params": summary["extra"]["parameters"],
        "baseline_seconds": summary["extra"]["baseline_fit_forecast_seconds"],
        "onnx_us_per_row": onnx_microseconds_per_row(graph, windows),
        "sizes": summary["sizes"],
    }


def run_one(
    section: str, seed: int, workdir: Path, max_epochs: int | None, ensemble: int, reuse: bool = False
) -> dict[str, Any]:
    """One (section, seed) of the store fixture through `train_and_measure`."""
    fixture = make_series_fixture(n_regions=3, stores_per_region=5, weeks=156, future_weeks=4, seed=seed)
    table = workdir / f"stores_{seed}.csv"
    fixture.table.to_csv(table, index=False)
    spec = SeriesTableSpec(
        ("region", "store"), "week", "sales", hierarchy=("region", "store") if section == "hierarchy" else ()
    )
    run_dir = workdir / f"{section}_{seed}"
    return train_and_measure(
        table, run_dir, workdir, seed, [*SECTIONS[section], *COMMON], spec, fixture.truth, max_epochs, ensemble, reuse
    )


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level x forecaster: mean and min-max over seeds of every metric; target checks per seed and on means."""
    levels = list(runs[0]["metrics"])
    table: dict[str, Any] = {}
    for lv in levels:
        table[lv] = {}
        for who in (k for k in runs[0]["metrics"][lv] if k != "target_check"):
            table[lv][who] = {
                m: {
                    "mean": float(np.mean([r["metrics"][lv][who][m] for r in runs])),
                    "min": float(np.min([r["metrics"][lv][who][m] for r in runs])),
                    "max": float(np.max([r["metrics"][lv][who][m] for r in runs])),
                }
                for m in METRICS
            }
        floor = float(np.mean([r["noise_floor_wape"][lv] for r in runs]))
        model = table[lv]["model"]["wape"]["mean"]
        naive = table[lv]["seasonal_naive"]["wape"]["mean"]
        anchors = {a: table[lv][a]["wape"]["mean"] for a in ("auto_ets", "auto_arima", "theta")}
        best = min(anchors, key=anchors.__getitem__)
        check = {
            "wape_model": model,
            "best_anchor": best,
            "wape_best_anchor": anchors[best],
            "wape_reduction_vs_best_anchor": 1 - model / anchors[best],
            "anchor_target_met": bool(1 - model / anchors[best] >= 0.10),
            "wape_reduction_vs_seasonal_naive": 1 - model / naive,
            "naive_target_met": bool(1 - model / naive >= 0.35),
            "noise_floor_wape": floor,
            "max_reachable_reduction_vs_seasonal_naive": 1 - floor / naive,
            "max_reachable_reduction_vs_best_anchor": 1 - floor / anchors[best],
            "coverage_80": table[lv]["model"]["coverage"]["mean"],
            "coverage_target_met": bool(0.77 <= table[lv]["model"]["coverage"]["mean"] <= 0.83),
        }
        for rec in ("model_bottom_up", "model_mint"):
            if rec in table[lv]:
                check[f"{rec}_wape"] = table[lv][rec]["wape"]["mean"]
                check[f"{rec}_no_worse"] = bool(table[lv][rec]["wape"]["mean"] <= model + 1e-12)
        table[lv]["target_check"] = check
    return table


def run_sections(
    sections: Sequence[str],
    seeds: Sequence[int],
    workdir: Path | None,
    max_epochs: int | None,
    ensemble: int,
    reuse: bool = False,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        out = {}
        for section in sections:
            runs = [run_one(section, seed, root, max_epochs, ensemble, reuse) for seed in seeds]
            out[section] = {
                "data": "synthetic store fixture (data/series_fixture.py): 3 regions x 5 stores, 156 weeks, "
                "holiday + promo known-future, store_type static",
                "protocol": "rolling-origin backtest over the last 13 weeks (10 origins, H=4); anchors fitted once "
                "per series up to the first origin, then rolled forward with those parameters",
                "seeds": list(seeds),
                "summary": summarise(runs),
                "runs": [{k: v for k, v in r.items() if k != "metrics"} for r in runs],
                "per_seed_metrics": [r["metrics"] for r in runs],
            }
    return {"sections": out, "machine": machine_info()}


def write_series_sections(result: dict[str, Any], reports_dir: Path) -> list[Path]:
    """Merge the sections into reports/forecast_leaderboard.json (the revenue rows stay as they are), rewrite
    its Markdown, and write reports/forecast_series.png; every file is replaced atomically."""
    path = reports_dir / "forecast_leaderboard.json"
    board = json.loads(path.read_text()) if path.is_file() else {}
    board.setdefault("sections", {}).update(
        {name: {**section, "machine": result["machine"]} for name, section in result["sections"].items()}
    )
    json_path, md_path = write_forecast_leaderboard(board, reports_dir)
    png = png_path(reports_dir)
    tmp = png.with_name(f".{png.name}.tmp")
    tmp.write_bytes(render_series_png(board["sections"]))
    tmp.replace(png)
    return [json_path, md_path, png]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="read finished runs in --workdir instead of retraining")
    args = parser.parse_args(argv)
    configure_study_logging()
    warnings.filterwarnings("ignore")
    result = run_sections(args.sections, args.seeds, args.workdir, args.max_epochs, args.ensemble, args.reuse)
    paths = write_series_sections(result, args.reports_dir)
    sys.stdout.write(render_series_sections(result["sections"]))
    sys.stdout.write(f"\nwrote {', '.join(str(p) for p in paths)}\n")
    return 0
