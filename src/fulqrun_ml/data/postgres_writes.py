"""Writing contract tables into PostgreSQL: one CREATE TABLE and one COPY for the core, history and optional tables."""

from __future__ import annotations

from typing import Any

import pandas as pd
from psycopg import sql

from fulqrun_ml.data.schemas import POSTGRES_TYPE, TableContract


def create_table_sql(contract: TableContract, schema: str, primary_key: bool = True) -> sql.Composed:
    """CREATE TABLE for a contract: column types from its kinds, NOT NULL, foreign keys and (optionally) its key."""
    parts = []
    for f in contract.fields:
        column = sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(POSTGRES_TYPE[f.kind]))
        if not f.nullable:
            column = sql.SQL("{} NOT NULL").format(column)
        if f.references is not None:
            column = sql.SQL("{} REFERENCES {} (id)").format(column, sql.Identifier(schema, f.references))
        parts.append(column)
    if primary_key:
        parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, contract.key))))
    return sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, contract.name), sql.SQL(", ").join(parts))


def copy_rows(conn: Any, schema: str, name: str, frame: pd.DataFrame, columns: list[str]) -> int:
    """COPY the frame's `columns` into schema.name (NaN/NaT as NULL); the row count."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(schema, name), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    with conn.cursor() as cursor, cursor.copy(copy) as writer:
        for row in values.itertuples(index=False, name=None):
            writer.write_row(row)
    return len(frame)
