"""The online store: one Redis HASH per (view version, entity) holding its newest features.

Layout (INTERFACE.md; the Triton `<model>_by_id` backend reads it directly, without this package):
`fq:fv:{view}:{version}:{entity_id}` -> one field per feature (numbers as `repr(float)`, categoricals as the
string, a missing categorical as ""), `_as_of` (epoch ms the features were computed at), `_seq` (the CDC
sequence of the newest source event reflected, 0 for a batch materialisation), `_written_ms`. Keys expire after
10 x the view's TTL (garbage collection only); staleness is judged from `_as_of` when read. HASH `fq:views`
lists every view version with the models that read it.

What the guarantees rest on:
- *Idempotent, never-regressing writes*: every row is written by one Lua script, which Redis runs atomically;
  it compares the row's seq and as_of with the stored ones and writes only if both are >= (so replaying a
  batch rewrites identical values, and an older or late batch cannot overwrite a newer row, whatever the
  order in which concurrent writers arrive). All rows of a batch go in one pipelined round trip.
- *Exact point-in-time rows*: as_of must be tz-aware and whole milliseconds (use `as_of_now()`), because the
  stored `_as_of` is what the skew check recomputes the offline features at; a truncated as_of would make the
  two disagree on "days since" features.
- *Never hangs*: connect and socket timeouts, no retries; an unreachable or slow Redis raises
  `OnlineStoreError` naming the URL (without its password) and the operation.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.online.views import AS_OF_FIELD, SEQ_FIELD, VIEWS_KEY, WRITTEN_FIELD, FeatureView
from fulqrun_ml.serving.tls import require_tls_url

BATCH_ROWS = 1000  # rows per pipelined round trip
EXPIRY_TTLS = 10  # a key is garbage-collected after this many TTLs without a write
STATUSES = ("ok", "stale", "unknown")

# KEYS[1]: the entity's key. ARGV: seq, as_of_ms, written_ms, expire_ms, then feature field/value pairs.
# Writes only when the row is at least as new as the stored one on both clocks; returns 1 if written.
GUARDED_WRITE = """
local stored = redis.call('HMGET', KEYS[1], '_seq', '_as_of')
if stored[1] and tonumber(stored[1]) > tonumber(ARGV[1]) then return 0 end
if stored[2] and tonumber(stored[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], '_seq', ARGV[1], '_as_of', ARGV[2], '_written_ms', ARGV[3], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""


class OnlineStoreError(FulqrunMLError):
    """Redis is unreachable, timed out or answered with an error; the message names the URL and operation."""


def as_of_now() -> pd.Timestamp:
    """UTC now, whole milliseconds: the as_of an online writer should compute features at."""
    return pd.Timestamp.now(tz="UTC").floor("ms")


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class OnlineStore:
    """Feature views in one Redis database (see the module docstring for the layout and guarantees)."""

    def __init__(self, url: str, socket_timeout: float = 0.5) -> None:
        if socket_timeout <= 0:
            raise OnlineStoreError(f"socket_timeout must be positive, got {socket_timeout}")
        self.url = require_tls_url(url, "the online store URL")  # rediss:// only when $FULQRUN_REQUIRE_TLS is set
        self.location = safe_url(url)
        try:
            self.client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                retry=Retry(NoBackoff(), 0),
                decode_responses=True,
            )
        except ValueError as err:
            raise OnlineStoreError(f"online store URL {self.location!r} is not a Redis URL: {err}") from err
        self._write_script = self.client.register_script(GUARDED_WRITE)

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as err:
            raise OnlineStoreError(f"online store {self.location} unreachable while {operation}: {err}") from err
        except redis.exceptions.RedisError as err:
            raise OnlineStoreError(f"online store {self.location} failed while {operation}: {err}") from err

    def ping(self) -> None:
        with self._guard("pinging"):
            self.client.ping()

    # --- writing -------------------------------------------------------------------------------------

    def write(self, view: FeatureView, features: pd.DataFrame, seq: int | Sequence[int] = 0) -> int:
        """Write rows (entity_column, "as_of", the view's features); returns how many were newer and written."""
        if len(features) == 0:
            return 0
        ids, as_of_ms, values = encode_rows(view, features)
        seqs = _seqs(seq, len(features))
        expire_ms = str(int(view.ttl.total_seconds() * 1000 * EXPIRY_TTLS))
        written_ms = str(int(time.time() * 1000))
        names = view.spec.names
        written = 0
        with self._guard(f"writing {len(ids)} rows of {view.name}@{view.version}"):
            for start in range(0, len(ids), BATCH_ROWS):
                pipe = self.client.pipeline(transaction=False)
                for i in range(start, min(start + BATCH_ROWS, len(ids))):
                    args: list[Any] = [seqs[i], as_of_ms[i], written_ms, expire_ms]
                    for name, value in zip(names, values[i], strict=True):
                        args += [name, value]
                    self._write_script(keys=[view.key(ids[i])], args=args, client=pipe)
                written += sum(int(r) for r in pipe.execute())
        return written

    # --- reading -------------------------------------------------------------------------------------

    def read(
        self,
        view: FeatureView,
        entity_ids: Sequence[str],
        now: pd.Timestamp | None = None,
        with_meta: bool = False,
    ) -> pd.DataFrame:
        """The stored rows for `entity_ids`, in that order: entity_column, "as_of", the features (numeric as
        float64, categorical as str), "status" ok | stale (now - as_of > ttl) | unknown (no row). With
        `with_meta`, also "seq" and "written_ms" (-1 for unknown rows)."""
        ids = [str(e) for e in entity_ids]
        now = pd.Timestamp.now(tz="UTC") if now is None else _utc(now, "now")
        fields = [AS_OF_FIELD, SEQ_FIELD, WRITTEN_FIELD, *view.spec.names]
        answers: list[list[str | None]] = []
        with self._guard(f"reading {len(ids)} rows of {view.name}@{view.version}"):
            for start in range(0, len(ids), BATCH_ROWS):
                pipe = self.client.pipeline(transaction=False)
                for entity in ids[start : start + BATCH_ROWS]:
                    pipe.hmget(view.key(entity), fields)
                answers.extend(pipe.execute())
        return decode_rows(view, ids, answers, now, with_meta)

    def entity_ids(self, view: FeatureView, limit: int | None = None) -> list[str]:
        """Ids with a row under this view version (SCAN, so Redis is never blocked), sorted."""
        prefix = view.key("")
        found: list[str] = []
        with self._guard(f"listing entities of {view.name}@{view.version}"):
            for key in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
                found.append(key[len(prefix) :])
                if limit is not None and len(found) >= limit:
                    break
        return sorted(found)

    # --- the view registry ---------------------------------------------------------------------------

    def register(self, view: FeatureView, model: str | None = None, model_version: int | None = None) -> None:
        """Record the view version in `fq:views`, adding `model` (and version) to the models that read it.
        Optimistic (WATCH) transaction, so two registrations at once never lose a model."""
        field = f"{view.name}:{view.version}"

        def update(pipe: Any) -> None:
            current = pipe.hget(VIEWS_KEY, field)
            entry = json.loads(current) if current else {"models": [], "created_ms": int(time.time() * 1000)}
            entry.update(view.describe())
            if model is not None:
                tie = {"model": model, "version": model_version}
                if tie not in entry["models"]:
                    entry["models"].append(tie)
            pipe.multi()
            pipe.hset(VIEWS_KEY, field, json.dumps(entry))

        with self._guard(f"registering {field}"):
            self.client.transaction(update, VIEWS_KEY)

    def registered_views(self) -> list[dict[str, Any]]:
        """Every registered view version (name, version, entity, features, ttl_seconds, models, created_ms)."""
        with self._guard("listing registered views"):
            raw = self.client.hgetall(VIEWS_KEY)
        return sorted((json.loads(v) for v in raw.values()), key=lambda e: (e["name"], e.get("created_ms", 0)))


