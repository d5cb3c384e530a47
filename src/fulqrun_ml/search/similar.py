""" "Won deals most like this one, and what they did next", with reasons.

Every deal is indexed once per open stage it entered (its profile at that moment, see deal_profiles.py).
A question about deal D at `as_of` embeds D's profile at as_of and searches among the snapshots of *other*
deals at D's current stage that had closed by as_of (so their outcome was known then: no leakage), within
D's organization, optionally D's segment, with the outcome asked for (won by default).

For each similar deal the answer says why it is similar (shared industry, segment, country, age and recent
activity mix, and the cosine similarity of the profiles) and what its team did next: the activities logged
in the NEXT_DAYS after that snapshot and the next stage it reached. `what_won_deals_did` averages those
next steps over the similar deals beside D's own last 30 days, so the suggestion is a measured difference,
not an opinion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.search.deal_profiles import (
    ACTIVITY_TYPES,
    OPEN_STAGES,
    RECENT_DAYS,
    outcomes,
    profiles,
    stage_at,
    stage_entries,
)
from fulqrun_ml.search.index import IndexConfig, VectorIndex
from fulqrun_ml.text.encoder import TextEncoder

NEXT_DAYS = 30
OUTCOMES = ("won", "lost", "open")


class SimilarDealsError(FulqrunMLError):
    """The question cannot be answered as asked (unknown deal, deal not open at as_of, bad outcome)."""


@dataclass(frozen=True)
class SimilarDeal:
    """One similar deal at the same stage: who, how similar, why, and what happened next."""

    opportunity_id: str
    similarity: float
    outcome: str
    stage: str
    as_of: str
    reasons: list[str]
    next_activities: dict[str, int]
    next_stage: str | None
    days_to_next_stage: int | None


@dataclass(frozen=True)
class SimilarDealsAnswer:
    """The question (deal, as_of, stage, filters) and the similar deals, best first."""

    opportunity_id: str
    as_of: str
    stage: str
    filters: dict[str, object]
    similar: list[SimilarDeal]
    recent_activities: dict[str, int]
    what_won_deals_did: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class SimilarDealSearch:
    """Builds the profile index of a CRM once; `similar` answers questions about any deal at any as_of."""

    def __init__(self, tables: CRMTables, encoder: TextEncoder, index_config: IndexConfig | None = None) -> None:
        self.tables = tables
        self.encoder = encoder
        snapshots = profiles(tables, stage_entries(tables))
        self.profiles = snapshots.merge(outcomes(tables), on="opportunity_id", how="left").reset_index(drop=True)
        vectors = encoder.encode(self.profiles["text"].tolist(), field="profile")
        metadata = self.profiles[["organization_id", "size", "outcome", "stage"]].rename(columns={"size": "segment"})
        self.index = VectorIndex(vectors, metadata, index_config)
        self._closed_at = pd.to_datetime(self.profiles["closed_at"], utc=True)
        self._next = _next_steps(tables, self.profiles)

    def similar(
        self,
        opportunity_id: str,
        as_of: pd.Timestamp | str | None = None,
        k: int = 5,
        outcome: str = "won",
        same_segment: bool = False,
    ) -> SimilarDealsAnswer:
        """The k deals most like `opportunity_id` at `as_of` (default: the extraction time)."""
        if outcome not in OUTCOMES:
            raise SimilarDealsError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        if k < 1:
            raise SimilarDealsError(f"k must be at least 1, got {k}")
        as_of = pd.Timestamp(as_of if as_of is not None else self.tables.extracted_at)
        as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
        opps = self.tables.opportunities
        if not opps["id"].eq(opportunity_id).any():
            raise SimilarDealsError(f"opportunity_id '{opportunity_id}' is not in the CRM")
        stage = stage_at(self.tables, opportunity_id, as_of)
        if stage not in OPEN_STAGES:
            state = "not created yet" if stage is None else f"already {stage}"
            raise SimilarDealsError(
                f"opportunity '{opportunity_id}' is {state} at {as_of.date()}: pass an as_of when open"
            )
        query = profiles(
            self.tables, pd.DataFrame({"opportunity_id": [opportunity_id], "stage": [stage], "as_of": [as_of]})
        )
        row = query.iloc[0]
        filters: dict[str, object] = {"organization_id": row["organization_id"], "outcome": outcome, "stage": stage}
        if same_segment:
            filters["segment"] = row["size"]
        known_then = (self._closed_at <= as_of).to_numpy() & self.profiles["opportunity_id"].ne(
            opportunity_id
        ).to_numpy()
        if outcome == "open":  # "open" deals: those still open at as_of, seen at a snapshot before as_of
            known_then = (
                (self._closed_at.isna() | (self._closed_at > as_of)).to_numpy()
                & (self.profiles["as_of"] <= as_of).to_numpy()
                & self.profiles["opportunity_id"].ne(opportunity_id).to_numpy()
            )
        vector = self.encoder.encode([row["text"]], field="profile")
        scores, rows = self.index.search(vector, k, filters=filters, allowed=known_then)
        similar = [self._describe(int(r), float(s), row) for s, r in zip(scores[0], rows[0], strict=True) if r >= 0]
        recent = {t: int(row[f"recent_{t}s"]) for t in ACTIVITY_TYPES}
        return SimilarDealsAnswer(
            opportunity_id=opportunity_id,
            as_of=as_of.isoformat(),
            stage=stage,
            filters={key: str(value) for key, value in filters.items()},
            similar=similar,
            recent_activities=recent,
            what_won_deals_did=_what_they_did(similar, recent),
        )

    def _describe(self, position: int, score: float, query: pd.Series) -> SimilarDeal:
        other = self.profiles.iloc[position]
        score = round(score, 4)
        reasons = [f"profile similarity {score:.2f} (cosine of the embedded profiles)"]
        for column, label in (("industry", "industry"), ("size", "segment"), ("country", "country")):
            if other[column] == query[column]:
                reasons.append(f"same {label} ({other[column]})")
        reasons.append(f"reached {other['stage']} after {other['age_days']} days (this deal: {query['age_days']})")
        mix = ", ".join(
            f"{other[f'recent_{t}s']} vs {query[f'recent_{t}s']} {t}s" for t in ("meeting", "call", "email")
        )
        reasons.append(f"last {RECENT_DAYS} days before that stage: {mix} (theirs vs this deal's)")
        if query["notes"] and other["notes"]:
            reasons.append("both have notes; the note text is part of the embedded profile")
        activities, next_stage, days = self._next[position]
        return SimilarDeal(
            opportunity_id=str(other["opportunity_id"]),
            similarity=score,
            outcome=str(other["outcome"]),
            stage=str(other["stage"]),
            as_of=pd.Timestamp(other["as_of"]).isoformat(),
            reasons=reasons,
            next_activities=activities,
            next_stage=next_stage,
            days_to_next_stage=days,
        )


def _next_steps(tables: CRMTables, frame: pd.DataFrame) -> list[tuple[dict[str, int], str | None, int | None]]:
    """Per snapshot: activities by type in the NEXT_DAYS after as_of, the next stage and days to reach it."""
    acts = tables.activities
    acts = acts[acts["related_type"].eq("opportunity")][["related_id", "type", "created_at"]]
    left = frame[["opportunity_id", "as_of"]].reset_index(names="row")
    joined = left.merge(acts, left_on="opportunity_id", right_on="related_id")
    window = joined[
        (joined["created_at"] > joined["as_of"])
        & (joined["created_at"] <= joined["as_of"] + pd.Timedelta(days=NEXT_DAYS))
    ]
    counts = pd.crosstab(window["row"], window["type"]).reindex(index=frame.index, columns=list(ACTIVITY_TYPES))
    counts = counts.fillna(0).astype(int)
    history = tables.stage_history[["opportunity_id", "to_stage", "changed_at"]]
    later = left.merge(history, on="opportunity_id")
    later = later[later["changed_at"] > later["as_of"]].sort_values("changed_at").drop_duplicates("row")
    later = later.set_index("row").reindex(frame.index)
    out = []
    for position in frame.index:
        nxt = later.loc[position]
        has_next = isinstance(nxt["to_stage"], str)
        days = round((nxt["changed_at"] - nxt["as_of"]).total_seconds() / 86400) if has_next else None
        out.append(
            ({t: int(counts.loc[position, t]) for t in ACTIVITY_TYPES}, nxt["to_stage"] if has_next else None, days)
        )
    return out


def _what_they_did(similar: list[SimilarDeal], recent: dict[str, int]) -> dict[str, dict[str, float]]:
    """Per activity type: the similar deals' mean count in the NEXT_DAYS after the snapshot, beside this deal's
    count in its last RECENT_DAYS (the same window length), and the difference."""
    if not similar:
        return {}
    out = {}
    for activity in ACTIVITY_TYPES:
        mean = float(np.mean([s.next_activities[activity] for s in similar]))
        out[activity] = {
            "similar_deals_next_30d": round(mean, 2),
            "this_deal_last_30d": float(recent[activity]),
            "difference": round(mean - recent[activity], 2),
        }
    return out
