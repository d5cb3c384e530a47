"""Deal win with MEDDPICC: the tabular deal features plus the MEDDPICC history and the note cues, as one set.

`compute_deal_meddpicc_features` is the one definition the training builder (`task=deal_win_meddpicc`) and the
scoring path (the builder's `scoring_rows`, as_of = now) both call. It joins three point-in-time builders, each
reporting its own source times for the leakage audit, so the recompute audit (`recompute_audit.py`, which cuts
`meddpicc_events` and `notes` at as_of) checks all of them.

An export without the optional tables has no MEDDPICC history or notes: the features would be constants that
look like "nothing qualified yet". Rather than train on that silently, the builder refuses, naming the missing
table (`MissingOptionalTableError`); the plain deal-win task is unaffected and keeps working on such exports.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import DataContractError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.meddpicc_features import (
    MEDDPICC_HISTORY_FEATURES,
    compute_meddpicc_features,
    has_meddpicc_history,
)
from fulqrun_ml.features.meddpicc_notes import DEAL_NOTE_FEATURES, compute_note_features, has_notes
from fulqrun_ml.features.spec import FeatureSpec

KEYS = ["opportunity_id", "as_of"]
DEAL_WIN_MEDDPICC_FEATURES = FeatureSpec(
    numeric=(*DEAL_WIN_FEATURES.numeric, *MEDDPICC_HISTORY_FEATURES.numeric, *DEAL_NOTE_FEATURES.numeric),
    categorical=DEAL_WIN_FEATURES.categorical,
)


class MissingOptionalTableError(DataContractError):
    """A task needs an optional CRM table (MEDDPICC history, notes) that this export does not have."""


def require_text_tables(tables: CRMTables) -> None:
    """Refuse, naming each missing optional table, when the export lacks the MEDDPICC history or deal notes."""
    missing = [name for name, present in (("meddpicc_events", has_meddpicc_history(tables)),
                                          ("notes", has_notes(tables, "opportunity"))) if not present]  # fmt: skip
    if missing:
        raise MissingOptionalTableError(
            f"the CRM export has no {' and no '.join(missing)} rows: the MEDDPICC history / note features are "
            "absent, so task=deal_win_meddpicc cannot train on it; export those tables or use task=deal_win"
        )


def compute_deal_meddpicc_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """DEAL_WIN_MEDDPICC_FEATURES per (opportunity_id, as_of) row of `index`, in `index` order (and, with
    `with_sources`, every feature's newest source time)."""
    require_text_tables(tables)
    parts = [
        compute_deal_features(tables, index, with_sources=with_sources),
        compute_meddpicc_features(tables, index, with_sources=with_sources),
        compute_note_features(tables, index, "opportunity_id", with_sources=with_sources),
    ]
    order = [*KEYS, *DEAL_WIN_MEDDPICC_FEATURES.names]
    if not with_sources:
        return _join(parts)[order]  # type: ignore[arg-type]
    features = _join([p[0] for p in parts])[order]  # type: ignore[index]
    sources = _join([p[1] for p in parts])  # type: ignore[index]
    return features, sources


def _join(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Side by side on the shared (deal, as_of) keys; every builder returns its rows in `index` order."""
    out = frames[0]
    for frame in frames[1:]:
        out = pd.concat([out.reset_index(drop=True), frame.drop(columns=KEYS).reset_index(drop=True)], axis=1)
    return out
