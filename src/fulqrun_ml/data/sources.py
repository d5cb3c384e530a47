"""Where CRM data comes from, behind one interface: `source.load()` (or `source()`) returns validated tables.

- `SimulatorSource`: the built-in simulator; returns a `SimulatedCRM` (tables plus latent truth).
- `DirectorySource`: a directory of exports, one `<table>.parquet` or `<table>.csv` per table.
- `PostgresSource`: a live PostgreSQL database (the CRM runs on Supabase) via psycopg 3.
(Any user CSV/Parquet table with a target column is not a CRM: `user_tables.TableSource` reads those.)

Every CRM source validates what it read (`validation.validate_crm`) with `on_error="fail"` or
`"quarantine"`, keeps the report as `source.report`, and returns tables with canonical dtypes, so two
sources holding the same CRM return equal frames. A source is a zero-argument callable, which is what
the datamodules take as `source` (Hydra: `_target_: fulqrun_ml.data.sources.DirectorySource`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import pandas as pd
import psycopg
from psycopg import sql

from fulqrun_ml.data.contract import HISTORY_COLUMNS, HISTORY_OF, TABLE_COLUMNS, CRMTables, empty_table
from fulqrun_ml.data.contract_versions import COLUMN_ALIASES
from fulqrun_ml.data.event_postgres import read_event_tables, write_event_tables
from fulqrun_ml.data.history import INTEGER_FIELDS, NUMBER_FIELDS, TIMESTAMP_FIELDS, coerce_history
from fulqrun_ml.data.postgres_reads import fetch_rows
from fulqrun_ml.data.postgres_writes import copy_rows, create_table_sql
from fulqrun_ml.data.schemas import CRM_SCHEMAS, LOAD_ORDER, OPTIONAL_SCHEMAS
from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.source_files import SourceError, read_table_file
from fulqrun_ml.data.validation import OnError, QuarantineFormat, ValidationReport, validate_crm

log = logging.getLogger(__name__)

FileFormat = Literal["parquet", "csv"]
MANIFEST = "crm_export.json"
# Tables a CRM may lack (the skeleton simulator and older exports have no leads): absent means empty.
OPTIONAL_TABLES = frozenset({"leads"})

Loaded = TypeVar("Loaded", CRMTables, SimulatedCRM)


class CRMSource(ABC, Generic[Loaded]):
    """Reads a CRM from somewhere and validates it. Subclasses implement `load_unvalidated`."""

    def __init__(
        self,
        on_error: OnError = "fail",
        quarantine_dir: str | Path | None = None,
        quarantine_format: QuarantineFormat = "parquet",
    ) -> None:
        self.on_error = on_error
        self.quarantine_dir = quarantine_dir
        self.quarantine_format = quarantine_format
        self.report: ValidationReport | None = None

    @abstractmethod
    def load_unvalidated(self) -> Loaded:
        """The data as the source holds it, before the contract is checked."""

    def load(self) -> Loaded:
        loaded = self.load_unvalidated()
        tables = loaded.tables if isinstance(loaded, SimulatedCRM) else loaded
        result = validate_crm(tables, self.on_error, self.quarantine_dir, self.quarantine_format)
        self.report = result.report
        if isinstance(loaded, SimulatedCRM):
            return dataclasses.replace(loaded, tables=result.tables)
        return result.tables

    def __call__(self) -> Loaded:
        return self.load()


class SimulatorSource(CRMSource[SimulatedCRM]):
    """The simulator as a source; keyword arguments go to `simulate_crm` unchanged."""

    def __init__(
        self,
        on_error: OnError = "fail",
        quarantine_dir: str | Path | None = None,
        quarantine_format: QuarantineFormat = "parquet",
        **simulate_kwargs: Any,
    ) -> None:
        super().__init__(on_error, quarantine_dir, quarantine_format)
        self.simulate_kwargs = simulate_kwargs

    def load_unvalidated(self) -> SimulatedCRM:
        return simulate_crm(**self.simulate_kwargs)


# --- a directory of exports -------------------------------------------------------------------------


class DirectorySource(CRMSource[CRMTables]):
    """`<table>.parquet` or `<table>.csv` files in one directory, as a CRM export or `write_crm_directory`
    leaves them. CSV cells are read as text and typed by the contract, so a bad cell is reported per row;
    timestamps are parsed as UTC (naive ones are taken to be UTC).

    The extraction time comes from `extracted_at`, else from the directory's `crm_export.json` (written by
    `write_crm_directory`); an export without either is refused, since point-in-time labels depend on it.
    """

    def __init__(
        self,
        path: str | Path,
        format: FileFormat | None = None,
        extracted_at: str | pd.Timestamp | None = None,
        on_error: OnError = "fail",
        quarantine_dir: str | Path | None = None,
        quarantine_format: QuarantineFormat = "parquet",
    ) -> None:
        super().__init__(on_error, quarantine_dir, quarantine_format)
        if format not in (None, "parquet", "csv"):
            raise SourceError(f"format must be 'parquet', 'csv' or None (either), got {format!r}")
        self.path = Path(path)
        self.format = format
        self.extracted_at = extracted_at

    def load_unvalidated(self) -> CRMTables:
        if not self.path.is_dir():
            raise SourceError(f"CRM export directory {self.path} does not exist")
        frames = {name: self._read_table(name) for name in TABLE_COLUMNS}
        # History and event tables are optional: without history builders read the current rows (flagged by the
        # audit); without events the MEDDPICC / note features are absent. Validation types the event tables.
        for name in (*HISTORY_COLUMNS, *OPTIONAL_SCHEMAS):
            formats = [self.format] if self.format else ["parquet", "csv"]
            files = [self.path / f"{name}.{fmt}" for fmt in formats if (self.path / f"{name}.{fmt}").is_file()]
            if files and name in HISTORY_COLUMNS:
                frames[name] = coerce_history(name, read_table_file(files[0], name, dtype=str, keep_default_na=True))
            elif files:
                frames[name] = read_table_file(files[0], name, dtype=str, keep_default_na=False, na_values=[""])
        return CRMTables(**frames, extracted_at=self._extracted_at())

    def _read_table(self, name: str) -> pd.DataFrame:
        formats = [self.format] if self.format else ["parquet", "csv"]
        found = [self.path / f"{name}.{fmt}" for fmt in formats if (self.path / f"{name}.{fmt}").is_file()]
        if len(found) > 1:
            raise SourceError(f"both {found[0].name} and {found[1].name} are in {self.path}; pass format=")
        if not found:
            if name in OPTIONAL_TABLES:
                log.info("no %s file in %s: the CRM is taken to have no %s", name, self.path, name)
                return empty_table(name)
            raise SourceError(f"table '{name}' is missing: expected {' or '.join(f'{name}.{f}' for f in formats)}")
        return read_table_file(found[0], name, dtype=str, keep_default_na=False, na_values=[""])

    def _extracted_at(self) -> pd.Timestamp:
        if self.extracted_at is not None:
            return pd.Timestamp(self.extracted_at)
        manifest = self.path / MANIFEST
        if manifest.is_file():
            try:
                return pd.Timestamp(json.loads(manifest.read_text())["extracted_at"])
            except (KeyError, ValueError, json.JSONDecodeError) as err:
                raise SourceError(f"{manifest} has no readable 'extracted_at': {err}") from err
        raise SourceError(
            f"when was {self.path} extracted? pass extracted_at= (data.source.extracted_at=...) or add {MANIFEST} "
            'with {"extracted_at": "<ISO timestamp>"}'
        )


def write_crm_directory(tables: CRMTables, path: str | Path, format: FileFormat = "parquet") -> Path:
    """Write every table to `<path>/<table>.<format>` plus `crm_export.json` (extraction time, row counts).

    Tables are written as given (validate first if they must be clean); `DirectorySource(path)` reads
    them back equal after validation. Refuses a directory already holding the other format's files,
    which would make the export ambiguous.
    """
    if format not in ("parquet", "csv"):
        raise SourceError(f"format must be 'parquet' or 'csv', got {format!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    other = "csv" if format == "parquet" else "parquet"
    clashes = [out / f"{name}.{other}" for name in TABLE_COLUMNS if (out / f"{name}.{other}").exists()]
    if clashes:
        raise SourceError(f"{out} already holds {[c.name for c in clashes]}; write {format} to another directory")
    history = {name: frame for name, frame in tables.history_frames().items() if len(frame)}
    events = {name: frame for name, frame in tables.event_frames().items() if len(frame)}
    for name, frame in {**tables.frames(), **history, **events}.items():
        file = out / f"{name}.{format}"
        if format == "parquet":
            frame.to_parquet(file, index=False)
        else:
            frame.to_csv(file, index=False)
    manifest = {
        "extracted_at": pd.Timestamp(tables.extracted_at).isoformat(),
        "format": format,
        "rows": {name: len(frame) for name, frame in tables.frames().items()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out


# --- PostgreSQL --------------------------------------------------------------------------------------


DSN_ENV = "FULQRUN_CRM_DSN"


class PostgresSource(CRMSource[CRMTables]):
    """The CRM's own PostgreSQL tables (e.g. Supabase), read in one read-only, repeatable-read
    transaction, so every table comes from the same snapshot. Only the contract's columns are selected
    (other columns may hold PII). `extracted_at` defaults to that transaction's start (`now()`).
    `snapshot`: an id from `pg_export_snapshot()` in a transaction still open elsewhere; the read then sees
    exactly that transaction's snapshot (the CDC worker reads the CRM and its pending outbox consistently)."""

    def __init__(
        self,
        dsn: str | None = None,
        schema: str = "public",
        extracted_at: str | pd.Timestamp | None = None,
        on_error: OnError = "fail",
        quarantine_dir: str | Path | None = None,
        quarantine_format: QuarantineFormat = "parquet",
        snapshot: str | None = None,
    ) -> None:
        super().__init__(on_error, quarantine_dir, quarantine_format)
        self.snapshot = snapshot
        # Taken from the environment when not given, so a password never sits in a config, log or W&B run.
        self.dsn = dsn or os.environ.get(DSN_ENV)
        if not self.dsn:
            raise SourceError(f"no PostgreSQL DSN: pass dsn= or set {DSN_ENV}")
        self.schema = schema
        self.extracted_at = extracted_at

    def load_unvalidated(self) -> CRMTables:
        try:
            conn = psycopg.connect(self.dsn)
        except psycopg.OperationalError as err:
            raise SourceError(f"cannot connect to PostgreSQL: {err}") from err
        with conn:
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                if self.snapshot is not None:
                    conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot)))
                conn.execute("SET LOCAL TIME ZONE 'UTC'")
                started = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
                existing = _existing_columns(conn, self.schema)
                frames = {}
                for name in TABLE_COLUMNS:
                    if name not in existing:
                        if name in OPTIONAL_TABLES:
                            frames[name] = empty_table(name)
                            continue
                        raise SourceError(f"table '{self.schema}.{name}' does not exist in the database")
                    selected = _selected_columns(name, existing[name])
                    columns = list(selected)
                    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
                        sql.SQL(", ").join(
                            sql.SQL("{} AS {}").format(sql.Identifier(source), sql.Identifier(column))
                            for column, source in selected.items()
                        ),
                        sql.Identifier(self.schema, name),
                        sql.SQL(", ").join(map(sql.Identifier, CRM_SCHEMAS[name].key)),
                    )
                    rows = fetch_rows(conn, query, self.schema, name, selected)
                    frames[name] = _frame_from_rows(rows, columns)
                for name in HISTORY_COLUMNS:  # optional, as in the file source: absent means no versions kept
                    if name in existing:
                        frames[name] = _read_history(conn, self.schema, name)
                frames |= read_event_tables(conn, self.schema, existing)  # optional too: MEDDPICC writes, notes
        extracted_at = pd.Timestamp(self.extracted_at) if self.extracted_at is not None else pd.Timestamp(started)
        return CRMTables(**frames, extracted_at=extracted_at)


