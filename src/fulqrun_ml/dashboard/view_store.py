"""Where saved custom views live: a JSON file (the default) or a PostgreSQL table when one is configured.

Why a second store: a team that runs several dashboard instances (or replicas behind one proxy) needs one
shared set of views, and a file on one host is not shared. Both stores keep the same guarantees:
- every definition is validated on the way in and on the way out (`views.validate`), and a bad stored
  definition is refused naming the file entry or the table row, never drawn half-understood;
- a save is atomic: the file is replaced by temp + rename, the table row is upserted in one transaction, so
  a reader sees the old definition or the new one, never a mixture.

The PostgreSQL DSN comes from an environment variable whose *name* is configured (`--views-dsn-env`), so the
password never appears on a command line, in a config or in a log; errors name host:port/dbname only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql

from fulqrun_ml.dashboard.views import ViewDefinition, ViewError, load_views, save_view, validate

DEFAULT_TABLE = "dashboard_views"


class ViewStore(Protocol):
    def load(self) -> dict[str, ViewDefinition]: ...

    def save(self, view: ViewDefinition) -> None: ...

    def describe(self) -> str: ...


class FileViewStore:
    """The views file ({"views": [...]}, rewritten atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, ViewDefinition]:
        return load_views(self.path)

    def save(self, view: ViewDefinition) -> None:
        save_view(self.path, view)

    def describe(self) -> str:
        return str(self.path)


class PostgresViewStore:
    """Table `<table>` (name text primary key, definition jsonb, saved_at), created when missing."""

    def __init__(self, dsn: str, table: str = DEFAULT_TABLE) -> None:
        self.dsn = dsn
        self.table_name = table
        self.table = sql.Identifier(table)
        with self._connect() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, definition jsonb NOT NULL, "
                    "saved_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.table)
            )

    def describe(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"PostgreSQL {where} table {self.table_name}"

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self.dsn, connect_timeout=10)
        except psycopg.Error as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            secret = psycopg.conninfo.conninfo_to_dict(self.dsn).get("password")
            if secret:  # never echo a password the driver might quote back
                first = first.replace(str(secret), "***")
            raise ViewError(f"views store {self.describe()}: cannot connect ({first})") from None

    def load(self) -> dict[str, ViewDefinition]:
        try:
            with self._connect() as conn:
                rows = conn.execute(sql.SQL("SELECT name, definition FROM {} ORDER BY name").format(self.table))
                rows = rows.fetchall()
        except psycopg.Error as exc:
            raise ViewError(f"views store {self.describe()}: cannot read ({type(exc).__name__})") from None
        views: dict[str, ViewDefinition] = {}
        for name, definition in rows:
            view = validate(definition, f"{self.describe()} row")
            if view.name != name:
                raise ViewError(f"{self.describe()} row {name!r}: field 'name' is {view.name!r}, not the row key")
            views[name] = view
        return views

    def save(self, view: ViewDefinition) -> None:
        checked = validate(view.to_json())
        try:
            with self._connect() as conn, conn.transaction():
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {} (name, definition, saved_at) VALUES (%s, %s::jsonb, now()) "
                        "ON CONFLICT (name) DO UPDATE SET definition = EXCLUDED.definition, saved_at = now()"
                    ).format(self.table),
                    (checked.name, json.dumps(checked.to_json())),
                )
        except psycopg.Error as exc:
            raise ViewError(
                f"views store {self.describe()}: cannot save {checked.name!r} ({type(exc).__name__})"
            ) from None


def open_view_store(path: Path, dsn_env: str | None = None, table: str = DEFAULT_TABLE) -> ViewStore:
    """PostgreSQL when `dsn_env` names a set variable; the file otherwise. A named but empty variable is an error."""
    if not dsn_env:
        return FileViewStore(path)
    dsn = os.environ.get(dsn_env, "").strip()
    if not dsn:
        raise ViewError(f"--views-dsn-env: the environment variable {dsn_env} is unset or empty (a PostgreSQL URL)")
    return PostgresViewStore(dsn, table)
