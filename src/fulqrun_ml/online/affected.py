"""Which entities a batch of row changes touches, per feature view: the ones whose features may have changed.

The rules follow what the feature builders read (`compute_deal_features`, `compute_lead_features`):
- a deal: its opportunity row, its stage history, activities whose `related_id` is the deal;
- a rep's record (win rate, closed deals) changes when one of the rep's deals closes (a stage-history row to or
  from a closed stage) or a deal changes owner, so every OPEN deal of that rep is recomputed;
- a company's or user's row change (firmographics, region) touches the open deals of that company or rep;
- a lead: its row and its activities; a lead decided or re-assigned changes its owner's conversion record, so
  every open lead of that owner is recomputed; company/user changes touch that company's or owner's open leads.
- the optional event tables, only for views that read them (a source group of the view): a MEDDPICC write
  touches its deal; a note touches the deal or lead it is on (its `related_type` must be the view's entity).
Closed deals and decided leads are recomputed only when touched directly: their stored rows stay correct at
their own as_of, which is what the skew check compares.

Changes carry `before` and `after` rows, so a deal that moves from rep A to rep B refreshes both reps' deals.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.online.mirror import RowChange
from fulqrun_ml.online.views import FeatureView

CLOSED_STAGES = ("closed_won", "closed_lost")
DECIDED_LEAD_STATUSES = ("converted", "unqualified")
ENTITY_TABLE = {"opportunity": "opportunities", "lead": "leads"}


def _ids(rows: Iterable[dict[str, Any] | None], column: str) -> set[str]:
    found = set()
    for row in rows:
        if row is not None and row.get(column) is not None and not (isinstance(row[column], float)):
            found.add(str(row[column]).lower())
    return found


def affected_ids(view: FeatureView, changes: Sequence[RowChange], tables: CRMTables, as_of: pd.Timestamp) -> list[str]:
    """The ids of `view`'s entity to recompute after `changes` were applied to `tables`, sorted; only ids that
    still exist (a deleted deal has nothing left to compute)."""
    if view.entity not in ENTITY_TABLE:
        return []
    entity_table = tables.table(ENTITY_TABLE[view.entity])
    direct: set[str] = set()
    owners: set[str] = set()
    companies: set[str] = set()
    own_table = ENTITY_TABLE[view.entity]
    reads = {source for _, source in view.sources}
    for change in changes:
        rows = (change.before, change.after)
        if change.table == own_table:
            direct |= _ids(rows, "id")
            # a new, removed or re-assigned deal/lead moves its record between owners; so does deciding a lead
            moved = None in rows or _ids([rows[0]], "assigned_to") != _ids([rows[1]], "assigned_to")
            decided = view.entity == "lead" and any(
                r is not None and r.get("status") in DECIDED_LEAD_STATUSES for r in rows
            )
            if moved or decided:
                owners |= _ids(rows, "assigned_to")
        elif change.table == "activities":
            direct |= _ids(rows, "related_id")
        elif change.table == "stage_history" and view.entity == "opportunity":
            deals = _ids(rows, "opportunity_id")
            direct |= deals
            if any(r is not None and r.get("to_stage") in CLOSED_STAGES for r in rows):
                owners |= _owners_of(tables, deals)
        elif change.table == "meddpicc_events" and "meddpicc_events" in reads and view.entity == "opportunity":
            direct |= _ids(rows, "opportunity_id")
        elif change.table == "notes" and "notes" in reads:
            direct |= _ids([r for r in rows if r is not None and r.get("related_type") == view.entity], "related_id")
        elif change.table == "users":
            owners |= _ids(rows, "id")
        elif change.table == "companies":
            companies |= _ids(rows, "id")
    if owners or companies:
        open_ids = view.open_entities(tables, as_of) if view.open_entities is not None else entity_table["id"]
        candidates = entity_table[entity_table["id"].isin(pd.Index(np.asarray(open_ids, dtype=object)))]
        wide = candidates["assigned_to"].isin(owners) | candidates["company_id"].isin(companies)
        direct |= set(candidates.loc[wide, "id"])
    existing = entity_table["id"]
    return sorted(existing[existing.isin(direct)])


def _owners_of(tables: CRMTables, deals: set[str]) -> set[str]:
    opps = tables.opportunities
    return set(opps.loc[opps["id"].isin(deals), "assigned_to"].dropna())
