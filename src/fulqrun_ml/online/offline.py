"""The offline store and the online/offline skew check.

The offline store is the CRM snapshot itself (`CRMTables` from Parquet files, PostgreSQL or the simulator,
via `data/sources.py`) plus the view's point-in-time compute function: `offline_features(view, tables, index)`
answers "what were entity e's features at t" for any (e, t) by running the SAME `view.compute` that training
snapshots and the online writers run (one definition; the builders read only rows stamped <= t). Feast's
"historical features" point-in-time join over what was actually written is `historical_features`: a DuckDB
ASOF join of the request against the Parquet feature history (`history.py`).

`skew_check` is the proof that the two stores agree: it samples entities present online, reads their rows
(features and the `_as_of` they were computed at), recomputes offline at exactly that as_of and compares
every feature (numbers with rel/abs tolerance 1e-9, categoricals by equality, a missing categorical equal
to ""). Rows the snapshot cannot reproduce are counted, not compared: rows computed after the snapshot's
extraction (it does not know those events) and entities the snapshot lacks. It runs in the tests and as a
monitor (`fulqrun-ml online skew` exits non-zero on any mismatch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.sources import DirectorySource, PostgresSource, SimulatorSource
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.online.history import FeatureHistory, sql_columns
from fulqrun_ml.online.store import OnlineStore, categorical_text
from fulqrun_ml.online.views import FeatureView

TOLERANCE = 1e-9  # relative and absolute, for numeric features
MAX_LISTED_MISMATCHES = 200
SourceKind = Literal["simulator", "parquet", "csv", "postgres"]
ENTITY_TABLE = {"opportunity": "opportunities", "lead": "leads"}


class OfflineStoreError(FulqrunMLError):
    """The offline store cannot answer: unknown entities, an unknown source, a request without as_of."""


def load_crm(
    source: SourceKind,
    path: str | Path | None = None,
    dsn: str | None = None,
    schema: str = "public",
    extracted_at: str | None = None,
    simulator: dict[str, Any] | None = None,
) -> CRMTables:
    """A validated CRM snapshot from one of the project's sources (the offline store's input)."""
    if source == "simulator":
        return SimulatorSource(**(simulator or {})).load().tables
    if source in ("parquet", "csv"):
        if path is None:
            raise FieldValidationError("path", f"a {source} source needs the export directory (--path)")
        return DirectorySource(path, format=source, extracted_at=extracted_at).load()
    if source == "postgres":
        return PostgresSource(dsn=dsn, schema=schema, extracted_at=extracted_at).load()
    raise FieldValidationError("source", f"must be simulator, parquet, csv or postgres, got {source!r}")


def known_ids(view: FeatureView, tables: CRMTables, as_of: pd.Timestamp | None = None) -> pd.Index:
    """Ids of the view's entity in the snapshot (created by as_of, if given)."""
    table = tables.table(ENTITY_TABLE[view.entity])
    if as_of is not None:
        table = table[table["created_at"] <= as_of]
    return pd.Index(table["id"].astype(str))


def offline_features(view: FeatureView, tables: CRMTables, index: pd.DataFrame) -> pd.DataFrame:
    """The view's features at each (entity, as_of) row of `index`, point-in-time, in index order.

    Refuses, naming them, entities the snapshot lacks and rows asking about a time after the snapshot's
    extraction (the snapshot cannot know what happened then)."""
    for column in (view.entity_column, "as_of"):
        if column not in index.columns:
            raise FieldValidationError(column, "missing from the offline feature request")
    request = index[[view.entity_column, "as_of"]].copy()
    request["as_of"] = pd.to_datetime(request["as_of"], utc=True)
    late = request["as_of"] > tables.extracted_at
    if late.any():
        raise FieldValidationError(
            "as_of",
            f"{int(late.sum())} rows ask about times after the snapshot's extraction ({tables.extracted_at}), "
            f"e.g. {request.loc[late, 'as_of'].iloc[0]}",
        )
    unknown = ~request[view.entity_column].astype(str).isin(known_ids(view, tables))
    if unknown.any():
        raise OfflineStoreError(
            f"{int(unknown.sum())} {view.entity} ids are not in the CRM snapshot, e.g. "
            f"{request.loc[unknown, view.entity_column].head(3).tolist()}"
        )
    return view.compute(tables, request)


