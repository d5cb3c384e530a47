"""Note features: counts and keyword tone of the free-text notes on a deal or a lead, read point-in-time.

Why keywords here and embeddings elsewhere: `features/` sits beside `text/` in the import layers, so the
sentence encoder cannot be called from here; the embedding features are built one layer up (the MEDDPICC
benchmark, `benchmarks/meddpicc_text.py`). These cues are the cheap, explainable part that serving computes
without a model: the share of notes with buying signals (an approval, a contract, a start date) and with
stall signals (a freeze, silence, a price objection), and for leads the intent cues the issue names (urgency,
the buying committee, pricing questions) against disinterest.

The lexicon is generic sales language, but it was written knowing the simulator's phrasing, so on simulated
data it is an upper bound of what a keyword list achieves; the embedding arm has no such help.
Bodies are matched in lower case and never stored: only counts leave this module (notes name people).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.features.deal_features import newest
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature

RECENT = pd.Timedelta(days=30)
CUES: dict[str, re.Pattern[str]] = {
    "positive": re.compile(
        r"approved|excited|ready to (?:sign|move)|move forward|contract|onboarding|strong fit|exec sponsor"
        r"|fast decision"
    ),
    "negative": re.compile(
        r"frozen|went quiet|no reply|lost (?:its|the) sponsor|far above|disagree|nobody owns|no decision|pushing the"
    ),
    "urgency": re.compile(r"urgent|before next quarter|this week|ends next month|asap|live by"),
    "committee": re.compile(r"\bcfo\b|head of it|buying committee|whole team|looping in"),
    "pricing": re.compile(r"pricing|trial|proposal|quote"),
    "disinterest": re.compile(r"just browsing|student|no budget|removed from|happy with their current"),
}


def _spec(prefix: str, cues: tuple[str, ...]) -> FeatureSpec:
    return FeatureSpec(
        numeric=(
            NumericFeature(f"{prefix}_notes", "notes, call summaries and emails so far", log1p=True),
            NumericFeature(f"{prefix}_notes_30d", "notes in the last 30 days", log1p=True),
            *(NumericFeature(f"{prefix}_{cue}_share", f"share of notes with {cue} cues (0 if none)") for cue in cues),
        ),
        categorical=(),
    )


DEAL_NOTE_CUES = ("positive", "negative")
LEAD_NOTE_CUES = ("urgency", "committee", "pricing", "disinterest")
DEAL_NOTE_FEATURES = _spec("deal", DEAL_NOTE_CUES)
LEAD_NOTE_FEATURES = _spec("lead", LEAD_NOTE_CUES)


def has_notes(tables: CRMTables, related_type: str) -> bool:
    """Whether the export carries notes on this kind of entity (none: the features are absent)."""
    return bool((tables.notes["related_type"] == related_type).any())


def note_cues(bodies: pd.Series, cues: tuple[str, ...]) -> pd.DataFrame:
    """0/1 per note and cue: does the (lower-cased) body contain the cue."""
    lower = bodies.astype(str).str.lower()
    return pd.DataFrame({cue: lower.str.contains(CUES[cue]).to_numpy(dtype=np.float64) for cue in cues})


def compute_note_features(
    tables: CRMTables,
    index: pd.DataFrame,
    entity_column: str = "opportunity_id",
    with_sources: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Note features per (entity, as_of) row of `index` (deals: DEAL_NOTE_FEATURES, leads: LEAD_NOTE_FEATURES),
    from notes created at or before as_of; with `with_sources`, the newest note read (the entity's creation
    time where none was read), per feature, for the leakage audit."""
    related_type, prefix, cues, spec, owner = (
        ("opportunity", "deal", DEAL_NOTE_CUES, DEAL_NOTE_FEATURES, tables.opportunities)
        if entity_column == "opportunity_id"
        else ("lead", "lead", LEAD_NOTE_CUES, LEAD_NOTE_FEATURES, tables.leads)
    )
    notes = tables.notes
    ids = index[entity_column].unique()
    notes = notes[(notes["related_type"] == related_type) & notes["related_id"].isin(ids)].reset_index(drop=True)
    flags = note_cues(notes["body"], cues)
    created = pd.to_datetime(owner.drop_duplicates("id").set_index("id")["created_at"], utc=True)
    keys = [entity_column, "as_of"]
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        as_of = pd.Timestamp(as_of)
        entity = rows[entity_column].unique()
        seen = (notes["created_at"] <= as_of).to_numpy()
        by = notes.loc[seen, "related_id"].to_numpy()
        total = pd.Series(1.0, index=by).groupby(level=0).sum().reindex(entity).fillna(0.0).to_numpy()
        recent = seen & (notes["created_at"] > as_of - RECENT).to_numpy()
        n_recent = pd.Series(1.0, index=notes.loc[recent, "related_id"].to_numpy()).groupby(level=0).sum()
        frame = {entity_column: entity, "as_of": as_of, f"{prefix}_notes": total}
        frame[f"{prefix}_notes_30d"] = n_recent.reindex(entity).fillna(0.0).to_numpy()
        for cue in cues:
            hits = flags.loc[seen, cue].groupby(by).sum().reindex(entity).fillna(0.0).to_numpy()
            frame[f"{prefix}_{cue}_share"] = hits / np.maximum(total, 1.0)
        parts.append(pd.DataFrame(frame))
        last_note = notes.loc[seen, "created_at"].groupby(by).max().reindex(entity)
        read = newest(last_note.to_numpy(), created.reindex(entity).to_numpy())
        sources.append(pd.DataFrame({entity_column: entity, "as_of": as_of} | dict.fromkeys(spec.names, read)))
    if not parts:
        empty = pd.DataFrame(columns=[*keys, *spec.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = index[keys].merge(pd.concat(parts, ignore_index=True), on=keys, how="left")
    if not with_sources:
        return keyed
    return keyed, index[keys].merge(pd.concat(sources, ignore_index=True), on=keys, how="left")
