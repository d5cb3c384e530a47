"""Lead intent: one 0-1 score from what the notes on a lead say, used as a lead-conversion feature.

Why a score next to the raw cue shares (`meddpicc_notes.LEAD_NOTE_FEATURES`): sales teams read and route leads by
one number, and a fixed, explainable rule can be shown to a rep ("urgent, CFO involved"). The rule:
intent = clip(0.5 + (urgency + committee + pricing) / 3 - disinterest / 2, 0, 1) over the shares of the lead's
notes (so far) carrying each cue; 0.5 means no notes or no cues. The weights are set by hand, not fitted, so the
score cannot leak labels; the model still sees the shares and learns its own weights.
Point-in-time because its inputs are (`compute_note_features` reads notes created at or before as_of).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.features.lead_features import LEAD_FEATURES, compute_lead_features
from fulqrun_ml.features.meddpicc_notes import LEAD_NOTE_FEATURES, compute_note_features
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature

INTENT = NumericFeature("lead_intent_score", "0-1 intent from the lead's notes (urgency, committee, pricing)")
LEAD_INTENT_FEATURES = FeatureSpec(numeric=(*LEAD_FEATURES.numeric, INTENT), categorical=LEAD_FEATURES.categorical)
LEAD_INTENT_ALL_FEATURES = FeatureSpec(
    numeric=(*LEAD_INTENT_FEATURES.numeric, *LEAD_NOTE_FEATURES.numeric), categorical=LEAD_FEATURES.categorical
)
KEYS = ["lead_id", "as_of"]


def intent_score(cues: pd.DataFrame) -> np.ndarray:
    """The rule above, on a frame with the lead cue-share columns."""
    buying = cues["lead_urgency_share"] + cues["lead_committee_share"] + cues["lead_pricing_share"]
    raw = 0.5 + buying.to_numpy(dtype=np.float64) / 3.0 - cues["lead_disinterest_share"].to_numpy(np.float64) / 2.0
    return np.clip(raw, 0.0, 1.0)


def compute_lead_intent_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """LEAD_INTENT_ALL_FEATURES per (lead_id, as_of) row of `index` (the lead features, the intent score and
    the cue shares), in `index` order; with `with_sources`, their newest source times."""
    base = compute_lead_features(tables, index, with_sources=with_sources)
    notes = compute_note_features(tables, index, "lead_id", with_sources=with_sources)
    if with_sources:
        (base, base_times), (notes, note_times) = base, notes  # type: ignore[misc]
    scored = notes.assign(lead_intent_score=intent_score(notes))  # type: ignore[union-attr]
    features = pd.concat([base.reset_index(drop=True), scored.drop(columns=KEYS).reset_index(drop=True)], axis=1)
    features = features[[*KEYS, *LEAD_INTENT_ALL_FEATURES.names]]
    if not with_sources:
        return features
    times = note_times.assign(lead_intent_score=note_times["lead_notes"])  # reads exactly the notes' rows
    return features, pd.concat(
        [base_times.reset_index(drop=True), times.drop(columns=KEYS).reset_index(drop=True)], axis=1
    )
