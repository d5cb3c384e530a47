"""The CRM mirror applies change events as keyed upserts/deletes and ends equal to a fresh validated load.

The reference is built independently: the same changes made to the raw tables with pandas, then the contract's
own validation (what every source runs). Events carry JSON-shaped rows (ISO strings, plain numbers), as the
outbox trigger writes them.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.schemas import CRM_SCHEMAS
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.online.cdc import ChangeEvent
from fulqrun_ml.online.mirror import CRMMirror

NOW = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture(scope="module")
def crm() -> CRMTables:
    return validate_crm(simulate_crm(n_opportunities=40, n_companies=10, n_reps=4, seed=3).tables).tables


def as_json(row: pd.Series | dict[str, Any]) -> dict[str, Any]:
    """A typed row as the trigger's jsonb_build_object gives it: ISO timestamps, plain numbers, nulls."""
    out = {}
    for column, value in dict(row).items():
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out[column] = None
        elif isinstance(value, pd.Timestamp):
            out[column] = value.isoformat()
        elif isinstance(value, np.generic):
            out[column] = value.item()
        else:
            out[column] = value
    return out


def event(seq: int, table: str, op: str, row: dict[str, Any], old_key: dict[str, Any] | None = None) -> ChangeEvent:
    return ChangeEvent(seq, table, op, row, NOW, old_key)  # type: ignore[arg-type]


def by_key(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    return frame.sort_values(list(CRM_SCHEMAS[table].key), kind="stable").reset_index(drop=True)


def changes(crm: CRMTables) -> tuple[list[ChangeEvent], CRMTables]:
    """A mixed batch of events and, independently, the raw tables with the same changes made by pandas."""
    opp = crm.opportunities.iloc[0]
    new_activity = as_json(crm.activities.iloc[0]) | {
        "id": str(uuid.uuid4()),
        "related_id": opp["id"],
        "related_type": "opportunity",
        "type": "meeting",
        "created_at": "2025-06-01T10:00:00.123456+00:00",
    }
    updated_opp = as_json(opp) | {"value": 123456.78, "stage": "negotiation"}
    gone = crm.activities.iloc[5]
    moved = crm.stage_history.iloc[2]
    moved_row = as_json(moved) | {"changed_at": "2025-07-01T00:00:00+00:00"}
    old_key = {k: as_json(moved)[k] for k in CRM_SCHEMAS["stage_history"].key}
    events = [
        event(1, "activities", "INSERT", new_activity),
        event(2, "opportunities", "UPDATE", as_json(opp) | {"value": 1.0}, {"id": opp["id"]}),
        event(3, "opportunities", "UPDATE", updated_opp, {"id": opp["id"]}),  # the last state of a key wins
        event(4, "activities", "DELETE", as_json(gone), {"id": gone["id"]}),
        event(5, "stage_history", "UPDATE", moved_row, old_key),  # a key change: old key goes, new comes
    ]
    acts = pd.concat([crm.activities[crm.activities["id"] != gone["id"]], pd.DataFrame([new_activity])])
    opps = crm.opportunities.copy()
    opps.loc[opps["id"] == opp["id"], ["value", "stage"]] = [123456.78, "negotiation"]
    history = crm.stage_history.copy().astype({"changed_at": object})
    history.iloc[2, history.columns.get_loc("changed_at")] = pd.Timestamp("2025-07-01", tz="UTC")
    expected = dataclasses.replace(crm, activities=acts, opportunities=opps, stage_history=history)
    return events, validate_crm(expected).tables


def test_mirror_equals_validated_reference(crm):
    events, expected = changes(crm)
    mirror = CRMMirror(crm)
    batch = mirror.apply(events)
    assert batch.dead_letters == []
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(
            by_key(mirror.tables.table(name), name), by_key(expected.table(name), name), check_like=False
        )
    opp_change = next(c for c in batch.changes if c.table == "opportunities")
    assert opp_change.seqs == (2, 3)
    assert opp_change.before["value"] != 123456.78 and opp_change.after["value"] == 123456.78
    stage_changes = [c for c in batch.changes if c.table == "stage_history"]
    assert sorted((c.before is None, c.after is None) for c in stage_changes) == [(False, True), (True, False)]


def test_replay_is_idempotent(crm):
    events, expected = changes(crm)
    mirror = CRMMirror(crm)
    mirror.apply(events)
    mirror.apply(events)  # a crash before the outbox delete replays the batch
    mirror.apply(events[::-1][:2])
    for name in ("activities", "opportunities", "stage_history"):
        pd.testing.assert_frame_equal(by_key(mirror.tables.table(name), name), by_key(expected.table(name), name))


def test_bad_events_are_dead_lettered_naming_the_field(crm):
    events, _ = changes(crm)
    opp = as_json(crm.opportunities.iloc[1])
    no_id = {k: v for k, v in as_json(crm.activities.iloc[1]).items() if k != "id"}
    bad_money = as_json(crm.opportunities.iloc[2]) | {"value": "lots"}
    bad = [
        event(10, "opportunities", "UPDATE", opp | {"stage": "closed_maybe"}, {"id": opp["id"]}),
        event(11, "activities", "INSERT", no_id),
        event(12, "opportunities", "UPDATE", bad_money, {"id": bad_money["id"]}),
    ]
    mirror = CRMMirror(crm)
    batch = mirror.apply([*events, *bad])
    errors = {d.seq: d.error for d in batch.dead_letters}
    assert set(errors) == {10, 11, 12}
    assert "'stage'" in errors[10] and "closed_maybe" in errors[10]
    assert "'id'" in errors[11]
    assert "'value'" in errors[12]
    # the good events of the same batch were applied; a refused row is absent, as a quarantining load leaves it
    assert (mirror.tables.opportunities["value"] == 123456.78).sum() == 1
    assert opp["id"] not in set(mirror.tables.opportunities["id"])
    assert len(mirror.tables.activities) == len(crm.activities)  # one inserted, one deleted, one refused


def test_reflected_events_are_reported_not_applied(crm):
    events, _ = changes(crm)
    mirror = CRMMirror(crm)
    batch = mirror.apply(events, reflected={1, 2, 3, 4, 5})
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(by_key(mirror.tables.table(name), name), by_key(crm.table(name), name))
    assert sorted(s for c in batch.changes for s in c.seqs) == [1, 2, 3, 4, 5]
