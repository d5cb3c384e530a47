"""The `pipeline_blend` section of reports/forecast_leaderboard.{json,md} (issue 16 items 3 and 8).

    .venv/bin/python scripts/bench_pipeline_blend.py                 # seeds 0 1 2
    .venv/bin/python scripts/bench_pipeline_blend.py --seeds 0 --max-epochs 3   # a smoke check

Per seed: the simulator's CRM (6 years, 18,000 deals; seed = the CRM's and the training seed), its monthly
organization bookings, and on the same rolling-origin backtest (the last 12 months, H = 3):
- `nbeats`: the time-series forecaster trained through the spine (`experiment=revenue_forecast_monthly_nbeats
  data.level=organization`), with its CQR intervals;
- `pipeline`: the open pipeline at each origin x P(win) x P(close in month k | won) + deals not yet created,
  by Monte-Carlo (`analytics/pipeline_forecast.py`), every model refitted at the origin on what was known then;
  `pipeline_cqr`: the same with a conformal interval fitted on earlier origins;
- `blend`: quantile average of the two with the weight and a CQR offset fitted on earlier origins only
  (`analytics/pipeline_blend.py`);
- seasonal naive, AutoETS, AutoARIMA and Theta (`forecasting/anchors.py`).
Noise floors: the compound-Poisson WAPE floor of the revenue leaderboard (`forecasting/noise_floor.py`: a forecaster
knowing each month's rate exactly), and the pipeline's own: the WAPE its median would have if its simulated
distribution were the truth (which deals win, and when, is a coin flip even with the right probabilities).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fulqrun_ml.analytics.pipeline_blend import rolling_blend
from fulqrun_ml.analytics.pipeline_forecast import PipelineForecastSettings, period_ends, pipeline_forecasts
from fulqrun_ml.benchmarks.forecast_study import onnx_microseconds_per_row, write_forecast_leaderboard
from fulqrun_ml.benchmarks.pipeline_blend_report import SECTION, render_pipeline_blend_section, summarise
from fulqrun_ml.benchmarks.study_logging import configure_study_logging
from fulqrun_ml.forecasting.anchors import anchor_forecasts
from fulqrun_ml.forecasting.backtest import interval_indices, local_forecasts
from fulqrun_ml.forecasting.baselines import baseline_forecasters
from fulqrun_ml.forecasting.export import export_forecaster_onnx, load_calibrated_forecaster
from fulqrun_ml.forecasting.metrics import forecast_report, seasonal_naive_scale
from fulqrun_ml.forecasting.noise_floor import compound_poisson_wape_floor, won_deal_values
from fulqrun_ml.forecasting.task import predict_quantiles
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.training.train import train

EXPERIMENT = "revenue_forecast_monthly_nbeats"


def _compose(seed: int, run_dir: Path, root: Path, max_epochs: int | None) -> Any:
    overrides = [
        f"experiment={EXPERIMENT}",
        "data.level=organization",
        f"data.source.seed={seed}",
        f"seed={seed}",
        "logger=none",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"paths.output_dir={run_dir}",
        f"paths.root_dir={root}",
    ]
    if max_epochs is not None:
        overrides.append(f"trainer.max_epochs={max_epochs}")
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def run_seed(seed: int, root: Path, max_epochs: int | None, draws: int) -> dict[str, Any]:
    """Train the network, forecast the pipeline from every calibration and test origin, blend, score."""
    run_dir = root / f"pipeline_blend_{seed}"
    cfg = _compose(seed, run_dir, root, max_epochs)
    datamodule = instantiate(cfg.data)
    datamodule.setup()
    summary = train(cfg, datamodule=datamodule)
    quantiles = [float(q) for q in cfg.task.quantiles]
    interval = float(cfg.task.interval)
    pair = interval_indices(quantiles, interval)
    panel, horizon, season = datamodule.panel, datamodule.horizon, datamodule.season
    net = load_calibrated_forecaster(run_dir)
    windows = {s: datamodule.windows[s] for s in ("calibration", "test")}
    origins = np.concatenate([windows["calibration"]["origin"], windows["test"]["origin"]]).astype(int)
    series_q = np.concatenate([predict_quantiles(net, windows[s]).astype(np.float64) for s in windows])
    target = np.concatenate([windows[s]["target"] for s in windows]).astype(np.float64)

    tables = instantiate(cfg.data.source)().tables
    ends = period_ends(tables, datamodule.freq)
    position = {t: i for i, t in enumerate(ends)}
    crm_index = [position[panel.period_end[o]] for o in origins]
    settings = PipelineForecastSettings(horizon=horizon, season=season, draws=draws, quantiles=tuple(quantiles))
    t0 = time.perf_counter()
    pipeline = pipeline_forecasts(tables, crm_index, settings, datamodule.freq, seed)
    pipeline_seconds = time.perf_counter() - t0
    pipeline_q = np.stack([p.quantiles for p in pipeline])

    test_origins = windows["test"]["origin"].astype(int)
    test_rows = np.isin(origins, test_origins)
    blended = rolling_blend(origins, pipeline_q, series_q, target, test_origins, quantiles, pair, interval)
    forecasts = {
        "nbeats": series_q[test_rows],
        "pipeline": pipeline_q[test_rows],
        "pipeline_cqr": blended["pipeline_cqr"],
        "blend": blended["blend"],
        "seasonal_naive": local_forecasts(
            panel, test_origins, horizon, quantiles, baseline_forecasters(season)["seasonal_naive"]
        ),
        **anchor_forecasts(panel, test_origins, horizon, quantiles, season),
    }
    y = target[test_rows]
    scale = seasonal_naive_scale(panel.values.astype(np.float64), season, datamodule.test_start)
    scale = scale[windows["test"]["series"] - 1]
    metrics = {name: forecast_report(y, q, quantiles, scale, pair) for name, q in forecasts.items()}
    spread = np.stack([p.expected_abs_error for p in pipeline])[test_rows]
    seen = np.isfinite(y)
    test_mean = panel.values[:, datamodule.test_start :].mean(axis=1)
    graph = export_forecaster_onnx(net, datamodule.n_calendar).SerializeToString()
    return {
        "seed": seed,
        "metrics": metrics,
        "noise_floor_wape": compound_poisson_wape_floor(test_mean, won_deal_values(tables), seed=seed),
        "pipeline_noise_floor_wape": float(spread[seen].sum() / np.abs(y[seen]).sum()),
        "blend_weight": blended["weight"].tolist(),
        "blend_cqr_offset": blended["offset"].tolist(),
        "origins": [str(panel.period_end[o].date()) for o in test_origins],
        "open_deals": [p.open_deals for p in pipeline],
        "nbeats_train_seconds": summary["seconds"]["fit"],
        "nbeats_epochs": summary["epochs"],
        "nbeats_onnx_us_per_row": onnx_microseconds_per_row(graph, windows["test"]),
        "pipeline_seconds_per_origin": pipeline_seconds / len(pipeline),
        "test_cells": int(np.isfinite(y).sum()),
    }


def run_section(seeds: list[int], workdir: Path | None, max_epochs: int | None, draws: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        runs = [run_seed(seed, root, max_epochs, draws) for seed in seeds]
    return {
        "data": "simulator CRM (6 years, 18,000 deals, seed = run seed); monthly organization bookings",
        "protocol": "rolling-origin backtest over the last 12 months (10 origins, H=3); the pipeline models refit "
        "at every origin on deals closed by then; blend weight and CQR offsets fit on cells observed before "
        "each origin (calibration-period origins + earlier test origins)",
        "seeds": seeds,
        "summary": summarise(runs),
        "runs": [{k: v for k, v in r.items() if k != "metrics"} for r in runs],
        "per_seed_metrics": [r["metrics"] for r in runs],
        "machine": machine_info(),
    }


def write_section(section: dict[str, Any], reports_dir: Path) -> list[Path]:
    """Merge the section into reports/forecast_leaderboard.json (other sections untouched) and rewrite its
    Markdown; both replaced atomically."""
    path = reports_dir / "forecast_leaderboard.json"
    board = json.loads(path.read_text()) if path.is_file() else {}
    board.setdefault("sections", {})[SECTION] = section
    return list(write_forecast_leaderboard(board, reports_dir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--draws", type=int, default=4000)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_study_logging()
    warnings.filterwarnings("ignore")
    section = run_section(args.seeds, args.workdir, args.max_epochs, args.draws)
    paths = write_section(section, args.reports_dir)
    sys.stdout.write(render_pipeline_blend_section(SECTION, section))
    sys.stdout.write(f"\nwrote {', '.join(str(p) for p in paths)}\n")
    return 0
