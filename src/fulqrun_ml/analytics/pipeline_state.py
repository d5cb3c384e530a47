"""The pipeline as it stood at one instant: every deal's stage, amount and expected close date known at as_of.

Why a module of its own: every pipeline metric (coverage, velocity, conversion, aging, slippage) must read the
CRM as it was, not as it is. The `opportunities` row is overwritten in place (stage, amount, close date), so:

- stage at as_of comes from `stage_history` (the newest change at or before as_of);
- amount and expected close date come from `opportunity_history` (the newest version at or before as_of);
  without a version (an export with no such table) the amount falls back to the current row, flagged
  `value_point_in_time=False`, and the expected close date is unknown (NaT): the row's close date of a deal
  that has closed since is its *actual* close, which would leak the outcome;
- a deal exists from `created_at`; its won/lost close is the `changed_at` of its closing stage change.

Nothing here reads a timestamp after as_of; `tests/unit/test_analytics_pipeline.py` checks that by comparing
with a CRM truncated at as_of whose current rows are scrambled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import DataContractError

CLOSED_WON, CLOSED_LOST = "closed_won", "closed_lost"


@dataclass(frozen=True)
class PipelineState:
    """Open deals at `as_of` (one row each) plus the deals closed at or before it.

    `open_deals`: id, assigned_to, created_at, stage, stage_index, entered_stage_at, value, close_date (the
    expected date known at as_of, NaT when unknown), pushes (close-date pushes so far), amount_change (latest
    minus first known amount), value_point_in_time. `closed`: id, assigned_to, created_at, closed_at, won,
    value. `has_history`: whether the source kept amount/close-date versions at all."""

    as_of: pd.Timestamp
    open_deals: pd.DataFrame
    closed: pd.DataFrame
    has_history: bool


def _utc(frame: pd.DataFrame, column: str, table: str) -> pd.Series:
    if column not in frame.columns:
        raise DataContractError(f"{table}: the column '{column}' is missing (pipeline analytics reads it)")
    try:
        return pd.to_datetime(frame[column], utc=True)
    except (ValueError, TypeError) as err:
        raise DataContractError(f"{table}.{column}: unreadable timestamp ({err})") from err


def stage_at(stage_history: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Each deal's newest stage change at or before as_of: opportunity_id -> to_stage, changed_at."""
    changed = _utc(stage_history, "changed_at", "stage_history")
    known = stage_history.assign(changed_at=changed)[changed <= as_of]
    last = known.sort_values("changed_at", kind="stable").drop_duplicates("opportunity_id", keep="last")
    return last.set_index("opportunity_id")[["to_stage", "changed_at"]]


def versions_at(history: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Per deal, from `opportunity_history` at as_of: the newest amount and close date, the first amount, and
    how many times the expected close date moved later (a push)."""
    columns = ["value", "close_date", "first_value", "pushes"]
    if history.empty:
        empty = {c: pd.Series(dtype=float) for c in columns} | {"close_date": pd.Series(dtype="datetime64[us, UTC]")}
        return pd.DataFrame(empty, index=pd.Index([], name="opportunity_id"))
    valid_from = _utc(history, "valid_from", "opportunity_history")
    known = history.assign(valid_from=valid_from)[valid_from <= as_of]
    known = known.sort_values(["opportunity_id", "valid_from"], kind="stable")
    close = pd.to_datetime(known["close_date"], utc=True)
    previous = close.groupby(known["opportunity_id"]).shift()
    pushed = (close > previous).astype(int)
    grouped = known.assign(close_date=close, pushed=pushed).groupby("opportunity_id", sort=False)
    return pd.DataFrame(
        {
            "value": grouped["value"].last(),
            "close_date": grouped["close_date"].last(),
            "first_value": grouped["value"].first(),
            "pushes": grouped["pushed"].sum(),
        }
    )


def pipeline_state(tables: CRMTables, as_of: pd.Timestamp | str) -> PipelineState:
    """The pipeline at as_of (see the module docstring)."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    opps = tables.opportunities
    created = _utc(opps, "created_at", "opportunities")
    deals = opps.assign(created_at=created)[created <= as_of].drop_duplicates("id")
    stages = stage_at(tables.stage_history, as_of).reindex(deals["id"])
    history = tables.history("opportunity_history")
    versions = versions_at(history, as_of).reindex(deals["id"])
    has_version = versions["value"].notna().to_numpy()
    row_value = pd.to_numeric(deals["value"], errors="coerce").to_numpy(dtype=float)
    value = np.where(has_version, versions["value"].to_numpy(dtype=float), row_value)
    stage = stages["to_stage"].to_numpy(dtype=object)
    frame = pd.DataFrame(
        {
            "id": deals["id"].to_numpy(),
            "assigned_to": deals["assigned_to"].to_numpy(),
            "created_at": deals["created_at"].array,
            "stage": stage,
            "stage_changed_at": pd.to_datetime(stages["changed_at"], utc=True).array,
            "value": value,
            "close_date": pd.to_datetime(versions["close_date"], utc=True).array,
            "pushes": versions["pushes"].fillna(0).to_numpy(dtype=int),
            "amount_change": np.where(has_version, value - versions["first_value"].to_numpy(dtype=float), 0.0),
            "value_point_in_time": has_version,
        }
    )
    is_open = np.isin(stage, OPEN_STAGES)
    open_deals = frame[is_open].drop(columns="stage_changed_at").reset_index(drop=True)
    open_deals.insert(4, "stage_index", [OPEN_STAGES.index(s) for s in open_deals["stage"]])
    open_deals.insert(5, "entered_stage_at", frame.loc[is_open, "stage_changed_at"].to_numpy())
    is_closed = np.isin(stage, (CLOSED_WON, CLOSED_LOST))
    closed = frame[is_closed].rename(columns={"stage_changed_at": "closed_at"})
    closed = closed.assign(won=closed["stage"] == CLOSED_WON)[
        ["id", "assigned_to", "created_at", "closed_at", "won", "value"]
    ].reset_index(drop=True)
    return PipelineState(as_of, open_deals, closed, has_history=not history.empty)
