"""Note embeddings as deal-win features: the text arm of the MEDDPICC ablation.

Each note on a deal is scrubbed of PII and embedded by the shared sentence encoder (`text.TextEncoder`:
MiniLM shipped in a package, cached per scrubbed-text hash). The 384 dimensions are reduced to a few principal
components fitted on the notes written before validation starts (the training period; no later text shapes
them), and a snapshot row gets the mean of its deal's note components written at or before its as_of (zeros
and a count of 0 when there are none): point-in-time by an as-of join on the note's `created_at`.

Why here and not in `features/`: `features` and `text` are siblings in the import layers, so only a layer above
both may join them. Why PCA: a logistic regression over 384 raw dimensions on a few thousand rows would
mostly fit noise; a handful of components keeps the arm comparable with the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.pii import names_from_crm
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature
from fulqrun_ml.text.encoder import TextEncoder

EMBEDDING_COMPONENTS = 8
COLUMNS = [f"note_embedding_{i}" for i in range(EMBEDDING_COMPONENTS)]
NOTE_EMBEDDING_FEATURES = FeatureSpec(
    numeric=tuple(
        NumericFeature(c, f"mean of the deal's note embeddings so far, principal component {i}")
        for i, c in enumerate(COLUMNS)
    ),
    categorical=(),
)


def make_encoder(tables: CRMTables, cache_dir: str | Path | None) -> TextEncoder:
    """The shared encoder, scrubbing the names this CRM knows as well as the generic patterns."""
    return TextEncoder(cache_dir=cache_dir, known_names=names_from_crm(tables))


def note_embedding_features(
    tables: CRMTables, index: pd.DataFrame, fit_before: pd.Timestamp, encoder: TextEncoder
) -> pd.DataFrame:
    """NOTE_EMBEDDING_FEATURES per (opportunity_id, as_of) row of `index`, in `index` order (see the docstring)."""
    notes = tables.notes
    notes = notes[(notes["related_type"] == "opportunity") & notes["related_id"].isin(index["opportunity_id"])]
    notes = notes.sort_values("created_at", kind="stable").reset_index(drop=True)
    vectors = encoder.encode(notes["body"].tolist(), field="notes.body")
    early = (notes["created_at"] < fit_before).to_numpy()
    if early.sum() < EMBEDDING_COMPONENTS:
        raise ValueError(f"only {int(early.sum())} notes before {fit_before}: too few to fit the note components")
    components = PCA(EMBEDDING_COMPONENTS, random_state=0).fit(vectors[early]).transform(vectors)
    cumulative = pd.DataFrame(components, columns=COLUMNS).groupby(notes["related_id"].to_numpy()).cumsum()
    running = notes[["related_id", "created_at"]].assign(
        seen=notes.groupby("related_id").cumcount().to_numpy() + 1.0, **{c: cumulative[c].to_numpy() for c in COLUMNS}
    )
    rows = index[["opportunity_id", "as_of"]].assign(_order=np.arange(len(index)))
    rows["as_of"] = pd.to_datetime(rows["as_of"], utc=True).astype("datetime64[us, UTC]")
    running["created_at"] = running["created_at"].astype("datetime64[us, UTC]")
    joined = pd.merge_asof(
        rows.sort_values("as_of", kind="stable"),
        running.sort_values("created_at", kind="stable"),
        left_on="as_of",
        right_on="created_at",
        left_by="opportunity_id",
        right_by="related_id",
        direction="backward",
    ).sort_values("_order")
    seen = joined["seen"].fillna(0.0).to_numpy()
    out = index[["opportunity_id", "as_of"]].reset_index(drop=True)
    for column in COLUMNS:
        out[column] = joined[column].fillna(0.0).to_numpy() / np.maximum(seen, 1.0)
    return out
