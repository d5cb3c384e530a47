"""PostgreSQL stores: the prediction store (monitoring/prediction_store.PostgresStore) and a CRM read from
PostgreSQL (data/sources.PostgresSource), erased in one transaction per database.

Why one transaction: a forget that dies half-way must leave the database as it was (the CRM is what the subject
is resolved from, so a rerun resolves it again and starts over); a committed forget leaves nothing to redo.
Rows are locked (`FOR UPDATE`) as they are read, so a writer cannot slip a row in between the decision and the
change of the same row.

What is looked at: every base table of the schema (or the tables named), every column whose values are text
(text, varchar, char, uuid, json, jsonb; others cannot hold an id or an email). Candidates are found in the
database (a case-insensitive `LIKE ANY` of the subject's tokens over the row's text cells) and decided in Python
with the rules of erasure/matcher.py, as every other store is:
- a row with a cell *equal* to one of the subject's drop ids (or its `@org/id` form), or whose `id` is a detach
  id, is deleted;
- a cell equal to a detach id elsewhere becomes NULL (the deal loses its contact, the row stays);
- any other cell that mentions the subject is scrubbed (`[ERASED]`); a JSON cell must stay valid JSON.
Tables are visited children first (from the foreign keys), so a parent row is deleted after the rows that
reference it and no constraint has to be deferred.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from graphlib import CycleError, TopologicalSorter
from typing import Any

import pandas as pd
import psycopg
from psycopg import sql

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.erasure.matcher import ID_COLUMN, Matcher
from fulqrun_ml.erasure.subject import ErasureError, Subject

TEXT_TYPES = frozenset({"text", "character varying", "character", "uuid", "json", "jsonb"})
JSON_TYPES = frozenset({"json", "jsonb"})


def location(dsn: str) -> str:
    """host:port/dbname of a DSN: what messages and reports may name (never the user or the password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def _like(token: str) -> str:
    escaped = token.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class PostgresTables:
    """The base tables of one schema of one database (all of them, or `tables`), as one erasure store."""

    def __init__(self, name: str, dsn: str, schema: str = "public", tables: Sequence[str] | None = None) -> None:
        self.name = name
        self.dsn = dsn
        self.schema = schema
        self.only = tuple(tables) if tables else None
        self.location = f"{location(dsn)} schema {schema}"

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.Error as err:
            raise ErasureError(
                f"{self.name}: cannot connect to PostgreSQL at {self.location}: {type(err).__name__}"
            ) from None

    # --- layout --------------------------------------------------------------------------------------

    def _layout(self, conn: psycopg.Connection) -> list[tuple[str, list[tuple[str, str]]]]:
        """[(table, [(column, type) of its text columns])], children before parents."""
        rows = conn.execute(
            "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c "
            "JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position",
            (self.schema,),
        ).fetchall()
        columns: dict[str, list[tuple[str, str]]] = {}
        for table, column, kind in rows:
            if self.only is None or table in self.only:
                columns.setdefault(table, [])
                if kind in TEXT_TYPES:
                    columns[table].append((column, kind))
        edges = conn.execute(
            "SELECT child.relname, parent.relname FROM pg_constraint k "
            "JOIN pg_class child ON child.oid = k.conrelid JOIN pg_class parent ON parent.oid = k.confrelid "
            "JOIN pg_namespace n ON n.oid = child.relnamespace WHERE k.contype = 'f' AND n.nspname = %s",
            (self.schema,),
        ).fetchall()
        graph: dict[str, set[str]] = {t: set() for t in columns}
        for child, parent in edges:
            if child != parent and child in graph and parent in graph:
                graph[parent].add(child)  # a parent waits for its children
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError:
            order = sorted(columns)  # a cycle of foreign keys: the transaction still keeps it all-or-nothing
        return [(t, columns[t]) for t in order if columns[t]]

    def _candidates(
        self, conn: psycopg.Connection, table: str, columns: list[tuple[str, str]], tokens: list[str], lock: bool
    ) -> list[tuple[Any, ...]]:
        """(ctid, cell texts...) of rows whose text cells contain any token (case-insensitive substring)."""
        cells = [sql.SQL("{}::text").format(sql.Identifier(c)) for c, _ in columns]
        query = sql.SQL("SELECT ctid::text, {} FROM {} WHERE lower(concat_ws(chr(31), {})) LIKE ANY(%s){}").format(
            sql.SQL(", ").join(cells),
            sql.Identifier(self.schema, table),
            sql.SQL(", ").join(cells),
            sql.SQL(" FOR UPDATE") if lock else sql.SQL(""),
        )
        return conn.execute(query, ([_like(t) for t in tokens],)).fetchall()

    # --- the erasure interface -----------------------------------------------------------------------

    def count(self, matcher: Matcher) -> dict[str, int]:
        """Rows that mention the subject, per `schema.table`; tables without hits left out."""
        if not matcher.tokens:
            return {}
        out: dict[str, int] = {}
        try:
            with self._connect() as conn:
                for table, columns in self._layout(conn):
                    rows = self._candidates(conn, table, columns, list(matcher.tokens), lock=False)
                    hits = sum(1 for row in rows if matcher.count_text("\x1f".join(v for v in row[1:] if v)))
                    if hits:
                        out[f"{self.schema}.{table}"] = hits
        except psycopg.Error as err:
            raise ErasureError(
                f"{self.name}: PostgreSQL at {self.location} failed while scanning: {_why(err)}"
            ) from None
        return out

    def erase(self, subject: Subject, matcher: Matcher) -> dict[str, int]:
        """Delete, detach and scrub (module docstring) in one transaction; rows changed per `schema.table`."""
        if not matcher.tokens:
            return {}
        drop = {i.casefold() for i in subject.scoped(subject.drop_ids)}
        detach = {i.casefold() for i in subject.scoped(subject.detach_ids)}
        changed: dict[str, int] = {}
        where = "reading"
        try:
            with self._connect() as conn, conn.transaction():
                for table, columns in self._layout(conn):
                    target = sql.Identifier(self.schema, table)
                    for row in self._candidates(conn, table, columns, list(matcher.tokens), lock=True):
                        ctid, values = row[0], row[1:]
                        if not matcher.count_text("\x1f".join(v for v in values if v)):
                            continue
                        where = f"table {self.schema}.{table}"
                        changed[f"{self.schema}.{table}"] = changed.get(f"{self.schema}.{table}", 0) + 1
                        named = {c: (v.casefold() if v else None) for (c, _), v in zip(columns, values, strict=True)}
                        if any(v in drop for v in named.values()) or named.get(ID_COLUMN) in detach:
                            conn.execute(sql.SQL("DELETE FROM {} WHERE ctid = %s::tid").format(target), (ctid,))
                            continue
                        updates = _updates(columns, values, detach, matcher, f"{self.schema}.{table}")
                        assignments = sql.SQL(", ").join(
                            sql.SQL("{} = %s::{}").format(sql.Identifier(c), sql.SQL(_cast(kind)))
                            for c, kind, _ in updates
                        )
                        conn.execute(
                            sql.SQL("UPDATE {} SET {} WHERE ctid = %s::tid").format(target, assignments),
                            (*(v for _, _, v in updates), ctid),
                        )
        except psycopg.Error as err:
            raise ErasureError(
                f"{self.name}: PostgreSQL at {self.location} refused the erasure in {where} ({_why(err)}); "
                "nothing was changed (one transaction)"
            ) from None
        return changed

    # --- the PII scan and the CRM reader -------------------------------------------------------------

    def value_counts(self) -> Iterator[tuple[str, list[tuple[str, int]]]]:
        """(schema.table, [(distinct text value, how many rows hold it)]) for the PII scan."""
        try:
            with self._connect() as conn:
                for table, columns in self._layout(conn):
                    values: list[tuple[str, int]] = []
                    for column, _ in columns:
                        query = sql.SQL("SELECT {c}::text, count(*) FROM {t} WHERE {c} IS NOT NULL GROUP BY 1").format(
                            c=sql.Identifier(column), t=sql.Identifier(self.schema, table)
                        )
                        values += [(v, int(n)) for v, n in conn.execute(query).fetchall()]
                    yield f"{self.schema}.{table}", values
        except psycopg.Error as err:
            raise ErasureError(
                f"{self.name}: PostgreSQL at {self.location} failed while scanning: {_why(err)}"
            ) from None

    def read_table(self, table: str) -> pd.DataFrame:
        """Every column of `table` as text (as a CSV export reads); an absent table is empty."""
        try:
            with self._connect() as conn:
                names = [
                    r[0]
                    for r in conn.execute(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                        (self.schema, table),
                    ).fetchall()
                ]
                if not names:
                    return pd.DataFrame()
                cells = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(n)) for n in names)
                rows = conn.execute(
                    sql.SQL("SELECT {} FROM {}").format(cells, sql.Identifier(self.schema, table))
                ).fetchall()
        except psycopg.Error as err:
            raise ErasureError(f"{self.name}: table '{table}' at {self.location} cannot be read: {_why(err)}") from None
        return pd.DataFrame(rows, columns=names, dtype=object)