# --- encoding ------------------------------------------------------------------------------------------


def encode_rows(view: FeatureView, features: pd.DataFrame) -> tuple[list[str], list[str], list[list[str]]]:
    """(ids, as_of epoch ms, feature strings per row), refusing bad input with the field named."""
    for column in [view.entity_column, "as_of", *view.spec.names]:
        if column not in features.columns:
            raise FieldValidationError(column, f"missing from the rows written to view {view.name}")
    ids = features[view.entity_column]
    if ids.isna().any() or (ids.astype(str).str.len() == 0).any():
        raise FieldValidationError(view.entity_column, "has an empty id")
    as_of = features["as_of"]
    if not isinstance(as_of.dtype, pd.DatetimeTZDtype):
        raise FieldValidationError("as_of", f"must be tz-aware UTC timestamps, got dtype {as_of.dtype}")
    if as_of.isna().any():
        raise FieldValidationError("as_of", "has a missing timestamp")
    as_of = as_of.dt.tz_convert("UTC")
    if (as_of != as_of.dt.floor("ms")).any():
        raise FieldValidationError(
            "as_of", "has sub-millisecond precision: compute the features at as_of.floor('ms') (as_of_now())"
        )
    as_of_ms = (as_of.astype("datetime64[ms, UTC]").astype("int64")).astype(str).tolist()
    columns: list[list[str]] = []
    for name in view.numeric_names:
        try:
            numbers = pd.to_numeric(features[name], errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        except (ValueError, TypeError) as err:
            raise FieldValidationError(name, f"is not numeric: {err}") from err
        columns.append([repr(float(v)) for v in numbers])
    for name in view.categorical_names:
        columns.append([categorical_text(v) for v in features[name]])
    rows = [list(r) for r in zip(*columns, strict=True)]
    return ids.astype(str).tolist(), as_of_ms, rows


def categorical_text(value: Any) -> str:
    """A categorical value as stored: its string, "" when missing (None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    return str(value)


def decode_rows(
    view: FeatureView, ids: list[str], answers: list[list[str | None]], now: pd.Timestamp, with_meta: bool
) -> pd.DataFrame:
    """HMGET answers ([_as_of, _seq, _written_ms, features...] per id) -> the read frame."""
    n_num = len(view.numeric_names)
    as_of_ms = np.full(len(ids), -1, dtype=np.int64)
    seqs = np.full(len(ids), -1, dtype=np.int64)
    written = np.full(len(ids), -1, dtype=np.int64)
    numeric = np.full((len(ids), n_num), np.nan)
    categorical: list[list[str | None]] = []
    for i, answer in enumerate(answers):
        if answer[0] is None:
            categorical.append([None] * len(view.categorical_names))
            continue
        try:
            as_of_ms[i], seqs[i], written[i] = int(answer[0]), int(answer[1] or 0), int(answer[2] or 0)
            numeric[i] = [float(v) if v is not None else np.nan for v in answer[3 : 3 + n_num]]
        except ValueError as err:  # written by something else than this store: say where
            raise OnlineStoreError(f"{view.key(ids[i])} holds a malformed value: {err}") from err
        categorical.append(list(answer[3 + n_num :]))
    known = as_of_ms >= 0
    stamps = pd.to_datetime(np.where(known, as_of_ms, 0), unit="ms", utc=True)
    as_of = pd.Series(stamps).where(known)
    age_s = (now - as_of).dt.total_seconds()
    status = np.where(~known, "unknown", np.where(age_s > view.ttl.total_seconds(), "stale", "ok"))
    # One constructor call: inserting a column at a time fragments the frame (pandas warns on wide views).
    columns: dict[str, Any] = {view.entity_column: ids, "as_of": as_of}
    columns.update({name: numeric[:, j] for j, name in enumerate(view.numeric_names)})
    for j, name in enumerate(view.categorical_names):
        columns[name] = pd.Series([row[j] for row in categorical], dtype=object)
    columns["status"] = status
    if with_meta:
        columns.update(seq=seqs, written_ms=written)
    return pd.DataFrame(columns)


def _seqs(seq: int | Sequence[int], n: int) -> list[str]:
    values = [seq] * n if isinstance(seq, int | np.integer) else list(seq)
    if len(values) != n:
        raise FieldValidationError("seq", f"has {len(values)} values for {n} rows")
    if any(int(v) < 0 for v in values):
        raise FieldValidationError("seq", "must be >= 0")
    return [str(int(v)) for v in values]


def _utc(value: pd.Timestamp, field: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise FieldValidationError(field, "must be a tz-aware timestamp")
    return stamp.tz_convert("UTC")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
