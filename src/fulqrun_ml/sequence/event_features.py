"""The one definition of what a model sees of an event history at a label's as_of: aggregates and sequences.

Point-in-time by construction: `cut_histories` finds, per (entity, as_of), the index range of that entity's
events with time <= as_of in the (entity, time)-sorted table, by an exact integer search (no float keys), and
every feature below reads only inside that range. A timestamp attribute later than as_of (a delivery date not
yet reached) is read as missing. `audit_cut` re-checks the result and raises `LeakageError` on any event after
as_of; training runs it on every split.

Training and serving share this module: the datamodule builds its tensors with `EventEncoder.transform`, and
`fulqrun-ml predict --events` and the SDK helper (`sequence/event_serving.py`) call the same function on the
user's file, so there is nothing to drift apart. The fitted state (vocabularies, numeric scaling, the top
values whose shares become aggregates) is `sequence_vocab.json` of the run and of the published version.

Aggregates (a FeatureSpec, so the ONNX graph standardises them): counts, recency (days since the last and the
first event), frequency (events per 30 days), mean and last gap, per window w (`windows`, days) the count in
(as_of - w, as_of] and its trend against the window before, (c1 - c0) / (c1 + c0 + 1); per numeric attribute
its sum, mean, last value and windowed sums and trends; per categorical attribute the share of each top value
and its last value; per timestamp attribute the mean lag in days (known values only).
Sequences (model-ready [rows, max_len] arrays, left-padded, newest last): one token array per categorical
attribute (0 padding, 1 unknown, 2.. the values seen in training histories), one standardised array per numeric
and timestamp attribute, and the gaps `delta_days` (since the entity's previous event) and `age_days` (before
as_of; -1 marks padding, which is how the model masks it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.event_table import ENTITY, TIME, EventColumns
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

DAY_NS = 86_400 * 10**9
PADDING, UNKNOWN = 0, 1
TOP_VALUES = 8  # categorical values whose shares become aggregates
TIME_FIELDS = ("delta_days", "age_days")
PADDING_AGE = -1.0  # age_days of a padding column: the model's padding mask (a real event has age >= 0)


def ns_since_epoch(times: pd.Series | np.ndarray) -> np.ndarray:
    """Nanoseconds since 1970 (pandas 3 parses to other units; asi8 alone would mix them)."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).as_unit("ns").asi8.astype(np.int64)


def safe_name(column: str) -> str:
    """A column name as a graph input / feature name: word characters only."""
    return re.sub(r"\W", "_", column)


@dataclass(frozen=True)
class Histories:
    """Per label row, events [start, end) of the sorted event table are its history at as_of."""

    start: np.ndarray
    end: np.ndarray
    as_of_ns: np.ndarray


class EventIndex:
    """The (entity, time)-sorted events as integer keys, for exact "how many events at or before t" searches."""

    def __init__(self, events: pd.DataFrame) -> None:
        self.entities = pd.Index(pd.unique(events[ENTITY].to_numpy()))
        self.code = self.entities.get_indexer(events[ENTITY].to_numpy()).astype(np.int64)
        if len(self.code) > 1 and (np.diff(self.code) < 0).any():
            raise ValueError("events must be sorted by entity (EventTable guarantees it)")
        self.time_ns = ns_since_epoch(events[TIME])

    def count_before(self, code: np.ndarray, time_ns: np.ndarray) -> np.ndarray:
        """Global index one past the last event of entity `code` with time <= `time_ns` (exact, vectorised)."""
        grid = np.unique(np.concatenate([self.time_ns, time_ns]))
        width = np.int64(len(grid) + 1)
        keys = self.code * width + np.searchsorted(grid, self.time_ns)
        query = code * width + np.searchsorted(grid, time_ns)
        return np.searchsorted(keys, query, side="right")

    def first(self, code: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.code, code, side="left")


def cut_histories(index: EventIndex, entity: np.ndarray, as_of: pd.Series | np.ndarray) -> Histories:
    """Each (entity, as_of) row's history range; an entity without events gets an empty range."""
    code = index.entities.get_indexer(np.asarray(entity, dtype=object)).astype(np.int64)
    as_of_ns = ns_since_epoch(as_of)
    known = code >= 0
    start = np.where(known, index.first(np.where(known, code, 0)), 0)
    end = np.where(known, index.count_before(np.where(known, code, 0), as_of_ns), 0)
    return Histories(start.astype(np.int64), end.astype(np.int64), as_of_ns)


