"""Point-in-time examples for the tasks beyond deal win (CRM_DATA.md, "Tasks on this data").

Every builder follows the same rule as `snapshots.deal_win_snapshots`: an entity is included at `as_of`
only if it is open then, and its label comes strictly from what happened after `as_of` (within a horizon
that has been fully observed before extraction). `label_time` says when the label became known, so
`snapshots.TimeSplit` can embargo it.

- close timing: deal snapshots + days until close (regression / discrete-time survival target)
- lead conversion: open leads, converted within the horizon
- account churn / expansion: companies with a past win, another win within the horizon (or not)
- revenue series: booked revenue per organization / region / rep per week or month
- activity sequences: the last events of each entity before as_of (type, channel, direction, time), for
  sequence models
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import ACTIVITY_DIRECTIONS, ACTIVITY_TYPES, UNKNOWN_DIRECTION

# How each activity type reaches the customer; a sequence model embeds both.
CHANNEL_OF = {"call": "phone", "email": "email", "meeting": "in_person", "task": "internal", "note": "internal"}
CHANNELS = ("phone", "email", "in_person", "internal")
DECIDED_LEAD_STATUSES = ("converted", "unqualified")


def close_timing_targets(deal_snapshots: pd.DataFrame) -> pd.DataFrame:
    """Adds `days_to_close` (label_time - as_of, in days) to deal snapshots: the close-timing target."""
    days = (deal_snapshots["label_time"] - deal_snapshots["as_of"]).dt.total_seconds() / 86400.0
    return deal_snapshots.assign(days_to_close=days.to_numpy())


def lead_conversion_snapshots(tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """Leads undecided at as_of; label 1 if converted within the horizon, 0 if disqualified or still open.

    A lead's decision time is its `updated_at` once its status is converted/unqualified (the CRM keeps no
    status history, so that is the only trustworthy moment). Rows whose horizon runs past extraction
    are left out: their label is not known yet."""
    leads = tables.leads
    decided = leads["status"].isin(DECIDED_LEAD_STATUSES)
    decided_at = leads["updated_at"].where(decided)
    rows = []
    for as_of in as_of_dates:
        horizon_end = as_of + pd.Timedelta(days=horizon_days)
        if horizon_end > tables.extracted_at:
            continue
        open_now = (leads["created_at"] <= as_of) & ~(decided_at <= as_of)
        subset = leads[open_now]
        converted = (subset["status"] == "converted") & (decided_at[open_now] <= horizon_end)
        label_time = decided_at[open_now].where(decided_at[open_now] <= horizon_end, horizon_end)
        rows.append(
            pd.DataFrame(
                {
                    "lead_id": subset["id"].to_numpy(),
                    "as_of": as_of,
                    "label": converted.to_numpy(dtype=np.float32),
                    "label_time": label_time.to_numpy(),
                }
            )
        )
    return (
        pd.concat(rows, ignore_index=True)
        if rows
        else pd.DataFrame(columns=["lead_id", "as_of", "label", "label_time"])
    )


def account_snapshots(tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """Companies that are customers at as_of (a won deal closed by then).

    `expansion` = 1 if another deal with them closes won within the horizon, else 0 (`churn` = 1 - expansion).
    """
    wins = tables.stage_history[tables.stage_history["to_stage"] == "closed_won"]
    wins = wins.assign(
        company_id=tables.opportunities.set_index("id")["company_id"].reindex(wins["opportunity_id"]).to_numpy()
    )
    rows = []
    for as_of in as_of_dates:
        horizon_end = as_of + pd.Timedelta(days=horizon_days)
        if horizon_end > tables.extracted_at:
            continue
        customers = wins.loc[wins["changed_at"] <= as_of, "company_id"].unique()
        later = wins[(wins["changed_at"] > as_of) & (wins["changed_at"] <= horizon_end)]
        first_later_win = later.groupby("company_id")["changed_at"].min()
        next_win = first_later_win.reindex(customers)
        rows.append(
            pd.DataFrame(
                {
                    "company_id": customers,
                    "as_of": as_of,
                    "expansion": next_win.notna().to_numpy(dtype=np.float32),
                    "label_time": next_win.fillna(horizon_end).to_numpy(),
                }
            )
        )
    frame = pd.concat(rows, ignore_index=True)
    return frame.assign(churn=1.0 - frame["expansion"])


def revenue_series(
    tables: CRMTables,
    freq: Literal["W", "M"] = "W",
    by: Literal["organization", "region", "rep"] = "organization",
) -> pd.DataFrame:
    """Booked revenue (closed-won value by close time) per group per period, zeros included.

    Periods are complete calendar weeks (Monday start) or months that end before extraction, so the last
    period is never a partial one that would look like a drop."""
    wins = tables.stage_history[tables.stage_history["to_stage"] == "closed_won"]
    opps = tables.opportunities.set_index("id").reindex(wins["opportunity_id"])
    group = {
        "organization": opps["organization_id"],
        "rep": opps["assigned_to"],
        "region": tables.users.set_index("id")["region"].reindex(opps["assigned_to"]),
    }[by].to_numpy()
    pandas_freq = "W-SUN" if freq == "W" else "M"
    period = wins["changed_at"].dt.tz_localize(None).dt.to_period(pandas_freq)
    bookings = pd.DataFrame({"group": group, "period": period.to_numpy(), "revenue": opps["value"].to_numpy()})
    totals = bookings.groupby(["group", "period"])["revenue"].sum()
    first = tables.opportunities["created_at"].min().tz_localize(None).to_period(pandas_freq)
    last_complete = (tables.extracted_at.tz_localize(None).to_period(pandas_freq)) - 1
    periods = pd.period_range(first, last_complete, freq=pandas_freq)
    groups = sorted(pd.unique(group[pd.notna(group)]))
    grid = pd.MultiIndex.from_product([groups, periods], names=["group", "period"])
    series = totals.reindex(grid, fill_value=0.0).reset_index()
    series["period_start"] = series["period"].dt.start_time.dt.tz_localize("UTC")
    series["period_end"] = series["period"].dt.end_time.dt.tz_localize("UTC")
    return series.drop(columns="period").assign(level=by, freq=freq)


def activity_sequences(
    tables: CRMTables,
    index: pd.DataFrame,
    entity_column: str = "opportunity_id",
    max_len: int = 32,
) -> dict[str, np.ndarray]:
    """The last `max_len` touches of each (entity, as_of) row at or before as_of, left-padded.

    Returns arrays [N, max_len]: `event_type`, `channel` and `direction` (int, 0 = padding, 1.. =
    ACTIVITY_TYPES / CHANNELS / ACTIVITY_DIRECTIONS, i.e. 1 inbound, 2 outbound, 3 unknown), `delta_days`
    (days since the previous event; 0 for the first), `age_days` (days before as_of), and `length` [N].
    The events of a row never include anything after its as_of. Activities without a `direction` column
    (unvalidated tables) count as direction "unknown", as validation would fill them."""
    acts = tables.activities
    direction = acts["direction"] if "direction" in acts.columns else pd.Series(UNKNOWN_DIRECTION, index=acts.index)
    type_index = {t: i + 1 for i, t in enumerate(ACTIVITY_TYPES)}
    channel_index = {c: i + 1 for i, c in enumerate(CHANNELS)}
    direction_index = {d: i + 1 for i, d in enumerate(ACTIVITY_DIRECTIONS)}
    stream = pd.DataFrame(
        {
            "entity": acts["related_id"],
            "type": acts["type"].map(type_index).fillna(0).astype(np.int64),
            "channel": acts["type"].map(lambda t: channel_index[CHANNEL_OF.get(t, "internal")]).astype(np.int64),
            "direction": direction.fillna(UNKNOWN_DIRECTION)
            .map(direction_index)
            .fillna(direction_index[UNKNOWN_DIRECTION])
            .astype(np.int64),
            "time": acts["created_at"],
        }
    ).sort_values("time", kind="stable")
    return padded_sequences(stream, index[entity_column], index["as_of"], max_len)


def padded_sequences(
    stream: pd.DataFrame, entities: pd.Series, as_ofs: pd.Series, max_len: int
) -> dict[str, np.ndarray]:
    """The sequence arrays of `activity_sequences` from any coded event stream (columns `entity`, integer `type`,
    `channel`, `direction`, and `time`, sorted by time): for each (entity, as_of) the last `max_len` events at or
    before as_of, left-padded. One packing loop serves every sequence task (deal touches, lead behaviour), so their
    arrays mean the same thing to the shared encoder."""
    by_entity = {k: g for k, g in stream.groupby("entity", sort=False)}
    n = len(entities)
    out = {name: np.zeros((n, max_len), dtype=np.int64) for name in ("event_type", "channel", "direction")}
    out |= {name: np.zeros((n, max_len), dtype=np.float32) for name in ("delta_days", "age_days")}
    out["length"] = np.zeros(n, dtype=np.int64)
    for row, (entity, as_of) in enumerate(zip(entities, as_ofs, strict=True)):
        events = by_entity.get(entity)
        if events is None:
            continue
        events = events[events["time"] <= as_of].tail(max_len)
        k = len(events)
        if k == 0:
            continue
        times = events["time"]
        seconds = (times - times.iloc[0]).dt.total_seconds().to_numpy()
        out["event_type"][row, -k:] = events["type"].to_numpy()
        out["channel"][row, -k:] = events["channel"].to_numpy()
        out["direction"][row, -k:] = events["direction"].to_numpy()
        out["delta_days"][row, -k:] = np.diff(seconds, prepend=seconds[0]) / 86400.0
        out["age_days"][row, -k:] = (as_of - times).dt.total_seconds().to_numpy() / 86400.0
        out["length"][row] = k
    return out
