"""A CRM Parquet directory opened in DuckDB: one view per contract table, with bounded memory.

Reads both layouts the project writes: the sharded one (`<table>/part-*.parquet`, `simulator_scale.py`) and
the flat export (`<table>.parquet`, `sources.write_crm_directory`); the extraction time comes from the
directory's `crm_export.json`, as for `DirectorySource`. Nothing is loaded up front: the views scan the
files, and DuckDB streams them, spilling to `temp_directory` beyond `memory_limit`.

Each view exposes the contract's columns plus `_pos` (file number << 32 | row in the file: the row's place in
the concatenated table), so builders break timestamp ties in table order exactly as pandas' stable sorts do.
Id columns are DuckDB UUIDs inside the views (16-byte keys: joining and sorting 36-character strings was the
largest cost at 20M rows); every builder returns ids as the contract's lowercase strings. `activities.direction` is
optional in exports (contract.OPTIONAL_COLUMN_DEFAULTS): a missing column or empty cell reads as "unknown".
The data is trusted to meet the contract (validate it first; the simulator's output does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from fulqrun_ml.data.contract import OPTIONAL_COLUMN_DEFAULTS, TABLE_COLUMNS
from fulqrun_ml.data.schemas import CRM_SCHEMAS, Kind

MANIFEST = "crm_export.json"
DUCKDB_TYPE = {
    Kind.ID: "UUID",
    Kind.TEXT: "VARCHAR",
    Kind.CATEGORY: "VARCHAR",
    Kind.TIMESTAMP: "TIMESTAMPTZ",
    Kind.MONEY: "DOUBLE",
    Kind.FRACTION: "DOUBLE",
    Kind.INTEGER: "BIGINT",
    Kind.NUMBER: "DOUBLE",
}


@dataclass(frozen=True)
class DuckDBSettings:
    """Resource limits for a build: DuckDB spills to `temp_directory` rather than exceed `memory_limit`."""

    memory_limit: str = "4GB"
    threads: int = 2
    temp_directory: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"memory_limit": self.memory_limit, "threads": self.threads, "temp_directory": self.temp_directory}


@dataclass
class CRMDatabase:
    """A DuckDB connection with the CRM's tables as views, and the extraction time."""

    con: duckdb.DuckDBPyConnection
    directory: Path
    extracted_at: pd.Timestamp
    settings: DuckDBSettings
    files: dict[str, list[Path]] = field(default_factory=dict)

    def sql(self, query: str, params: Any = None) -> duckdb.DuckDBPyRelation:
        return self.con.sql(query, params=params)

    def execute(self, query: str, params: Any = None) -> None:
        self.con.execute(query, params)

    def rows(self, table: str) -> int:
        return int(self.con.sql(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> CRMDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def manifest_extracted_at(root: Path) -> pd.Timestamp:
    """The export's extraction time (UTC) from its manifest; FileNotFoundError names the directory without one
    (the manifest is written last, so its absence means an incomplete export)."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"{root} has no {MANIFEST}: it is not a complete CRM export (extraction time unknown)")
    extracted_at = pd.Timestamp(json.loads(manifest.read_text())["extracted_at"])
    return extracted_at.tz_localize("UTC") if extracted_at.tzinfo is None else extracted_at.tz_convert("UTC")


def open_crm(directory: str | Path, settings: DuckDBSettings | None = None) -> CRMDatabase:
    """Open a CRM Parquet directory (sharded or flat) with views named after the contract's tables."""
    settings = settings or DuckDBSettings()
    root = Path(directory)
    extracted_at = manifest_extracted_at(root)
    con = duckdb.connect(config={"threads": settings.threads, "memory_limit": settings.memory_limit})
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = false")  # lets large COPYs stream; we ORDER BY where it matters
    if settings.temp_directory:
        Path(settings.temp_directory).mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [settings.temp_directory])
    db = CRMDatabase(con, root, extracted_at, settings)
    for name in TABLE_COLUMNS:
        db.files[name] = _files(root, name)
        _create_view(con, name, db.files[name])
    return db


def _files(root: Path, name: str) -> list[Path]:
    parts = sorted((root / name).glob("part-*.parquet"))
    if parts:
        return parts
    flat = root / f"{name}.parquet"
    if flat.is_file():
        return [flat]
    if name == "leads":  # optional, as for DirectorySource: absent means the CRM has no leads
        return []
    raise FileNotFoundError(f"table '{name}' is missing from {root}: expected {name}/part-*.parquet or {name}.parquet")


def _create_view(con: duckdb.DuckDBPyConnection, name: str, files: list[Path]) -> None:
    contract = CRM_SCHEMAS[name]
    if not files:
        typed = ", ".join(f'NULL::{DUCKDB_TYPE[f.kind]} AS "{f.name}"' for f in contract.fields)
        con.execute(f'CREATE VIEW "{name}" AS SELECT {typed}, NULL::BIGINT AS _pos LIMIT 0')
        return
    present = {row[0] for row in con.sql(f"DESCRIBE SELECT * FROM read_parquet('{files[0]}')").fetchall()}
    defaults = OPTIONAL_COLUMN_DEFAULTS.get(name, {})
    columns = []
    for f in contract.fields:
        if f.name in defaults:
            fallback = defaults[f.name].replace("'", "''")
            value = f"coalesce(\"{f.name}\", '{fallback}')" if f.name in present else f"'{fallback}'"
            columns.append(f'{value} AS "{f.name}"')
        elif f.name in present and f.kind is Kind.ID:
            columns.append(f'CAST("{f.name}" AS UUID) AS "{f.name}"')
        elif f.name in present:
            columns.append(f'"{f.name}"')
        else:
            raise ValueError(f"table '{name}' in {files[0].parent} lacks the contract column '{f.name}'")
    scans = " UNION ALL ".join(
        f"SELECT {', '.join(columns)}, ({k}::BIGINT << 32) + file_row_number AS _pos "
        f"FROM read_parquet('{file}', file_row_number = true)"
        for k, file in enumerate(files)
    )
    con.execute(f'CREATE VIEW "{name}" AS {scans}')
