"""Revenue-forecast leaderboard: N-HiTS-style forecaster vs seasonal naive, SES and Holt-Winters, per level.

    .venv/bin/python scripts/bench_forecast.py                           # weekly (2- and 6-year CRM), monthly (6-year)
    .venv/bin/python scripts/bench_forecast.py --settings W-2y --levels rep  # a subset
    .venv/bin/python scripts/bench_forecast.py --max-epochs 5        # quicker, for a smoke check

Task x level x frequency x model, every number from a rolling-origin backtest on the latest periods (a
time-based holdout), baselines scored on the same cells. Each (frequency, level) trains the configured
experiment through `train()` (the forecast pipeline, exactly as `fulqrun-ml train`), then exports the calibrated
graph and times it in ONNX Runtime. Rows: `nbeats` (conformal intervals), `nbeats_raw` (the network's own
quantiles), `seasonal_naive`, `ses`, `holt_winters`. Callable from the main leaderboard
(`run_forecast_leaderboard`) and from the command line (`main`); writes reports/forecast_leaderboard.json (rows,
target checks, machine info) and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.forecast_sections import render_sections
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.data.snapshot_files import read_snapshot_arrays
from fulqrun_ml.evaluation.latency import median_microseconds_per_row
from fulqrun_ml.forecasting.export import OUTPUT_NAME, export_forecaster_onnx, load_calibrated_forecaster
from fulqrun_ml.machine import machine_info
from fulqrun_ml.pipelines.forecast import COVERAGE_TARGET, WAPE_REDUCTION_TARGET
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.training.train import train

ROW_NAMES = {"model": "nbeats", "model_raw": "nbeats_raw"}
METRICS = ("wape", "mase", "pinball", "coverage", "interval_width", "cells")


@dataclass(frozen=True)
class ForecastSetting:
    """One (frequency, data) block of the table: the experiment and the data overrides it runs with."""

    name: str  # the block's label in the table, e.g. "W-2y"
    freq: str
    experiment: str
    data_overrides: Sequence[str] = ()
    data_note: str = ""
    levels: Sequence[str] = ("organization", "region", "rep")
    extra_overrides: Sequence[str] = field(default_factory=tuple)


SIX_YEARS = ("data.source.days=2190", "data.source.n_opportunities=18000")  # the default deal rate, 3x as long
DEFAULT_SETTINGS = (
    ForecastSetting("W-2y", "W", "revenue_forecast_weekly_nbeats", data_note="default simulator: 2 years, 6,000 deals"),
    ForecastSetting(
        "W-6y", "W", "revenue_forecast_weekly_nbeats", SIX_YEARS, "6 years, 18,000 deals (same protocol, more history)"
    ),
    ForecastSetting(
        "M-6y", "M", "revenue_forecast_monthly_nbeats", data_note="6 years, 18,000 deals (2 years is too short)"
    ),
)


def onnx_microseconds_per_row(graph_bytes: bytes, windows: dict[str, np.ndarray]) -> dict[str, float]:
    """µs/row for single-window calls and 1,024-window batches, one ORT thread (as serving runs it)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph_bytes, options, providers=["CPUExecutionProvider"])
    n = len(windows["history"])
    result = {}
    for size, n_batches, repeats in ((1, 50, 300), (1024, 1, 30)):
        rows = np.resize(np.arange(n), size * n_batches)
        batches = [
            {
                "history": windows["history"][rows[i * size : (i + 1) * size]].astype(np.float32),
                "calendar": windows["calendar"][rows[i * size : (i + 1) * size]].astype(np.float32),
                "series": windows["series"][rows[i * size : (i + 1) * size]].astype(np.int64),
            }
            for i in range(n_batches)
        ]
        result[f"batch_{size}"] = median_microseconds_per_row(
            lambda feeds: session.run([OUTPUT_NAME], feeds), batches, size, repeats
        )
    return result


