"""Reading a CRM table from PostgreSQL when a stored value has no Python form: name the table, column and row.

Why: PostgreSQL holds values psycopg cannot turn into Python objects (`timestamptz 'infinity'`, years past 9999),
and psycopg then raises a bare `DataError` ("timestamp too large (after year 10K): 'infinity'") that names neither
the table nor the column nor the row, from deep inside a repeatable-read load. The failure is client-side (the
server's transaction is intact), so the columns can be probed one at a time, and the row found by its text form.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from fulqrun_ml.data.source_files import SourceError


def fetch_rows(conn: Any, query: sql.Composable, schema: str, table: str, columns: dict[str, str]) -> list[tuple]:
    """`conn.execute(query).fetchall()`, or a SourceError naming the table, column and an id of an unreadable
    value. `columns`: contract column -> database column, as selected by `query`."""
    try:
        return conn.execute(query).fetchall()
    except psycopg.DataError as err:
        raise _located(conn, schema, table, columns, err) from None


def _located(conn: Any, schema: str, table: str, columns: dict[str, str], err: psycopg.DataError) -> SourceError:
    for column, source in columns.items():
        probe = sql.SQL("SELECT {} FROM {}").format(sql.Identifier(source), sql.Identifier(schema, table))
        try:
            conn.execute(probe).fetchall()
        except psycopg.DataError as column_err:
            where = _where(conn, schema, table, source)
            return SourceError(
                f"table '{schema}.{table}' column '{column}'{where}: a stored value cannot be read ({column_err}); "
                "fix or clear it in the database"
            )
    return SourceError(f"table '{schema}.{table}': a stored value cannot be read ({err})")


def _where(conn: Any, schema: str, table: str, source: str) -> str:
    """' (row id …)' for the first row whose value is an infinity (the usual culprit), else ''."""
    query = sql.SQL("SELECT id::text FROM {} WHERE {}::text IN ('infinity', '-infinity') ORDER BY id LIMIT 1")
    try:
        found = conn.execute(query.format(sql.Identifier(schema, table), sql.Identifier(source))).fetchone()
    except psycopg.Error:  # a table without an `id` column: the column alone must do
        return ""
    return "" if found is None else f" (row id {found[0]})"
