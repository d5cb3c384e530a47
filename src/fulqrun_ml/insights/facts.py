"""The facts a narrative may state about a deal at as_of: point-in-time, scrubbed, numbers from columns.

Facts are the only input of both writers (the offline templates and the LLM prompt) and the reference of
the grounding check, so "what the narrative says" can always be traced to a row. Free text (notes) is
scrubbed with the CRM's known names before it becomes a fact: the prompt builder never sees raw text.
The deal's profile comes from search/deal_profiles.py (the same point-in-time definition the similar-deal
search embeds), so the two features cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.search.deal_profiles import ACTIVITY_TYPES, OPEN_STAGES, RECENT_DAYS, profiles, stage_at
from fulqrun_ml.search.similar import SimilarDealsAnswer


class DealFactsError(FulqrunMLError):
    """The deal cannot be described at as_of (unknown id, not open then)."""


@dataclass(frozen=True)
class DealFacts:
    """`facts`: a flat-ish dict of numbers and short strings; `notes`: scrubbed note text (may be empty)."""

    opportunity_id: str
    facts: dict[str, object]
    notes: str


def deal_facts(
    tables: CRMTables,
    opportunity_id: str,
    as_of: pd.Timestamp,
    scrubber: PIIScrubber,
    similar: SimilarDealsAnswer | None = None,
) -> DealFacts:
    """What is known about the deal at `as_of`, plus (optionally) what similar won deals did next."""
    stage = stage_at(tables, opportunity_id, as_of)
    if stage not in OPEN_STAGES:
        state = "unknown or not created yet" if stage is None else f"already {stage}"
        raise DealFactsError(f"opportunity '{opportunity_id}' is {state} at {as_of.date()}")
    row = profiles(tables, pd.DataFrame({"opportunity_id": [opportunity_id], "stage": [stage], "as_of": [as_of]}))
    row = row.iloc[0]
    history = tables.stage_history
    entered = history[
        (history["opportunity_id"] == opportunity_id)
        & (history["to_stage"] == stage)
        & (history["changed_at"] <= as_of)
    ]["changed_at"].max()
    acts = tables.activities
    past = acts[(acts["related_id"] == opportunity_id) & (acts["created_at"] <= as_of)]
    facts: dict[str, object] = {
        "as_of": as_of.date().isoformat(),
        "stage": stage,
        "industry": str(row["industry"]),
        "segment": str(row["size"]),
        "deal_age_days": int(row["age_days"]),
        "days_in_stage": round((as_of - entered).total_seconds() / 86400),
        "window_days": RECENT_DAYS,
        "activities_last_window": {t: int(row[f"recent_{t}s"]) for t in ACTIVITY_TYPES},
        "activities_total": int(row["activities_total"]),
        "days_since_last_activity": (
            None if past.empty else round((as_of - past["created_at"].max()).total_seconds() / 86400)
        ),
    }
    if similar is not None and similar.similar:
        next_days = [s.days_to_next_stage for s in similar.similar if s.days_to_next_stage is not None]
        facts["similar_won_deals"] = {
            "count": len(similar.similar),
            "mean_next_window_activities": {
                t: v["similar_deals_next_30d"] for t, v in similar.what_won_deals_did.items()
            },
            "median_days_to_next_stage": float(pd.Series(next_days).median()) if next_days else None,
        }
    return DealFacts(opportunity_id, facts, scrubber.scrub(str(row["notes"])) if row["notes"] else "")
