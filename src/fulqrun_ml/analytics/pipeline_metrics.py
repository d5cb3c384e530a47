"""Pipeline metrics at one as_of, per rep and for the organization: coverage against quota, velocity, stage
conversion, aging and slippage. All read a `PipelineState` (what was knowable at as_of) and nothing else.

Definitions (the usual sales-operations ones, made explicit so that numbers from different CRMs compare):
- stage conversion: among deals closed in the lookback window, the share of those that reached stage k that
  went on to the next stage (won, for the last); `win_from_stage[k]` the share of them that were won;
- coverage: open amount expected to close before the period ends (overdue dates count as this period) over the
  quota; `weighted_coverage` weights each deal by `win_from_stage` of its stage; `open_coverage` counts every open
  deal (the only coverage available when the source keeps no close-date versions);
- velocity: open deals x win rate x mean won amount / mean won cycle days, from the lookback (amount per day);
- new pipeline: amount of the deals created in the last period (open or closed since) over the quota, and the
  win rate of the lookback's decided deals: deals created during a period also book in it (cycles are shorter
  than a quarter), so the rate of pipeline creation predicts attainment beyond the pipeline already open;
- aging: mean open age in days and the share older than the 90th percentile of won cycles (stale deals);
- slippage: the share of open deals whose close date was pushed at least once, pushes per open deal, and the
  net amount change of open deals as a share of their first amounts.
- quota: a given table (user_id, period_start, quota), else each rep's mean bookings over up to four previous
  periods (the rep's run rate; the organization's mean rep run rate for a rep without one), point-in-time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.analytics.pipeline_state import PipelineState
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import DataContractError

DAY = pd.Timedelta(days=1)
METRIC_COLUMNS = (
    "quota",
    "open_deals",
    "coverage",
    "weighted_coverage",
    "open_coverage",
    "velocity_per_period",
    "new_pipeline_per_period",
    "win_rate",
    "mean_age_days",
    "stale_share",
    "pushed_share",
    "pushes_per_deal",
    "amount_change_share",
)


def stage_conversion(state: PipelineState, stage_reached: pd.Series, lookback_days: float = 365.0) -> pd.DataFrame:
    """Per open stage: deals that reached it (among those closed in the lookback), conversion to the next stage
    and win rate from it. `stage_reached`: deal id -> index of the furthest open stage reached by as_of."""
    closed = state.closed[state.closed["closed_at"] > state.as_of - lookback_days * DAY]
    reached = stage_reached.reindex(closed["id"]).fillna(0).to_numpy(dtype=int)
    won = closed["won"].to_numpy(dtype=bool)
    rows = []
    for k, stage in enumerate(OPEN_STAGES):
        at = reached >= k
        moved_on = (reached > k) | (won if k == len(OPEN_STAGES) - 1 else False)
        n = int(at.sum())
        rows.append(
            {
                "stage": stage,
                "reached": n,
                "conversion": float(moved_on[at].mean()) if n else np.nan,
                "win_from_stage": float(won[at].mean()) if n else np.nan,
            }
        )
    return pd.DataFrame(rows).set_index("stage")


def furthest_stage(stage_history: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Deal id -> index of the furthest open stage it had entered at or before as_of."""
    changed = pd.to_datetime(stage_history["changed_at"], utc=True)
    known = stage_history[(changed <= as_of) & stage_history["to_stage"].isin(OPEN_STAGES)]
    index = known["to_stage"].map({s: i for i, s in enumerate(OPEN_STAGES)})
    return index.groupby(known["opportunity_id"]).max()


def run_rate_quota(state: PipelineState, period_days: float, periods: int = 4) -> pd.Series:
    """Each rep's mean bookings per period over up to `periods` previous periods (point-in-time), with the mean
    rep run rate for reps that booked nothing yet; NaN for everyone when nothing was booked before as_of."""
    won = state.closed[state.closed["won"]]
    start = state.as_of - periods * period_days * DAY
    recent = won[won["closed_at"] > start]
    if recent.empty:
        return pd.Series(dtype=float, name="quota")
    first_seen = state.closed.groupby("assigned_to")["created_at"].min()
    active = ((state.as_of - first_seen.clip(lower=start)) / (period_days * DAY)).clip(lower=1.0)
    booked = recent.groupby("assigned_to")["value"].sum().reindex(active.index).fillna(0.0)
    return (booked / active).rename("quota")


