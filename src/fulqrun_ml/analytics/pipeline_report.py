"""The pipeline analytics report of one CRM: today's metrics per rep and for the organization, the stage
conversion table, each rep's health score for the current period, and how well the score predicted attainment
in the CRM's own past (rolling-origin backtest against persistence and the 3x coverage rule)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.analytics.health import HealthScore, backtest, period_table, predictor_quality
from fulqrun_ml.analytics.pipeline_metrics import furthest_stage, pipeline_metrics, read_quota, run_rate_quota
from fulqrun_ml.analytics.pipeline_state import pipeline_state
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    clean = frame.replace([np.inf, -np.inf], np.nan).astype(object)
    return clean.where(clean.notna(), None).to_dict(orient="records")


def pipeline_report(
    tables: CRMTables,
    freq: str = "QS",
    lookback_days: float = 365.0,
    min_train_periods: int = 2,
    quota_table: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
) -> dict[str, Any]:
    """Metrics at as_of (default: extraction) for the period starting at or next after as_of, with health scores
    (see the module docstring)."""
    as_of = pd.Timestamp(tables.extracted_at if as_of is None else as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
    offset = pd.tseries.frequencies.to_offset(freq)
    period_start = offset.rollforward(as_of.normalize())  # the coming period: the score is fitted at period starts
    period_end = period_start + offset
    state = pipeline_state(tables, as_of)
    if state.open_deals.empty and state.closed.empty:
        raise FulqrunMLError(f"no opportunity was created at or before {as_of:%Y-%m-%d}: nothing to analyse")
    days = (period_end - period_start).days
    quota = read_quota(quota_table, period_start) if quota_table is not None else run_rate_quota(state, days)
    metrics, conversion = pipeline_metrics(state, furthest_stage(tables.stage_history, as_of), period_end, quota,
                                           lookback_days)  # fmt: skip
    history = period_table(tables, freq, quota_table, lookback_days)
    if not history.empty:
        history = history[history["period_start"] + offset <= as_of]
    reps = history[history["rep"] != "organization"] if not history.empty else history
    health: dict[str, Any] = {"available": False, "reason": "fewer than two finished periods with quotas"}
    quality: dict[str, Any] = {}
    if not reps.empty and reps["period_start"].nunique() >= min_train_periods:
        score = HealthScore.fit(reps[np.isfinite(reps["attainment"])])
        current = metrics.drop(index="organization")
        predicted = pd.Series(score.predict(current), index=current.index)
        total = float(current["quota"].sum())  # 0 when nobody booked anything in the last periods
        org = float((predicted * current["quota"]).sum() / total) if total > 0 else float("nan")
        health = {
            "available": True,
            "weights": score.weights(),
            "per_rep": {str(k): round(float(v), 4) for k, v in predicted.items()},
            "organization": round(org, 4) if np.isfinite(org) else None,
        }
        predictions = backtest(history, min_train_periods)
        quality = predictor_quality(predictions) if len(predictions) > 2 else {}
    return {
        "as_of": as_of.isoformat(),
        "period": {"start": period_start.isoformat(), "end": period_end.isoformat(), "freq": freq},
        "point_in_time": {
            "close_date_versions": state.has_history,
            "amounts_from_current_row": int((~state.open_deals["value_point_in_time"]).sum()),
        },
        "quota_source": "table" if quota_table is not None else "run rate (mean bookings of up to 4 past periods)",
        "organization": _records(metrics.loc[["organization"]].reset_index(names="rep"))[0],
        "per_rep": _records(metrics.drop(index="organization").reset_index(names="rep")),
        "stage_conversion": _records(conversion.reset_index()),
        "health_score": health,
        "health_backtest": quality,
    }