def historical_features(history: FeatureHistory, view: FeatureView, index: pd.DataFrame) -> pd.DataFrame:
    """Feast-style point-in-time join: for each (entity, as_of) request row, the newest history row of that
    entity with history.as_of <= the requested as_of (NaN features and NaT `feature_as_of` when none)."""
    for column in (view.entity_column, "as_of"):
        if column not in index.columns:
            raise FieldValidationError(column, "missing from the point-in-time join request")
    rows = history.query(view, end=pd.to_datetime(index["as_of"], utc=True).max() + pd.Timedelta(milliseconds=1))
    request = index[[view.entity_column, "as_of"]].copy()
    request["as_of"] = pd.to_datetime(request["as_of"], utc=True)
    request["_row"] = np.arange(len(request))
    request[view.entity_column] = request[view.entity_column].astype(str)
    entity = sql_columns([view.entity_column])
    features = ", ".join("rows." + sql_columns([name]) for name in view.spec.names)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        con.register("request", request)
        con.register("rows", rows.rename(columns={"as_of": "feature_as_of"}))
        joined = con.execute(
            f"SELECT request._row, rows.feature_as_of, {features} "
            f"FROM request ASOF LEFT JOIN rows ON request.{entity} = rows.{entity} "
            "AND request.as_of >= rows.feature_as_of ORDER BY request._row"
        ).df()
    out = index[[view.entity_column, "as_of"]].reset_index(drop=True).copy()
    out["feature_as_of"] = pd.to_datetime(joined["feature_as_of"], utc=True)
    for name in view.numeric_names:
        out[name] = joined[name].astype(np.float64)
    for name in view.categorical_names:
        out[name] = joined[name].astype(object).where(joined[name].notna(), None)
    return out


def _same(online: Any, offline: Any, numeric: bool) -> bool:
    if numeric:
        a, b = float(online), float(offline)
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return categorical_text(online) == categorical_text(offline)


def compare(view: FeatureView, online: pd.DataFrame, offline: pd.DataFrame) -> list[dict[str, Any]]:
    """Every (entity, feature) whose online and offline values differ; the frames are aligned by row."""
    mismatches = []
    numeric = set(view.numeric_names)
    for i in range(len(online)):
        for name in view.spec.names:
            a, b = online[name].iloc[i], offline[name].iloc[i]
            if not _same(a, b, name in numeric):
                mismatches.append(
                    {
                        "entity": str(online[view.entity_column].iloc[i]),
                        "as_of": pd.Timestamp(online["as_of"].iloc[i]).isoformat(),
                        "feature": name,
                        "online": _plain(a),
                        "offline": _plain(b),
                    }
                )
    return mismatches


def skew_check(
    store: OnlineStore,
    view: FeatureView,
    tables: CRMTables,
    sample: int = 200,
    seed: int = 0,
    entity_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Online(e, t) == offline point-in-time(e, t) for up to `sample` entities present online (or the given
    ids), t being each online row's own as_of. Returns {checked, mismatches, ok, ...}; ok needs at least one
    compared row and no mismatch."""
    if sample <= 0:
        raise FieldValidationError("sample", f"must be positive, got {sample}")
    candidates = list(entity_ids) if entity_ids is not None else store.entity_ids(view)
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(candidates, size=min(sample, len(candidates)), replace=False)) if candidates else []
    online = store.read(view, chosen)
    present = online[online["status"] != "unknown"]
    after_extraction = present["as_of"] > tables.extracted_at
    missing = ~present[view.entity_column].astype(str).isin(known_ids(view, tables))
    comparable = present[~after_extraction & ~missing].reset_index(drop=True)
    offline = view.compute(tables, comparable[[view.entity_column, "as_of"]]) if len(comparable) else comparable
    mismatches = compare(view, comparable, offline) if len(comparable) else []
    return {
        "view": view.name,
        "version": view.version,
        "sampled": len(chosen),
        "checked": len(comparable),
        "features_compared": len(comparable) * len(view.spec.names),
        "not_online": int((online["status"] == "unknown").sum()),
        "after_extraction": int(after_extraction.sum()),
        "missing_offline": int((missing & ~after_extraction).sum()),
        "snapshot_extracted_at": pd.Timestamp(tables.extracted_at).isoformat(),
        "mismatch_count": len(mismatches),
        "mismatches": mismatches[:MAX_LISTED_MISMATCHES],
        "ok": len(comparable) > 0 and not mismatches,
        "seed": seed,
    }


def _plain(value: Any) -> Any:
    """A JSON-friendly value for the report (NaN as None)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float | np.floating):
        return None if math.isnan(float(value)) else float(value)
    return str(value)
