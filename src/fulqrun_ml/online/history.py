"""Feature history: every feature row ever written online (and every backfilled past row), queryable over time.

Why Parquet + DuckDB: TimescaleDB has no package for this PostgreSQL (../shared/DEPENDENCIES.md), and the
monitoring jobs and the dashboard need range scans by view, time and entity, which Hive-partitioned Parquet
answers with partition pruning and no server. Layout:
`<root>/view=<name>/version=<v>/date=YYYY-MM-DD/part-<uuid>.parquet` (date = the rows' as_of day, UTC).

Guarantees and what they rest on:
- *No torn files*: each part is written under a temporary name in its partition and renamed into place
  (`os.replace`, atomic on one filesystem); readers glob only `part-*.parquet`, so a crash mid-write leaves
  nothing a query reads.
- *Replays do not double rows*: a query keeps one row per (entity, as_of), the one with the highest seq and
  the newest write, so re-running a backfill or replaying a stream batch does not change answers.
- *Stable schema*: every part is written with the view's explicit Arrow schema (numbers float64, categoricals
  string), so parts written by different processes always union.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.online.store import categorical_text
from fulqrun_ml.online.views import FeatureView
from fulqrun_ml.project import REPO_ROOT

HISTORY_ENV = "FULQRUN_FEATURE_HISTORY"
DEFAULT_ROOT = REPO_ROOT / "outputs" / "feature_history"


class FeatureHistoryError(FulqrunMLError):
    """The history cannot be written or read (bad directory, unreadable part)."""


def schema(view: FeatureView) -> pa.Schema:
    """The Arrow schema of a view's history parts."""
    stamp = pa.timestamp("ms", tz="UTC")
    return pa.schema(
        [pa.field(view.entity_column, pa.string()), pa.field("as_of", stamp)]
        + [pa.field(name, pa.float64()) for name in view.numeric_names]
        + [pa.field(name, pa.string()) for name in view.categorical_names]
        + [pa.field("seq", pa.int64()), pa.field("written_at", stamp)]
    )


