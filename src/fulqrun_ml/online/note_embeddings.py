"""A deal's note embedding as an online feature view: computed when a note is written, fetched by id.

Why at write time: `reports/bench_text.json` measured encoding one text per request (onnxruntime, and the same
graph served by Triton) at tens of milliseconds, against well under a millisecond to read a stored vector by id.
So the stream worker embeds a deal's notes when a note changes (CDC on `notes`, `affected.py`) and writes the
result under the deal's id; a request only reads it (`OnlineStore.read`, or the by-id endpoint's HMGET).

The value: the mean of the 384-d unit embeddings of the deal's notes created by as_of (scrubbed first, with the
names the CRM knows, so the vector never saw a person's name or email), re-normalised to unit length; zeros for
a deal without notes. Notes are taken in (created_at, id) order and averaged in float64, so the mirror and a
fresh load of the CRM give bit-equal rows (the skew check). Each text is encoded once: the encoder's cache is
keyed by the scrubbed text's hash, so recomputing a deal after its tenth note encodes one text, not ten.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.pii import PIIScrubber, names_from_crm
from fulqrun_ml.features.meddpicc_notes import has_notes
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature
from fulqrun_ml.online.views import FeatureView, open_deal_ids
from fulqrun_ml.text.encoder import TextEncoder
from fulqrun_ml.text.model import EMBEDDING_DIM

NAMES = tuple(f"note_emb_{i:03d}" for i in range(EMBEDDING_DIM))
NOTE_EMBEDDING_FEATURES = FeatureSpec(
    numeric=tuple(NumericFeature(name, "a dimension of the deal's mean note embedding") for name in NAMES),
    categorical=(),
)


def mean_note_embeddings(tables: CRMTables, index: pd.DataFrame, encoder: TextEncoder) -> pd.DataFrame:
    """opportunity_id, as_of and NAMES per row of `index`, in `index` order (see the module docstring)."""
    notes = tables.notes
    ids = index["opportunity_id"].unique()
    notes = notes[(notes["related_type"] == "opportunity") & notes["related_id"].isin(ids)]
    notes = notes.sort_values(["created_at", "id"], kind="stable").reset_index(drop=True)
    encoder.scrubber = PIIScrubber(names_from_crm(tables))  # this CRM's people, whoever built the encoder
    vectors = encoder.encode(notes["body"].astype(str).tolist(), field="notes.body").astype(np.float64)
    parts = []
    for as_of, rows in index.groupby("as_of", sort=True):
        deals = rows["opportunity_id"].unique()
        seen = (notes["created_at"] <= pd.Timestamp(as_of)).to_numpy()
        frame = pd.DataFrame(vectors[seen], columns=list(NAMES))
        sums = frame.groupby(notes.loc[seen, "related_id"].to_numpy()).sum().reindex(deals).fillna(0.0)
        norms = np.linalg.norm(sums.to_numpy(), axis=1, keepdims=True)
        unit = np.divide(sums.to_numpy(), norms, out=np.zeros_like(sums.to_numpy()), where=norms > 0)
        part = pd.DataFrame(unit, columns=list(NAMES))
        part.insert(0, "as_of", pd.Timestamp(as_of))
        part.insert(0, "opportunity_id", deals)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["opportunity_id", "as_of", *NAMES])
    keys = ["opportunity_id", "as_of"]
    return index[keys].merge(pd.concat(parts, ignore_index=True), on=keys, how="left")


def note_embedding_view(encoder: TextEncoder, ttl: timedelta = timedelta(hours=1)) -> FeatureView:
    """The view `deal_note_embedding`, embedding with `encoder` (its backend and cache are the caller's choice:
    torch or ONNX give the same vectors within 1e-4, tested in test_text_encoder.py)."""

    def compute_deal_note_embedding(tables: CRMTables, index: pd.DataFrame) -> pd.DataFrame:
        return mean_note_embeddings(tables, index, encoder)

    return FeatureView(
        name="deal_note_embedding",
        entity="opportunity",
        entity_column="opportunity_id",
        spec=NOTE_EMBEDDING_FEATURES,
        compute=compute_deal_note_embedding,
        ttl=ttl,
        sources=tuple((name, "notes") for name in NAMES),
        open_entities=open_deal_ids,
        ready=lambda tables: has_notes(tables, "opportunity"),
    )