def _compose(setting: ForecastSetting, level: str, run_dir: Path, seed: int, max_epochs: int | None) -> Any:
    overrides = [
        f"experiment={setting.experiment}",
        f"paths.output_dir={run_dir}",
        f"paths.root_dir={run_dir.parent}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"data.level={level}",
        f"seed={seed}",
        *setting.data_overrides,
        *setting.extra_overrides,
    ]
    if max_epochs is not None:
        overrides.append(f"trainer.max_epochs={max_epochs}")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def evaluate_setting(
    setting: ForecastSetting, level: str, workdir: Path, seed: int = 42, max_epochs: int | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train + backtest one (frequency, level); returns its leaderboard rows and its target check."""
    run_dir = workdir / f"{setting.name}_{level}_{seed}"
    cfg = _compose(setting, level, run_dir, seed, max_epochs)
    t0 = time.perf_counter()
    summary = train(cfg)
    wall = time.perf_counter() - t0
    metrics = summary["metrics"][level]
    graph = export_forecaster_onnx(load_calibrated_forecaster(run_dir)).SerializeToString()
    windows = read_snapshot_arrays(run_dir / "backtest.npz")
    latency = onnx_microseconds_per_row(graph, windows)
    rows = []
    for who, m in metrics.items():
        if who == "target_check":
            continue
        row: dict[str, Any] = {
            "task": "revenue_forecast",
            "level": level,
            "freq": setting.freq,
            "setting": setting.name,
            "model": ROW_NAMES.get(who, who),
            **{k: m[k] for k in METRICS},
        }
        if who in ROW_NAMES:
            row |= {
                "train_seconds": summary["seconds"]["fit"],
                "epochs": summary["epochs"],
                "params": summary["extra"]["parameters"],
                "onnx_us_per_row": latency if who == "model" else None,
            }
        else:
            seconds = summary["extra"]["baseline_fit_forecast_seconds"][who]
            row |= {"fit_forecast_us_per_row": seconds * 1e6 / max(len(windows["history"]), 1), "params": None}
        rows.append(row)
    check = {
        "level": level,
        "freq": setting.freq,
        "setting": setting.name,
        **metrics["target_check"],
        "sizes": summary["sizes"],
        "wall_seconds": round(wall, 1),
    }
    return rows, check


def run_forecast_leaderboard(
    workdir: Path | None = None,
    settings: Sequence[ForecastSetting] = DEFAULT_SETTINGS,
    seed: int = 42,
    max_epochs: int | None = None,
) -> dict[str, Any]:
    """Every setting x level; returns the board (rows, target checks, settings, machine info)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        rows, checks = [], []
        for setting in settings:
            for level in setting.levels:
                r, c = evaluate_setting(setting, level, root, seed, max_epochs)
                rows += r
                checks.append(c)
    return {
        "task": "revenue_forecast",
        "holdout": "rolling-origin backtest over the latest periods (26 weeks / 12 months); origins step 1",
        "targets": {"wape_reduction_vs_seasonal_naive": WAPE_REDUCTION_TARGET, "coverage_80": list(COVERAGE_TARGET)},
        "settings": [
            {
                "name": s.name,
                "freq": s.freq,
                "experiment": s.experiment,
                "data_overrides": list(s.data_overrides),
                "data": s.data_note,
            }
            for s in settings
        ],
        "seed": seed,
        "rows": rows,
        "target_checks": checks,
        "machine": machine_info(),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_forecast_markdown(board: dict[str, Any]) -> str:
    """The board as Markdown: one table per frequency, then the target checks."""
    lines = [
        "# Revenue forecast leaderboard",
        "",
        f"Every number is from a {board['holdout']}. WAPE and MASE score the median; pinball is the mean quantile "
        "loss over (0.1, 0.25, 0.5, 0.75, 0.9) divided by mean |revenue|; coverage / width are the 80% interval "
        "(width divided by mean |revenue|). `nbeats` has conformal (CQR) intervals calibrated on the period "
        "before the backtest; `nbeats_raw` is the same network's own quantiles. Baselines are refitted at every "
        "origin on the series' whole history. Latency: the calibrated ONNX graph in ONNX Runtime, one thread; "
        "baselines: Python fit + forecast per window.",
        "",
    ]
    for s in board["settings"]:
        lines += [
            f"## {s['name']}: {'weekly' if s['freq'] == 'W' else 'monthly'} (`{s['experiment']}`; data: {s['data']})",
            "",
            "| level | model | WAPE | MASE | pinball | coverage@80 | width@80 | train s | params "
            "| µs/row (b=1 / b=1024) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in board["rows"] if r.get("setting", r["freq"]) == s.get("name", s["freq"])):
            if r.get("onnx_us_per_row"):
                latency = f"{r['onnx_us_per_row']['batch_1']:.1f} / {r['onnx_us_per_row']['batch_1024']:.2f} (ONNX)"
            elif "fit_forecast_us_per_row" in r:
                latency = f"{r['fit_forecast_us_per_row']:.0f} (fit+forecast)"
            else:
                latency = "-"
            lines.append(
                f"| {r['level']} | {r['model']} | {_fmt(r['wape'])} | {_fmt(r['mase'])} | {_fmt(r['pinball'])} | "
                f"{_fmt(r['coverage'])} | {_fmt(r['interval_width'])} | {_fmt(r.get('train_seconds'), 1)} | "
                f"{_fmt(r.get('params'))} | {latency} |"
            )
        lines.append("")
    low, high = board["targets"]["coverage_80"]
    lines += [
        f"## Targets: WAPE >= {board['targets']['wape_reduction_vs_seasonal_naive']:.0%} below seasonal naive; "
        f"80% interval coverage {low:.0%}-{high:.0%}",
        "",
        "WAPE floor: the irreducible WAPE of compound-Poisson bookings at each series' test-period rate (a "
        "forecaster knowing the rate exactly; `forecasting/noise_floor.py`), and the largest reduction vs seasonal "
        "naive it allows. Where that is below 35%, no forecaster can meet the WAPE target on this data.",
        "",
        "| setting | level | WAPE reduction vs seasonal naive | met | WAPE floor | max reachable reduction "
        "| coverage@80 | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in board["target_checks"]:
        lines.append(
            f"| {c.get('setting', c['freq'])} | {c['level']} | {c['wape_reduction_vs_seasonal_naive']:.1%} | "
            f"{'yes' if c['wape_target_met'] else 'no'} | {c.get('noise_floor_wape', float('nan')):.3f} | "
            f"{c.get('max_reachable_wape_reduction', float('nan')):.1%} | {c['coverage_80']:.3f} | "
            f"{'yes' if c['coverage_target_met'] else 'no'} |"
        )
    m = board["machine"]
    lines += ["", f"Machine: {m['cpu_model']} x{m['cpu_count']}, load average {m['load_average_1m_5m_15m']}."]
    return "\n".join(lines) + "\n"


def write_forecast_leaderboard(board: dict[str, Any], reports_dir: Path) -> tuple[Path, Path]:
    """The board as reports/forecast_leaderboard.json and .md, each replaced atomically; returns both paths.

    The report is a dict of sections: the revenue rows at the top level (as before) and `sections` (user tables,
    hierarchy, from forecast_series_study). A board without `sections` keeps the ones already in the file, so
    re-running one study never drops another's section."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = reports_dir / "forecast_leaderboard.json", reports_dir / "forecast_leaderboard.md"
    if "sections" not in board and json_path.is_file():
        board = {**board, "sections": json.loads(json_path.read_text()).get("sections", {})}
    if "rows" not in board and json_path.is_file():  # only sections given: keep the revenue rows
        board = {**json.loads(json_path.read_text()), "sections": board.get("sections", {})}
    atomic_write_text(json_path, json.dumps(board, indent=2, default=str))
    markdown = render_forecast_markdown(board) if "rows" in board else "# Forecast leaderboard\n"
    atomic_write_text(md_path, markdown + "\n" + render_sections(board.get("sections", {})))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    """Run the chosen settings and levels, write the report, print its Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in DEFAULT_SETTINGS]
    parser.add_argument("--settings", nargs="+", default=names, choices=names, help="table blocks to run")
    parser.add_argument("--levels", nargs="+", default=None, choices=["organization", "region", "rep"])
    parser.add_argument("--max-epochs", type=int, default=None, help="override the experiments' max_epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None, help="where runs go (default: a temp dir)")
    args = parser.parse_args(argv)
    configure_study_logging()
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
