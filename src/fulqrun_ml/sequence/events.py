"""Activity sequences per (opportunity_id, as_of) and the vocabularies that index their tokens.

The point-in-time extraction is `data.task_snapshots.activity_sequences` (only touches created at or before
as_of, newest last, left-padded); this module adds what a trained model needs on top of it:
- a `SequenceVocabulary` fitted on the training split only: every token value seen in training gets its own
  index from 2 up, anything else maps to 1 ("unknown"), and 0 stays padding. Which columns are padding is
  decided by the extraction's `length`, not by a token value: `activity_sequences` codes an unrecognised
  activity type as 0, which the model would otherwise treat as padding and silently drop; here such events
  become "unknown" instead, so they still count as touches.
- the token fields are whatever the extraction provides among `TOKEN_FIELDS`: `direction`
  (inbound/outbound/unknown) is embedded when the data has it and simply absent otherwise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.task_snapshots import activity_sequences
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.sequence.lead_sequences import lead_sequences

TOKEN_FIELDS = ("event_type", "channel", "direction")
TIME_FIELDS = ("delta_days", "age_days")
PADDING, UNKNOWN = 0, 1
# The model's constructor argument for each token field's vocabulary size.
SIZE_ARGUMENT = {"event_type": "n_event_types", "channel": "n_channels", "direction": "n_directions"}


class SequenceDataError(FulqrunMLError, ValueError):
    """Sequence arrays that do not match what the vocabulary or model expects; the message names the field."""


def build_sequences(
    tables: CRMTables, index: pd.DataFrame, max_len: int, entity: str = "opportunity_id"
) -> dict[str, np.ndarray]:
    """Raw point-in-time sequences for the (entity, as_of) rows of `index`, in `index` order: a deal's touches, or
    (entity "lead_id") a lead's touches and own events (`lead_sequences.py`).

    Token fields keep the extraction's own values (int codes, or strings for a text `direction` column);
    `length` [N] says how many of the trailing columns are real events. `SequenceVocabulary.transform`
    turns this into model inputs."""
    if entity == "lead_id":
        raw = lead_sequences(tables, index[["lead_id", "as_of"]], max_len)
    else:
        raw = activity_sequences(tables, index[[entity, "as_of"]], entity, max_len)
    missing = [f for f in ("event_type", "channel", *TIME_FIELDS, "length") if f not in raw]
    if missing:
        raise SequenceDataError(f"activity sequences lack required field(s) {missing}")
    return {name: np.asarray(raw[name]) for name in (*TOKEN_FIELDS, *TIME_FIELDS, "length") if name in raw}


def real_events(length: np.ndarray, max_len: int) -> np.ndarray:
    """[N, max_len] bool: True where a column holds an event (sequences are left-padded, newest last)."""
    return np.arange(max_len)[None, :] >= (max_len - np.asarray(length, dtype=np.int64))[:, None]


@dataclass(frozen=True)
class SequenceVocabulary:
    """Per token field, the values seen on real training events; index = 2 + position, unknown = 1, padding = 0."""

    known: dict[str, tuple[int | str, ...]]
    max_len: int

    @classmethod
    def fit(cls, train: dict[str, np.ndarray], max_len: int) -> SequenceVocabulary:
        real = real_events(train["length"], max_len)
        known = {}
        for name in TOKEN_FIELDS:
            if name in train:
                values = pd.unique(np.asarray(train[name], dtype=object)[real])
                known[name] = tuple(sorted((_plain(v) for v in values), key=str))
        return cls(known=known, max_len=max_len)

    @property
    def sizes(self) -> dict[str, int]:
        """Constructor arguments of SequenceFusion: padding + unknown + the values seen in training."""
        return {SIZE_ARGUMENT[name]: len(codes) + 2 for name, codes in self.known.items()}

    def transform(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Model inputs: re-indexed tokens (int64) and gaps in days (float32), all [N, max_len]."""
        if "length" not in raw:
            raise SequenceDataError("sequence field 'length' is missing")
        real = real_events(raw["length"], self.max_len)
        out: dict[str, np.ndarray] = {}
        for name, known in self.known.items():
            if name not in raw:
                raise SequenceDataError(f"sequence field '{name}' was present in training but is missing now")
            values = np.asarray(raw[name], dtype=object)
            self._check_shape(name, values)
            position = pd.Index(known, dtype=object).get_indexer([_plain(v) for v in values.ravel()])
            index = np.where(position >= 0, position + 2, UNKNOWN).reshape(values.shape)
            out[name] = np.where(real, index, PADDING).astype(np.int64)
        for name in TIME_FIELDS:
            values = np.asarray(raw[name], dtype=np.float32)
            self._check_shape(name, values)
            if not np.isfinite(values).all():
                raise SequenceDataError(f"sequence field '{name}' contains NaN or infinite values")
            out[name] = np.where(real, values, 0.0).astype(np.float32)
        return out

    def _check_shape(self, name: str, values: np.ndarray) -> None:
        if values.ndim != 2 or values.shape[1] != self.max_len:
            raise SequenceDataError(f"sequence field '{name}' must be [rows, {self.max_len}], got {list(values.shape)}")

    def save(self, path: Path) -> None:
        payload = {"max_len": self.max_len, "known": {k: list(v) for k, v in self.known.items()}}
        Path(path).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, path: Path) -> SequenceVocabulary:
        payload = json.loads(Path(path).read_text())
        return cls(known={k: tuple(v) for k, v in payload["known"].items()}, max_len=int(payload["max_len"]))


def _plain(value: object) -> int | str:
    """numpy scalars -> Python int / str, so vocabularies compare and serialise the same way."""
    return int(value) if isinstance(value, (int, np.integer)) else str(value)