class FeatureHistory:
    """Append-only, partitioned history of one or more feature views under `root`."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root or os.environ.get(HISTORY_ENV) or DEFAULT_ROOT)

    def view_dir(self, view: FeatureView) -> Path:
        return self.root / f"view={view.name}" / f"version={view.version}"

    def append(self, view: FeatureView, frame: pd.DataFrame, seq: int | Sequence[int] = 0) -> int:
        """Add rows (entity_column, "as_of", the view's features; optional "seq") to the history; one part
        file per as_of day. Returns the rows written."""
        if len(frame) == 0:
            return 0
        table = self._arrow(view, frame, seq)
        days = pd.Series(table.column("as_of").to_pandas()).dt.strftime("%Y-%m-%d").to_numpy()
        for day in np.unique(days):
            part_dir = self.view_dir(view) / f"date={day}"
            try:
                part_dir.mkdir(parents=True, exist_ok=True)
                name = f"part-{uuid.uuid4().hex}.parquet"
                tmp = part_dir / f".tmp-{name}"
                pq.write_table(table.filter(pa.array(days == day)), tmp)
                os.replace(tmp, part_dir / name)
            except OSError as err:
                raise FeatureHistoryError(f"cannot write feature history under {part_dir}: {err}") from err
        return table.num_rows

    def _arrow(self, view: FeatureView, frame: pd.DataFrame, seq: int | Sequence[int]) -> pa.Table:
        for column in [view.entity_column, "as_of", *view.spec.names]:
            if column not in frame.columns:
                raise FieldValidationError(column, f"missing from the rows appended to the history of {view.name}")
        as_of = frame["as_of"]
        if not isinstance(as_of.dtype, pd.DatetimeTZDtype) or as_of.isna().any():
            raise FieldValidationError("as_of", "must be tz-aware timestamps without gaps")
        seqs = (
            frame["seq"] if "seq" in frame.columns else pd.Series(seq if not np.isscalar(seq) else [seq] * len(frame))
        )
        if len(seqs) != len(frame):
            raise FieldValidationError("seq", f"has {len(seqs)} values for {len(frame)} rows")
        columns = {
            view.entity_column: frame[view.entity_column].astype(str).to_numpy(),
            "as_of": as_of.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").to_numpy(),
        }
        for name in view.numeric_names:
            try:
                columns[name] = pd.to_numeric(frame[name]).to_numpy(dtype=np.float64, na_value=np.nan)
            except (ValueError, TypeError) as err:
                raise FieldValidationError(name, f"is not numeric: {err}") from err
        for name in view.categorical_names:
            columns[name] = np.array([categorical_text(v) for v in frame[name]], dtype=object)
        columns["seq"] = pd.to_numeric(pd.Series(seqs)).to_numpy(dtype=np.int64)
        columns["written_at"] = np.full(len(frame), pd.Timestamp.now(tz="UTC").floor("ms").to_datetime64())
        arrays = [pa.array(columns[f.name], type=f.type, from_pandas=True) for f in schema(view)]
        return pa.Table.from_arrays(arrays, schema=schema(view))

    # --- queries -----------------------------------------------------------------------------------

    def _source(self, view: FeatureView) -> str | None:
        if not any(self.view_dir(view).glob("date=*/part-*.parquet")):
            return None
        pattern = str(self.view_dir(view) / "date=*" / "part-*.parquet").replace("'", "''")
        return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"

    def _run(self, view: FeatureView, sql: str, params: list) -> pd.DataFrame:
        source = self._source(view)
        columns = [f.name for f in schema(view)]
        if source is None:
            return _typed(view, pd.DataFrame({c: [] for c in columns}))
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            try:
                frame = con.execute(sql.format(source=source, columns=sql_columns(columns)), params).df()
            except duckdb.Error as err:
                raise FeatureHistoryError(f"cannot read the feature history of {view.name}: {err}") from err
        return _typed(view, frame)

    def query(
        self,
        view: FeatureView,
        start: pd.Timestamp | str | None = None,
        end: pd.Timestamp | str | None = None,
        entity_ids: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Rows with start <= as_of < end (either bound optional), for `entity_ids` if given, ordered by
        (as_of, entity); one row per (entity, as_of)."""
        start_ts, end_ts = _bound(start, "start"), _bound(end, "end")
        where, params = _filters(view, start_ts, end_ts, entity_ids)
        sql = (
            "SELECT {columns} FROM {source} WHERE " + where + " QUALIFY row_number() OVER ("
            f"PARTITION BY {sql_columns([view.entity_column])}, as_of ORDER BY seq DESC, written_at DESC) = 1 "
            f"ORDER BY as_of, {sql_columns([view.entity_column])}"
        )
        return self._run(view, sql, params)

    def latest(
        self, view: FeatureView, as_of: pd.Timestamp | str | None = None, entity_ids: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Per entity, its newest row with as_of <= `as_of` (default: all): what the dashboard shows, and a
        point-in-time read of the history."""
        end_ts = _bound(as_of, "as_of")
        where, params = _filters(view, None, None, entity_ids)
        if end_ts is not None:
            where += " AND as_of <= ? AND date <= ?"
            params += [end_ts.to_pydatetime(), end_ts.date()]
        sql = (
            "SELECT {columns} FROM {source} WHERE " + where + " QUALIFY row_number() OVER ("
            f"PARTITION BY {sql_columns([view.entity_column])} ORDER BY as_of DESC, seq DESC, written_at DESC) = 1 "
            f"ORDER BY {sql_columns([view.entity_column])}"
        )
        return self._run(view, sql, params)


def _filters(
    view: FeatureView, start: pd.Timestamp | None, end: pd.Timestamp | None, entity_ids: Sequence[str] | None
) -> tuple[str, list]:
    """A WHERE clause with partition pruning on `date` next to the exact as_of bounds."""
    clauses, params = ["TRUE"], []
    if start is not None:
        clauses.append("as_of >= ? AND date >= ?")
        params += [start.to_pydatetime(), start.date()]
    if end is not None:
        clauses.append("as_of < ? AND date <= ?")
        params += [end.to_pydatetime(), end.date()]
    if entity_ids is not None:
        clauses.append(f"list_contains(?::VARCHAR[], {sql_columns([view.entity_column])})")
        params.append([str(e) for e in entity_ids])
    return " AND ".join(clauses), params


def _bound(value: pd.Timestamp | str | None, field: str) -> pd.Timestamp | None:
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError as err:
        raise FieldValidationError(field, f"is not a timestamp: {value!r}") from err
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def sql_columns(columns: list[str]) -> str:
    return ", ".join('"' + c.replace('"', '""') + '"' for c in columns)


def _typed(view: FeatureView, frame: pd.DataFrame) -> pd.DataFrame:
    """Query results with the same dtypes the online store reads return."""
    out = frame.copy()
    out[view.entity_column] = out[view.entity_column].astype(object)
    for column in ("as_of", "written_at"):
        out[column] = pd.to_datetime(out[column], utc=True)
    for name in view.numeric_names:
        out[name] = out[name].astype(np.float64)
    for name in view.categorical_names:
        out[name] = out[name].astype(object)
    out["seq"] = out["seq"].astype(np.int64)
    return out.reset_index(drop=True)


def append(view: FeatureView, frame: pd.DataFrame, seq: int | Sequence[int] = 0, root: str | Path | None = None) -> int:
    """`FeatureHistory(root).append(...)`; root defaults to $FULQRUN_FEATURE_HISTORY or outputs/feature_history."""
    return FeatureHistory(root).append(view, frame, seq)


def query(
    view: FeatureView,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    entity_ids: Sequence[str] | None = None,
    root: str | Path | None = None,
) -> pd.DataFrame:
    """`FeatureHistory(root).query(...)`."""
    return FeatureHistory(root).query(view, start, end, entity_ids)
