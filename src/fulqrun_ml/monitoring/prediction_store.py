"""Where shipped prediction records live: PostgreSQL when a DSN is configured, else Parquet files read with DuckDB.

Both stores keep, next to the records, how far each spool file has been shipped, so a restarted shipper resumes
where it stopped. Delivery is at least once (a shipper killed between storing records and saving its offsets
ships them again), so both deduplicate on (model, request_id, row):
- PostgreSQL: that triple is the primary key, records go in with INSERT ... ON CONFLICT DO NOTHING, and the
  offsets are updated in the same transaction, so a replay inserts nothing twice;
- Parquet: files are only ever added (one part per model and UTC date per shipped chunk, published with
  temp + os.replace), offsets are saved after the parts, and readers keep the first copy of each triple.

Records are the rows `fulqrun_ml.monitoring.prediction_log` explodes from the spool: model, request_id, row,
version, time (tz-aware UTC), entity_id, latency_ms, inputs and outputs (JSON objects).
"""

from __future__ import annotations

import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from fulqrun_ml.errors import FulqrunMLError

KEY = ("model", "request_id", "row")
COLUMNS = ("model", "request_id", "row", "version", "time", "entity_id", "latency_ms", "inputs", "outputs")
OFFSETS_FILE = "_offsets.json"
PARQUET_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("row", pa.int32()),
        ("version", pa.int32()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("entity_id", pa.string()),
        ("latency_ms", pa.float64()),
        ("inputs", pa.string()),  # JSON: one model's inputs differ from another's
        ("outputs", pa.string()),
    ]
)


class PredictionStoreError(FulqrunMLError):
    """The store cannot be reached or read; the message names it (never a password)."""


class PredictionStore(ABC):
    """Records plus per-spool-file offsets; `commit` stores both together (or the records first)."""

    @abstractmethod
    def offsets(self) -> dict[str, int]:
        """{spool file name: bytes shipped}."""

    @abstractmethod
    def commit(self, records: Sequence[dict[str, Any]], offsets: dict[str, int]) -> int:
        """Store records (duplicates of stored ones are ignored) and then the offsets; returns records sent."""

    @abstractmethod
    def forget(self, names: Sequence[str]) -> None:
        """Drop the offsets of spool files that were deleted."""

    @abstractmethod
    def frame(self, model: str | None, since: datetime | None, until: datetime | None) -> pd.DataFrame:
        """Deduplicated records in COLUMNS order, inputs and outputs still JSON text or dicts, by time."""


def _window(model: str | None, since: datetime | None, until: datetime | None) -> tuple[list[str], list[Any]]:
    where, params = [], []
    for clause, value in (("model = ?", model), ("time >= ?", since), ("time < ?", until)):
        if value is not None:
            where.append(clause)
            params.append(value)
    return where, params