def _selected_columns(table: str, existing: set[str]) -> dict[str, str]:
    """Contract column -> the database column holding it: itself, or a declared alias (a renamed column that
    an older CRM schema still has; contract_versions.COLUMN_ALIASES). Columns with neither are left out."""
    aliases = COLUMN_ALIASES.get(table, {})
    selected = {}
    for column in TABLE_COLUMNS[table]:
        source = column if column in existing else next((a for a in aliases.get(column, ()) if a in existing), None)
        if source is not None:
            selected[column] = source
    return selected


def _existing_columns(conn: Any, schema: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s", (schema,)
    ).fetchall()
    existing: dict[str, set[str]] = {}
    for table, column in rows:
        existing.setdefault(table, set()).add(column)
    return existing


def _frame_from_rows(rows: list[tuple[Any, ...]], columns: list[str]) -> pd.DataFrame:
    """uuid.UUID -> str here; the contract's type pass turns Decimal, datetime and int into canonical dtypes."""
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns, dtype=object)
    for column in columns:
        values = frame[column]
        if len(values) and values.map(lambda v: isinstance(v, uuid.UUID)).any():
            frame[column] = values.map(lambda v: str(v) if isinstance(v, uuid.UUID) else v)
    return frame


IfExists = Literal["fail", "replace"]


