"""The pipeline forecast as a report: commit / most likely / best case bookings for the next periods.

Why its own module: the command (`fulqrun-ml analytics forecast-pipeline`) and the dashboard want the same
plain-JSON answer from any CRM source; the backtest that measures these quantiles is
`benchmarks/pipeline_blend_study.py` (reports/forecast_leaderboard.md, section pipeline_blend).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from fulqrun_ml.analytics.pipeline_forecast import (
    PipelineForecastSettings,
    build_deal_snapshots,
    closes,
    forecast_at,
    next_period_ends,
    period_ends,
)
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def forecast_pipeline_report(
    tables: CRMTables,
    settings: PipelineForecastSettings,
    freq: str = "M",
    as_of: pd.Timestamp | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Bookings per period after the last complete period ending at or before `as_of` (default: extraction)."""
    if tuple(settings.quantiles) != QUANTILES:
        raise FulqrunMLError(f"field 'quantiles': the report reads {QUANTILES}, got {settings.quantiles}")
    ends = period_ends(tables, freq)
    if as_of is not None:
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        ends = ends[ends <= as_of]
    if len(ends) == 0:
        raise FulqrunMLError(f"--as-of: no complete {freq} period ends at or before {as_of}")
    snapshots = build_deal_snapshots(tables, ends, freq)
    forecast = forecast_at(snapshots, closes(tables), len(ends) - 1, settings, seed)
    horizon_ends = next_period_ends(forecast.origin, freq, settings.horizon)
    periods = []
    for k in range(settings.horizon):
        q = forecast.quantiles[k]
        periods.append(
            {
                "period_start": str((horizon_ends[k].floor("D") + pd.Timedelta(days=1)).date()),
                "period_end": str(horizon_ends[k + 1].date()),
                "commit_p10": float(q[0]),
                "p25": float(q[1]),
                "most_likely_p50": float(q[2]),
                "p75": float(q[3]),
                "best_case_p90": float(q[4]),
                "expected_from_open_pipeline": float(forecast.expected_pipeline[k]),
                "expected_from_new_deals": float(forecast.expected_new[k]),
            }
        )
    return {
        "origin": str(forecast.origin),
        "freq": freq,
        "horizon": settings.horizon,
        "open_deals": forecast.open_deals,
        "win_model_training_rows": forecast.win_train_rows,
        "draws": settings.draws,
        "method": "open pipeline x P(win) x P(close in period | won) + deals not yet created, Monte-Carlo",
        "periods": periods,
    }


def forecast_pipeline_command(tables: CRMTables, cfg: dict[str, Any], as_of: pd.Timestamp | None) -> dict[str, Any]:
    """`analytics forecast-pipeline`: the config's settings (configs/analytics/forecast-pipeline.yaml) -> report."""
    names = ("horizon", "train_periods", "timing_snapshots", "new_deal_origins", "season", "draws")
    bad = [n for n in names if not isinstance(cfg.get(n), int) or cfg[n] < 1]
    if bad:
        raise FulqrunMLError(f"config field(s) {bad}: each must be a positive integer")
    settings = PipelineForecastSettings(**{n: cfg[n] for n in names})
    return forecast_pipeline_report(tables, settings, str(cfg.get("freq", "M")), as_of, int(cfg.get("seed", 0)))
