"""The optional event tables (`schemas.OPTIONAL_SCHEMAS`: meddpicc_events, notes) in PostgreSQL.

Why apart from `sources.py`: the required tables' loader and reader stay as they are, and a database without these
tables stays a valid CRM (the tables are read only where they exist; absent means none recorded). Column types
come from the same contract as every other table (`POSTGRES_TYPE`), with foreign keys to the required tables.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
from psycopg import sql

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.postgres_writes import copy_rows, create_table_sql
from fulqrun_ml.data.schemas import OPTIONAL_SCHEMAS


def read_event_tables(conn: Any, schema: str, existing: dict[str, set[str]]) -> dict[str, pd.DataFrame]:
    """The optional tables present in `schema` (`existing`: table -> its columns), contract columns only, as read
    (validation types them). A present table missing a contract column is read without it: validation names it."""
    frames = {}
    for name, contract in OPTIONAL_SCHEMAS.items():
        if name not in existing:
            continue
        columns = [c for c in contract.columns if c in existing[name]]
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.Identifier(schema, name),
            sql.SQL(", ").join(map(sql.Identifier, [k for k in contract.key if k in columns])),
        )
        rows = conn.execute(query).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
        frames[name] = frame.map(lambda v: str(v) if isinstance(v, uuid.UUID) else v)
    return frames


def write_event_tables(conn: Any, schema: str, tables: CRMTables) -> dict[str, int]:
    """Create and COPY the optional tables that have rows (validated tables: the caller validates first)."""
    written = {}
    for name, contract in OPTIONAL_SCHEMAS.items():
        frame = getattr(tables, name)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
        if frame.empty:
            continue
        conn.execute(create_table_sql(contract, schema, primary_key=False))
        written[name] = copy_rows(conn, schema, name, frame, list(contract.columns))
    return written