class ParquetStore(PredictionStore):
    """<directory>/model=<m>/date=<YYYY-MM-DD>/part-<uuid>.parquet plus <directory>/_offsets.json."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ParquetStore({self.directory})"

    def offsets(self) -> dict[str, int]:
        path = self.directory / OFFSETS_FILE
        return {k: int(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}

    def _save_offsets(self, offsets: dict[str, int]) -> None:
        path = self.directory / OFFSETS_FILE
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(offsets, sort_keys=True))
        os.replace(tmp, path)

    def commit(self, records: Sequence[dict[str, Any]], offsets: dict[str, int]) -> int:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for record in records:
            groups.setdefault((record["model"], record["time"].date().isoformat()), []).append(record)
        for (model, day), rows in groups.items():
            part_dir = self.directory / f"model={model}" / f"date={day}"
            part_dir.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(
                [{**r, "inputs": json.dumps(r["inputs"]), "outputs": json.dumps(r["outputs"])} for r in rows],
                schema=PARQUET_SCHEMA,
            )
            name = f"part-{uuid.uuid4().hex}.parquet"
            tmp = part_dir / f".{name}.tmp"
            pq.write_table(table, tmp)
            os.replace(tmp, part_dir / name)
        self._save_offsets({**self.offsets(), **offsets})
        return len(records)

    def forget(self, names: Sequence[str]) -> None:
        kept = {k: v for k, v in self.offsets().items() if k not in set(names)}
        self._save_offsets(kept)

    def frame(self, model: str | None, since: datetime | None, until: datetime | None) -> pd.DataFrame:
        if not any(self.directory.glob("model=*/date=*/*.parquet")):
            return pd.DataFrame(columns=list(COLUMNS))
        where, params = _window(model, since, until)
        pattern = str(self.directory / "model=*" / "date=*" / "*.parquet")
        query = f"""
            SELECT {", ".join(f'"{c}"' for c in COLUMNS)}
            FROM read_parquet(?, hive_partitioning = true, hive_types = {{'model': VARCHAR, 'date': DATE}})
            {"WHERE " + " AND ".join(where) if where else ""}
            QUALIFY row_number() OVER (PARTITION BY model, request_id, "row" ORDER BY time) = 1
            ORDER BY time, model, request_id, "row"
        """
        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(query, [pattern, *params]).df()


class PostgresStore(PredictionStore):
    """Table `<table>` keyed by (model, request_id, row) and `<table>_offsets`, created when missing."""

    def __init__(self, dsn: str, table: str = "prediction_log") -> None:
        self.dsn = dsn
        self.table = sql.Identifier(table)
        self.offsets_table = sql.Identifier(f"{table}_offsets")
        with self._connect() as conn:
            conn.execute(
                sql.SQL(
                    """CREATE TABLE IF NOT EXISTS {} (
                        model text NOT NULL, request_id text NOT NULL, "row" integer NOT NULL,
                        version integer NOT NULL, time timestamptz NOT NULL, entity_id text,
                        latency_ms double precision, inputs jsonb NOT NULL, outputs jsonb NOT NULL,
                        PRIMARY KEY (model, request_id, "row"))"""
                ).format(self.table)
            )
            conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} (file text PRIMARY KEY, shipped bigint NOT NULL)").format(
                    self.offsets_table
                )
            )

    def __repr__(self) -> str:
        return f"PostgresStore({self._where()})"

    def _where(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.Error as exc:
            raise PredictionStoreError(f"prediction store PostgreSQL at {self._where()}: {exc}") from None

    def offsets(self) -> dict[str, int]:
        with self._connect() as conn:
            rows = conn.execute(sql.SQL("SELECT file, shipped FROM {}").format(self.offsets_table)).fetchall()
        return {name: int(shipped) for name, shipped in rows}

    def commit(self, records: Sequence[dict[str, Any]], offsets: dict[str, int]) -> int:
        """One transaction: COPY into a temporary table, insert what is new, move the offsets."""
        with self._connect() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE TEMP TABLE staging (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(self.table)
            )
            columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
            with cur.copy(sql.SQL("COPY staging ({}) FROM STDIN").format(columns)) as copy:
                for r in records:
                    copy.write_row([*(r[c] for c in COLUMNS[:7]), json.dumps(r["inputs"]), json.dumps(r["outputs"])])
            cur.execute(sql.SQL("INSERT INTO {} SELECT * FROM staging ON CONFLICT DO NOTHING").format(self.table))
            for name, shipped in offsets.items():
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (file, shipped) VALUES (%s, %s) "
                        "ON CONFLICT (file) DO UPDATE SET shipped = EXCLUDED.shipped"
                    ).format(self.offsets_table),
                    (name, shipped),
                )
        return len(records)

    def forget(self, names: Sequence[str]) -> None:
        with self._connect() as conn:
            conn.execute(sql.SQL("DELETE FROM {} WHERE file = ANY(%s)").format(self.offsets_table), (list(names),))

    def frame(self, model: str | None, since: datetime | None, until: datetime | None) -> pd.DataFrame:
        where, params = _window(model, since, until)
        clause = sql.SQL("WHERE " + " AND ".join(w.replace("?", "%s") for w in where)) if where else sql.SQL("")
        query = sql.SQL('SELECT {} FROM {} {} ORDER BY time, model, request_id, "row"').format(
            sql.SQL(", ").join(map(sql.Identifier, COLUMNS)), self.table, clause
        )
        with self._connect() as conn:
            rows = conn.execute(query, params).fetchall()
        return pd.DataFrame(rows, columns=list(COLUMNS))


def open_store(dsn: str | None = None, directory: Path | None = None, table: str = "prediction_log") -> PredictionStore:
    """PostgreSQL when `dsn` is set, else Parquet under `directory`."""
    if dsn:
        return PostgresStore(dsn, table)
    if directory is None:
        raise PredictionStoreError("prediction store: give a PostgreSQL DSN or a directory for Parquet")
    return ParquetStore(Path(directory))