def load_crm_into_postgres(
    tables: CRMTables, dsn: str, schema: str = "public", if_exists: IfExists = "fail"
) -> dict[str, int]:
    """Create the CRM's tables in `schema` (CRM column names; ids uuid, timestamps timestamptz, money
    numeric; primary and foreign keys) and COPY `tables` into them, in one transaction.

    The tables are validated first (a database never receives rows that break the contract). Existing
    tables make it fail unless `if_exists="replace"`, which drops them. Returns rows written per table.
    """
    if if_exists not in ("fail", "replace"):
        raise SourceError(f"if_exists must be 'fail' or 'replace', got {if_exists!r}")
    clean = validate_crm(tables, on_error="fail").tables
    written = {}
    try:
        conn = psycopg.connect(dsn)
    except psycopg.OperationalError as err:
        raise SourceError(f"cannot connect to PostgreSQL: {err}") from err
    with conn, conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        present = set(_existing_columns(conn, schema)) & set(LOAD_ORDER)
        if present and if_exists == "fail":
            raise SourceError(f"tables {sorted(present)} already exist in schema '{schema}'; use if_exists='replace'")
        for name in reversed(LOAD_ORDER):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(schema, name)))
        for name in LOAD_ORDER:
            conn.execute(create_table_sql(CRM_SCHEMAS[name], schema))
            written[name] = copy_rows(conn, schema, name, clean.table(name), list(TABLE_COLUMNS[name]))
        for name, frame in clean.history_frames().items():
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
            conn.execute(_create_history_sql(name, schema))
            written[name] = copy_rows(conn, schema, name, frame, list(HISTORY_COLUMNS[name]))
        written |= write_event_tables(conn, schema, clean)
    return written


