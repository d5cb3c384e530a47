"""Materialise (CRM snapshot -> Redis, now) and backfill (CRM snapshot -> feature history, past dates).

Feast's two batch verbs, on this project's one feature definition: both call `view.compute` (the builders
training uses) on a validated CRM snapshot at a point in time, so a materialised row is exactly what the
offline store recomputes for that (entity, as_of) and the skew check can prove it.

- `materialise` writes the view's current rows for every entity open at as_of (open deals, undecided leads)
  or for the given ids, with seq 0: the Redis guard means a batch never overwrites a fresher row the stream
  worker wrote (higher seq or later as_of). It registers the view (and the model reading it) in `fq:views`.
- `backfill` computes rows at past as_of dates straight into the Parquet history (never Redis, whose rows
  must be the newest), e.g. to give the dashboard and drift monitors a year of feature values at once.

as_of may not be later than the snapshot's extraction: the snapshot cannot know what happened after it, so
such rows would silently miss events (and fail the skew check). It is rounded down to whole milliseconds,
the store's resolution, so the stored `_as_of` is exactly the time the features were computed at.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.online.history import FeatureHistory
from fulqrun_ml.online.offline import OfflineStoreError, known_ids
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.views import FeatureView

log = logging.getLogger(__name__)


def _as_of(tables: CRMTables, as_of: pd.Timestamp | str | None) -> pd.Timestamp:
    extracted = pd.Timestamp(tables.extracted_at)
    extracted = extracted.tz_localize("UTC") if extracted.tzinfo is None else extracted.tz_convert("UTC")
    if as_of is None:
        return extracted.floor("ms")
    try:
        stamp = pd.Timestamp(as_of)
    except ValueError as err:
        raise FieldValidationError("as_of", f"is not a timestamp: {as_of!r}") from err
    stamp = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")).floor("ms")
    if stamp > extracted:
        raise FieldValidationError(
            "as_of", f"{stamp} is after the CRM snapshot's extraction ({extracted}): it cannot know those events"
        )
    return stamp


def entities_at(
    view: FeatureView, tables: CRMTables, as_of: pd.Timestamp, entity_ids: Sequence[str] | None = None
) -> list[str]:
    """The ids to compute at as_of: the given ones (each must exist by then), else the view's open entities."""
    if entity_ids is None:
        if view.open_entities is None:
            raise FieldValidationError("entity_ids", f"view {view.name} has no open-entity rule: pass ids")
        return [str(e) for e in view.open_entities(tables, as_of)]
    ids = [str(e) for e in entity_ids]
    existing = set(known_ids(view, tables, as_of))
    absent = [e for e in ids if e not in existing]
    if absent:
        raise OfflineStoreError(
            f"{len(absent)} {view.entity} ids do not exist in the CRM snapshot at {as_of}, e.g. {absent[:3]}"
        )
    return ids


def materialise(
    store: OnlineStore,
    view: FeatureView,
    tables: CRMTables,
    as_of: pd.Timestamp | str | None = None,
    entity_ids: Sequence[str] | None = None,
    history: FeatureHistory | None = None,
    model: str | None = None,
    model_version: int | None = None,
) -> dict[str, Any]:
    """Compute the view at as_of (default: the snapshot's extraction) and write it online (seq 0) and to the
    history. Returns a summary: rows computed, rows written (older than a stored row: skipped), timings."""
    stamp = _as_of(tables, as_of)
    ids = entities_at(view, tables, stamp, entity_ids)
    started = time.perf_counter()
    rows = view.compute_at(tables, ids, stamp)
    computed_s = time.perf_counter() - started
    store.register(view, model, model_version)
    written = store.write(view, rows, seq=0)
    if history is not None:
        history.append(view, rows, seq=0)
    summary = {
        "view": view.name,
        "version": view.version,
        "as_of": stamp.isoformat(),
        "entities": len(ids),
        "written": written,
        "skipped_newer_online": len(ids) - written,
        "compute_s": round(computed_s, 3),
        "total_s": round(time.perf_counter() - started, 3),
        "history": str(history.root) if history is not None else None,
    }
    log.info("materialised %s", summary)
    return summary


def backfill(
    view: FeatureView,
    tables: CRMTables,
    as_ofs: Sequence[pd.Timestamp | str],
    history: FeatureHistory,
    entity_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Point-in-time rows at each past as_of into the history (not Redis). With `entity_ids`, those of them
    that exist at each date; else the entities open then. Re-running is harmless (history queries keep one
    row per entity and as_of)."""
    if not as_ofs:
        raise FieldValidationError("as_ofs", "needs at least one date")
    per_date: dict[str, int] = {}
    for value in sorted(_as_of(tables, a) for a in as_ofs):
        if entity_ids is None:
            ids = entities_at(view, tables, value)
        else:
            existing = set(known_ids(view, tables, value))
            ids = [str(e) for e in entity_ids if str(e) in existing]
        rows = view.compute_at(tables, ids, value) if ids else None
        per_date[value.isoformat()] = history.append(view, rows, seq=0) if rows is not None else 0
    return {
        "view": view.name,
        "version": view.version,
        "dates": len(per_date),
        "rows": sum(per_date.values()),
        "rows_per_date": per_date,
        "history": str(history.root),
    }


def date_grid(start: str, end: str, every_days: int) -> list[pd.Timestamp]:
    """Backfill dates from start to end (inclusive) every `every_days` days, UTC."""
    if every_days <= 0:
        raise FieldValidationError("every_days", f"must be positive, got {every_days}")
    try:
        return list(pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"), freq=f"{every_days}D"))
    except (ValueError, TypeError) as err:
        raise FieldValidationError("start/end", f"are not dates: {err}") from err