def read_quota(quota: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    """Quotas for the period starting at as_of from a user table (user_id, period_start, quota)."""
    missing = [c for c in ("user_id", "period_start", "quota") if c not in quota.columns]
    if missing:
        raise DataContractError(f"quota table: missing column(s) {missing}; it needs user_id, period_start, quota")
    amounts = pd.to_numeric(quota["quota"], errors="coerce")
    bad = quota.index[amounts.isna() | (amounts < 0)]
    if len(bad):
        raise DataContractError(f"quota table, row {bad[0]}, field 'quota': not a non-negative number")
    starts = pd.to_datetime(quota["period_start"], utc=True, errors="coerce")
    if starts.isna().any():
        raise DataContractError(f"quota table, row {quota.index[starts.isna()][0]}, field 'period_start': not a date")
    rows = quota.assign(quota=amounts)[starts == as_of]
    return rows.groupby("user_id")["quota"].sum()


def pipeline_metrics(
    state: PipelineState,
    stage_reached: pd.Series,
    period_end: pd.Timestamp,
    quota: pd.Series,
    lookback_days: float = 365.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics per rep with an `organization` row, stage conversion table) for the period [as_of, period_end)."""
    conversion = stage_conversion(state, stage_reached, lookback_days)
    win_from = conversion["win_from_stage"].fillna(0.0).to_numpy()
    deals = state.open_deals
    in_period = (deals["close_date"] < period_end).to_numpy(dtype=bool)  # NaT compares False
    value = deals["value"].fillna(0.0).to_numpy()
    period_days = (period_end - state.as_of) / DAY
    age = ((state.as_of - deals["created_at"]) / DAY).to_numpy(dtype=float)
    recent = state.closed[state.closed["closed_at"] > state.as_of - lookback_days * DAY]
    won = recent[recent["won"]]
    cycle = ((won["closed_at"] - won["created_at"]) / DAY).to_numpy(dtype=float)
    stale_after = float(np.quantile(cycle, 0.9)) if len(cycle) else np.inf
    first = value - deals["amount_change"].to_numpy()
    frame = pd.DataFrame(
        {
            "assigned_to": deals["assigned_to"].to_numpy(),
            "value": value,
            "in_period": value * in_period,
            "weighted": value * in_period * win_from[deals["stage_index"].to_numpy(dtype=int)],
            "age": age,
            "stale": age > stale_after,
            "pushed": deals["pushes"].to_numpy() > 0,
            "pushes": deals["pushes"].to_numpy(),
            "change": deals["amount_change"].to_numpy(),
            "first": first,
        }
    )
    reps = sorted(set(frame["assigned_to"]) | set(quota.index) | set(recent["assigned_to"]))
    per_rep = frame.groupby("assigned_to").agg(
        open_deals=("value", "size"),
        open_amount=("value", "sum"),
        in_period=("in_period", "sum"),
        weighted=("weighted", "sum"),
        mean_age_days=("age", "mean"),
        stale_share=("stale", "mean"),
        pushed_share=("pushed", "mean"),
        pushes_per_deal=("pushes", "mean"),
        change=("change", "sum"),
        first=("first", "sum"),
    )
    per_rep = per_rep.reindex(reps)
    per_rep.loc["organization"] = _organization_row(frame)
    rep_quota = quota.reindex(reps)
    rep_quota = rep_quota.fillna(quota.mean() if len(quota) else np.nan)
    quota_all = pd.concat([rep_quota, pd.Series({"organization": rep_quota.sum()})])
    velocity = _velocity(recent, per_rep["open_deals"].fillna(0.0), period_days)
    born = pd.concat(
        [deals[["assigned_to", "created_at", "value"]], state.closed[["assigned_to", "created_at", "value"]]]
    )
    born = born[born["created_at"] > state.as_of - period_days * DAY]
    new_amount = born.groupby("assigned_to")["value"].sum().reindex(reps).fillna(0.0)
    new_amount["organization"] = born["value"].sum()
    win_rate = recent.groupby("assigned_to")["won"].mean().reindex(reps)
    win_rate["organization"] = recent["won"].mean() if len(recent) else np.nan
    has_dates = state.has_history
    out = pd.DataFrame(
        {
            "quota": quota_all,
            "open_deals": per_rep["open_deals"].fillna(0).astype(int),
            "coverage": per_rep["in_period"].fillna(0.0) / quota_all if has_dates else np.nan,
            "weighted_coverage": per_rep["weighted"].fillna(0.0) / quota_all if has_dates else np.nan,
            "open_coverage": per_rep["open_amount"].fillna(0.0) / quota_all,
            "velocity_per_period": velocity / quota_all,
            "new_pipeline_per_period": new_amount / quota_all,
            "win_rate": win_rate.fillna(win_rate["organization"]),
            "mean_age_days": per_rep["mean_age_days"],
            "stale_share": per_rep["stale_share"],
            "pushed_share": per_rep["pushed_share"] if has_dates else np.nan,
            "pushes_per_deal": per_rep["pushes_per_deal"] if has_dates else np.nan,
            "amount_change_share": (per_rep["change"] / per_rep["first"].where(per_rep["first"] > 0))
            if has_dates
            else np.nan,
        }
    )
    return out[list(METRIC_COLUMNS)], conversion


def _organization_row(frame: pd.DataFrame) -> dict[str, float]:
    return {
        "open_deals": len(frame),
        "open_amount": frame["value"].sum(),
        "in_period": frame["in_period"].sum(),
        "weighted": frame["weighted"].sum(),
        "mean_age_days": frame["age"].mean(),
        "stale_share": frame["stale"].mean(),
        "pushed_share": frame["pushed"].mean(),
        "pushes_per_deal": frame["pushes"].mean(),
        "change": frame["change"].sum(),
        "first": frame["first"].sum(),
    }


def _velocity(recent: pd.DataFrame, open_deals: pd.Series, period_days: float) -> pd.Series:
    """Sales velocity per period: open deals x win rate x mean won amount / mean won cycle (days) x period.

    Rates and sizes are each rep's own over the lookback (the organization's where a rep closed nothing)."""

    def rates(frame: pd.DataFrame) -> tuple[float, float, float]:
        won = frame[frame["won"]]
        if frame.empty or won.empty:
            return 0.0, 0.0, np.inf
        cycle = ((won["closed_at"] - won["created_at"]) / DAY).mean()
        return float(frame["won"].mean()), float(won["value"].mean()), max(float(cycle), 1.0)

    org = rates(recent)
    out = {}
    for rep, count in open_deals.items():
        own = recent[recent["assigned_to"] == rep] if rep != "organization" else recent
        win, size, cycle = rates(own) if len(own) else org
        out[rep] = count * win * size / cycle * period_days
    return pd.Series(out)