def _history_column_type(column: str) -> str:
    if column == "valid_from":
        return "timestamptz NOT NULL"
    if column in TIMESTAMP_FIELDS:
        return "timestamptz"
    if column in INTEGER_FIELDS:
        return "bigint"
    return "double precision" if column in NUMBER_FIELDS else "text"


def _create_history_sql(name: str, schema: str) -> sql.Composed:
    """A history table: the versioned row's id (a foreign key to it), its attributes, and `valid_from`."""
    parent, key = HISTORY_OF[name]
    parts = [
        sql.SQL("{} uuid NOT NULL REFERENCES {} (id)").format(sql.Identifier(key), sql.Identifier(schema, parent)),
        *(
            sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(_history_column_type(c)))
            for c in HISTORY_COLUMNS[name]
            if c != key
        ),
        sql.SQL("PRIMARY KEY ({}, valid_from)").format(sql.Identifier(key)),
    ]
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, name), sql.SQL(", ").join(parts))


def _read_history(conn: Any, schema: str, name: str) -> pd.DataFrame:
    columns = list(HISTORY_COLUMNS[name])
    key = HISTORY_OF[name][1]
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}, valid_from").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema, name), sql.Identifier(key)
    )
    return coerce_history(name, _frame_from_rows(conn.execute(query).fetchall(), columns))