def audit_cut(index: EventIndex, histories: Histories, split: str = "rows") -> dict[str, int]:
    """The leakage audit: the newest event read by every row is at or before its as_of."""
    filled = histories.end > histories.start
    newest = index.time_ns[np.maximum(histories.end - 1, 0)]
    late = filled & (newest > histories.as_of_ns)
    if late.any():
        raise LeakageError(f"point-in-time violation: event histories ({split}) read {int(late.sum())} rows' future")
    return {"rows_audited": len(filled), "violations": 0}


@dataclass(frozen=True)
class EventEncoder:
    """The fitted state of the features above; `fit` on training histories only."""

    columns: EventColumns
    windows: tuple[int, ...]
    max_len: int
    known: dict[str, tuple[str, ...]]  # token field -> values seen in training histories
    top_values: dict[str, tuple[str, ...]]  # categorical column -> values whose shares are aggregates
    scaling: dict[str, tuple[float, float]]  # numeric sequence field -> (mean, std) of signed log1p

    @property
    def token_fields(self) -> tuple[str, ...]:
        return tuple(f"seq_{safe_name(c)}" for c in self.columns.categorical)

    @property
    def value_fields(self) -> tuple[str, ...]:
        return tuple(f"seq_{safe_name(c)}" for c in (*self.columns.numeric, *self.columns.timestamps))

    @property
    def sequence_fields(self) -> tuple[str, ...]:
        """The graph's sequence inputs in order: tokens (int64), then values and gaps (float32)."""
        return (*self.token_fields, *self.value_fields, *TIME_FIELDS)

    @property
    def token_sizes(self) -> dict[str, int]:
        """Embedding sizes per token field: padding + unknown + the values seen in training."""
        return {f: len(self.known[f]) + 2 for f in self.token_fields}

    @classmethod
    def fit(
        cls,
        events: pd.DataFrame,
        columns: EventColumns,
        train: Histories,
        windows: tuple[int, ...],
        max_len: int,
    ) -> EventEncoder:
        seen = np.zeros(len(events) + 1, dtype=np.int64)  # events inside some training history
        np.add.at(seen, train.start, 1)
        np.add.at(seen, train.end, -1)
        in_train = np.cumsum(seen)[:-1] > 0
        rows = events[in_train]
        known, top = {}, {}
        for column in columns.categorical:
            counts = rows[column].astype(str).value_counts()
            known[f"seq_{safe_name(column)}"] = tuple(sorted(counts.index))
            top[column] = tuple(counts.index[:TOP_VALUES])
        scaling = {}
        lags = _timestamp_lags(rows, columns)
        for column in (*columns.numeric, *columns.timestamps):
            values = rows[column].to_numpy(dtype=np.float64) if column in columns.numeric else lags[column]
            values = _signed_log1p(values[np.isfinite(values)])
            mean = float(values.mean()) if values.size else 0.0
            std = float(values.std()) if values.size else 1.0
            scaling[f"seq_{safe_name(column)}"] = (mean, std or 1.0)
        return cls(columns, tuple(int(w) for w in windows), int(max_len), known, top, scaling)

    def feature_spec(self) -> FeatureSpec:
        """The aggregates as a FeatureSpec (names in the order `aggregates` returns them)."""
        numeric = [NumericFeature(n, d, log1p=lg, impute_missing=True) for n, d, lg in self._numeric_names()]
        categorical = [
            CategoricalFeature(f"last_{safe_name(c)}", f"last event's {c}") for c in self.columns.categorical
        ]
        if not categorical:  # models take a categorical block; a constant stand-in keeps shapes valid
            categorical = [CategoricalFeature("__all__", "constant (the events have no categorical column)")]
        return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))

    def _numeric_names(self) -> list[tuple[str, str, bool]]:
        names = [
            ("n_events", "events at or before as_of", True),
            ("days_since_last", "days from the newest event to as_of", True),
            ("days_since_first", "days from the first event to as_of", True),
            ("events_per_30d", "events per 30 days since the first", True),
            ("mean_gap_days", "mean days between events", True),
            ("last_gap_days", "days between the two newest events", True),
        ]
        for w in self.windows:
            names += [(f"n_last_{w}d", f"events in the last {w} days", True)]
            names += [(f"trend_{w}d", f"count trend, last {w} days vs the {w} before", False)]
        for c in self.columns.numeric:
            s = safe_name(c)
            names += [(f"sum_{s}", f"sum of {c}", False), (f"mean_{s}", f"mean of {c}", False)]
            names += [(f"last_{s}", f"newest {c}", False)]
            for w in self.windows:
                names += [(f"sum_{s}_last_{w}d", f"sum of {c}, last {w} days", False)]
                names += [(f"trend_{s}_{w}d", f"{c} sum trend, last {w} days vs the {w} before", False)]
        for c in self.columns.categorical:
            for v in self.top_values[c]:
                names += [(f"share_{safe_name(c)}_{safe_name(v)}", f"share of events with {c} = {v}", False)]
        for c in self.columns.timestamps:
            names += [(f"mean_{safe_name(c)}_lag_days", f"mean days from an event to its {c} (known ones)", False)]
        return names

    def aggregates(self, events: pd.DataFrame, index: EventIndex, h: Histories) -> pd.DataFrame:
        """One row of aggregate features per history (NaN where undefined, imputed by the FeatureSpec)."""
        n = (h.end - h.start).astype(np.float64)
        t = index.time_ns
        last_t = np.where(n > 0, t[np.maximum(h.end - 1, 0)], h.as_of_ns)
        first_t = np.where(n > 0, t[np.minimum(h.start, len(t) - 1)], h.as_of_ns)
        prev_t = np.where(n > 1, t[np.maximum(h.end - 2, 0)], np.nan)
        out: dict[str, np.ndarray] = {
            "n_events": n,
            "days_since_last": np.where(n > 0, (h.as_of_ns - last_t) / DAY_NS, np.nan),
            "days_since_first": np.where(n > 0, (h.as_of_ns - first_t) / DAY_NS, np.nan),
        }
        span = np.maximum(out["days_since_first"], 1.0)
        out["events_per_30d"] = n / span * 30.0
        out["mean_gap_days"] = np.where(n > 1, (last_t - first_t) / DAY_NS / np.maximum(n - 1, 1), np.nan)
        out["last_gap_days"] = np.where(n > 1, (last_t - prev_t) / DAY_NS, np.nan)
        code = index.code[np.minimum(h.start, len(t) - 1)]
        bounds = {}
        for w in self.windows:
            for k in (1, 2):
                bounds[w, k] = np.maximum(index.count_before(code, h.as_of_ns - k * w * DAY_NS), h.start)
            c1 = h.end - bounds[w, 1]
            c0 = bounds[w, 1] - bounds[w, 2]
            out[f"n_last_{w}d"] = c1.astype(np.float64)
            out[f"trend_{w}d"] = (c1 - c0) / (c1 + c0 + 1.0)
        for c in self.columns.numeric:
            s = safe_name(c)
            x = events[c].to_numpy(dtype=np.float64)
            cum = np.concatenate([[0.0], np.cumsum(np.nan_to_num(x))])
            cnt = np.concatenate([[0], np.cumsum(np.isfinite(x))])
            total, present = cum[h.end] - cum[h.start], cnt[h.end] - cnt[h.start]
            out[f"sum_{s}"] = total
            out[f"mean_{s}"] = np.where(present > 0, total / np.maximum(present, 1), np.nan)
            out[f"last_{s}"] = np.where(n > 0, x[np.maximum(h.end - 1, 0)], np.nan)
            for w in self.windows:
                s1 = cum[h.end] - cum[bounds[w, 1]]
                s0 = cum[bounds[w, 1]] - cum[bounds[w, 2]]
                out[f"sum_{s}_last_{w}d"] = s1
                out[f"trend_{s}_{w}d"] = (s1 - s0) / (np.abs(s1) + np.abs(s0) + 1.0)
        for c in self.columns.categorical:
            values = events[c].astype(str).to_numpy()
            for v in self.top_values[c]:
                cum = np.concatenate([[0], np.cumsum(values == v)])
                out[f"share_{safe_name(c)}_{safe_name(v)}"] = (cum[h.end] - cum[h.start]) / np.maximum(n, 1)
        lags = _timestamp_lags(events, self.columns)
        for c in self.columns.timestamps:
            out[f"mean_{safe_name(c)}_lag_days"] = self._mean_known_lag(events, c, lags[c], h)
        frame = pd.DataFrame(out)
        for c in self.columns.categorical:
            values = events[c].astype(str).to_numpy()
            frame[f"last_{safe_name(c)}"] = np.where(n > 0, values[np.maximum(h.end - 1, 0)], "__none__")
        if not self.columns.categorical:
            frame["__all__"] = "all"
        return frame

    @staticmethod
    def _mean_known_lag(events: pd.DataFrame, column: str, lag: np.ndarray, h: Histories) -> np.ndarray:
        """Mean lag over the history's events whose timestamp is at or before as_of (per row: a short loop over
        rows is fine, the known set depends on each row's as_of)."""
        stamp = ns_since_epoch(events[column]) if len(events) else np.zeros(0, dtype=np.int64)
        present = events[column].notna().to_numpy()
        out = np.full(len(h.start), np.nan)
        for i, (a, b) in enumerate(zip(h.start, h.end, strict=True)):
            ok = present[a:b] & (stamp[a:b] <= h.as_of_ns[i])
            if ok.any():
                out[i] = float(lag[a:b][ok].mean())
        return out

    def sequences(self, events: pd.DataFrame, index: EventIndex, h: Histories) -> dict[str, np.ndarray]:
        """Model-ready [rows, max_len] arrays: the newest `max_len` events of each history, left-padded."""
        length = self.max_len
        positions = h.end[:, None] - length + np.arange(length)[None, :]
        real = positions >= h.start[:, None]
        take = np.clip(positions, 0, max(len(events) - 1, 0))
        out: dict[str, np.ndarray] = {}
        for column, field in zip(self.columns.categorical, self.token_fields, strict=True):
            vocabulary = pd.Index(self.known[field])
            codes = vocabulary.get_indexer(events[column].astype(str).to_numpy())
            codes = np.where(codes >= 0, codes + 2, UNKNOWN)
            out[field] = np.where(real, codes[take], PADDING).astype(np.int64)
        lags = _timestamp_lags(events, self.columns)
        stamps = {c: ns_since_epoch(events[c]) for c in self.columns.timestamps}
        for column, field in zip((*self.columns.numeric, *self.columns.timestamps), self.value_fields, strict=True):
            raw = events[column].to_numpy(dtype=np.float64) if column in self.columns.numeric else lags[column]
            values = raw[take]
            if column in stamps:  # a timestamp after as_of is not known yet
                values = np.where(stamps[column][take] <= h.as_of_ns[:, None], values, np.nan)
            mean, std = self.scaling[field]
            scaled = (_signed_log1p(values) - mean) / std
            out[field] = np.where(real & np.isfinite(scaled), scaled, 0.0).astype(np.float32)
        t = index.time_ns
        previous = np.where(take > h.start[:, None], t[np.maximum(take - 1, 0)], t[take])
        out["delta_days"] = np.where(real, (t[take] - previous) / DAY_NS, 0.0).astype(np.float32)
        out["age_days"] = np.where(real, (h.as_of_ns[:, None] - t[take]) / DAY_NS, PADDING_AGE).astype(np.float32)
        return out

    def transform(
        self, events: pd.DataFrame, index: EventIndex, h: Histories
    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        return self.aggregates(events, index, h), self.sequences(events, index, h)

    def save(self, path: Path) -> None:
        payload = {
            "max_len": self.max_len,
            "known": {k: list(v) for k, v in self.known.items()},
            "windows": list(self.windows),
            "columns": self.columns.to_dict(),
            "top_values": {k: list(v) for k, v in self.top_values.items()},
            "scaling": {k: list(v) for k, v in self.scaling.items()},
        }
        Path(path).write_text(json.dumps(payload, indent=2))

    @classmethod
    def load(cls, path: Path) -> EventEncoder:
        p = json.loads(Path(path).read_text())
        return cls(
            columns=EventColumns.from_dict(p["columns"]),
            windows=tuple(p["windows"]),
            max_len=int(p["max_len"]),
            known={k: tuple(v) for k, v in p["known"].items()},
            top_values={k: tuple(v) for k, v in p["top_values"].items()},
            scaling={k: (float(v[0]), float(v[1])) for k, v in p["scaling"].items()},
        )


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    """Heavy tails (money, counts, lags) compressed; sign kept, NaN stays NaN."""
    return np.sign(values) * np.log1p(np.abs(values))


def _timestamp_lags(events: pd.DataFrame, columns: EventColumns) -> dict[str, np.ndarray]:
    """Days from each event to its timestamp attribute (NaN where empty); masking by as_of happens per row."""
    if not columns.timestamps:
        return {}
    own = ns_since_epoch(events[TIME]) if len(events) else np.zeros(0, dtype=np.int64)
    lags = {}
    for c in columns.timestamps:
        present = events[c].notna().to_numpy()
        stamp = np.where(present, ns_since_epoch(events[c].fillna(events[TIME])), own)
        lags[c] = np.where(present, (stamp - own) / DAY_NS, np.nan)
    return lags