def _updates(
    columns: list[tuple[str, str]], values: Sequence[str | None], detach: set[str], matcher: Matcher, table: str
) -> list[tuple[str, str, str | None]]:
    """(column, type, new value) for the cells of a kept row that name the subject."""
    out: list[tuple[str, str, str | None]] = []
    for (column, kind), value in zip(columns, values, strict=True):
        if value is None:
            continue
        if value.casefold() in detach:
            out.append((column, kind, None))
        elif matcher.count_text(value):
            scrubbed = matcher.scrub_text(value)
            if kind in JSON_TYPES:
                try:
                    json.loads(scrubbed)
                except ValueError:
                    raise ErasureError(f"{table}.{column}: scrubbing the subject would break its JSON") from None
            out.append((column, kind, scrubbed))
    return out


def _cast(kind: str) -> str:
    """The cast of a new cell value: uuid and JSON as themselves, every character type as text."""
    return kind if kind in ("uuid", "json", "jsonb") else "text"


def _why(err: psycopg.Error) -> str:
    """The error class and SQLSTATE; never the message, which can quote a row (and so the subject)."""
    return f"{type(err).__name__}" + (f" {err.sqlstate}" if getattr(err, "sqlstate", None) else "")


def scan_postgres(store: PostgresTables, scrubber: PIIScrubber) -> dict[str, Any]:
    """Findings per kind in every text cell of the store (each distinct value scanned once, weighted by rows)."""
    totals: Counter[str] = Counter()
    tables = with_findings = 0
    for _, values in store.value_counts():
        found: Counter[str] = Counter()
        for value, n in values:
            for line in value.splitlines():
                for match in scrubber.find(line):
                    found[match.kind] += n
        tables += 1
        with_findings += int(bool(found))
        totals.update(found)
    return {"tables_scanned": tables, "tables_with_findings": with_findings, "findings": dict(totals)}
