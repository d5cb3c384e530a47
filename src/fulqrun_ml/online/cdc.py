"""Change capture from the CRM's PostgreSQL: row triggers write an outbox table, a consumer reads it in order.

Why triggers + an outbox + LISTEN/NOTIFY rather than logical replication (`pgoutput` / `wal2json`):
- it works on managed PostgreSQL such as Supabase, where `wal_level=logical`, replication slots or the
  REPLICATION privilege are often unavailable; creating a schema, a function and triggers is enough;
- the outbox row is written by the same transaction as the CRM change, so it exists exactly when that change
  committed: the consumer only ever sees COMMITTED outbox rows, and a rolled-back change leaves nothing;
- the outbox itself is the checkpoint. The consumer deletes the rows it consumed, in one transaction, only
  after the stream worker's Redis writes succeeded. A crash anywhere before that delete replays the batch
  (the worker's apply is idempotent: upserts and deletes keyed by primary key, recomputation from the
  mirror), a crash after it loses nothing. There is no "id > last_id" high-water mark: such readers skip a
  transaction that took a lower `seq` but committed after a higher one was read (a known outbox bug). Here a
  late committer's row is simply still in the table at the next read.
- ordering: `seq` is drawn when the row changes, not at commit. Two changes of the SAME row are serialised by
  PostgreSQL's row lock, so their seqs follow their commit order, and the mirror applies them in seq order.
  Changes of different rows may commit out of seq order; that is harmless because each batch recomputes the
  affected entities from the whole mirror, and the worker stamps writes with a monotone watermark.
- NOTIFY only wakes the consumer up; a lost notification (a reconnect) only delays it to the next poll.

The trigger copies only the contract's columns (`jsonb_build_object` of the contract columns present),
so extra CRM columns, which may hold PII, never reach the outbox. For UPDATE and DELETE it also keeps the old
row's primary key (`old_key`), so a key change is a delete of the old key plus an upsert of the new one.

Malformed outbox rows (an unknown table or op, a payload that is not an object) are never dropped: the stream
worker moves them to `fulqrun_cdc.dead_letter` with the reason, in the same transaction as the delete.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import psycopg
from psycopg import sql

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.sources import PostgresSource
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.online.captured import CAPTURED_COLUMNS, CONTRACTS, default_capture

log = logging.getLogger(__name__)

CDC_SCHEMA = "fulqrun_cdc"
CHANNEL = "fulqrun_cdc"
OPS = ("INSERT", "UPDATE", "DELETE")
Op = Literal["INSERT", "UPDATE", "DELETE"]


class CDCError(FulqrunMLError):
    """Change capture cannot be installed or read: unreachable database, missing table, not installed."""


@dataclass(frozen=True)
class ChangeEvent:
    """One committed row change. `row` holds the contract columns of the new row (the old row for DELETE);
    `old_key` the old row's primary key for UPDATE/DELETE; `committed_at` the clock when the row changed."""

    seq: int
    table: str
    op: Op
    row: dict[str, Any]
    committed_at: pd.Timestamp
    old_key: dict[str, Any] | None = None


@dataclass(frozen=True)
class DeadLetter:
    """An event set aside: its raw outbox fields and why it was refused (the message names the field)."""

    seq: int
    table: str
    op: str
    row: Any
    error: str
    committed_at: pd.Timestamp | None = None


@dataclass
class RawBatch:
    """What one read returned: well-formed events in seq order, plus outbox rows that are not events."""

    events: list[ChangeEvent] = field(default_factory=list)
    malformed: list[DeadLetter] = field(default_factory=list)

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events] + [d.seq for d in self.malformed]

    def __len__(self) -> int:
        return len(self.events) + len(self.malformed)


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit)
    except psycopg.OperationalError as err:
        raise CDCError(f"cannot connect to PostgreSQL: {err}") from err


_SCHEMA_SQL = f"""
CREATE SCHEMA IF NOT EXISTS {CDC_SCHEMA};
CREATE TABLE IF NOT EXISTS {CDC_SCHEMA}.outbox (
    seq bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op text NOT NULL,
    row jsonb,
    old_key jsonb,
    committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS {CDC_SCHEMA}.dead_letter (
    seq bigint PRIMARY KEY,
    table_name text,
    op text,
    row jsonb,
    error text NOT NULL,
    committed_at timestamptz,
    failed_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
"""


def _pairs(record: str, columns: Sequence[str]) -> sql.Composed:
    """`'col', NEW.col, ...` for jsonb_build_object (at most 50 pairs per call, so chunks are concatenated)."""
    chunks = [columns[i : i + 50] for i in range(0, len(columns), 50)]
    calls = [
        sql.SQL("jsonb_build_object({})").format(
            sql.SQL(", ").join(
                sql.SQL("{}, {}.{}").format(sql.Literal(c), sql.SQL(record), sql.Identifier(c)) for c in chunk
            )
        )
        for chunk in chunks
    ]
    return sql.SQL(" || ").join(calls)


def _trigger_sql(schema: str, table: str, columns: Sequence[str]) -> sql.Composed:
    key = CONTRACTS[table].key
    function = sql.Identifier(CDC_SCHEMA, f"capture_{schema}_{table}")
    body = sql.SQL(
        """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $cdc$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO {outbox} (table_name, op, row, old_key) VALUES (TG_TABLE_NAME, TG_OP, {old_row}, {old_key});
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO {outbox} (table_name, op, row, old_key) VALUES (TG_TABLE_NAME, TG_OP, {new_row}, {old_key});
    ELSE
        INSERT INTO {outbox} (table_name, op, row) VALUES (TG_TABLE_NAME, TG_OP, {new_row});
    END IF;
    PERFORM pg_notify({channel}, '');
    RETURN NULL;
END
$cdc$;
DROP TRIGGER IF EXISTS fulqrun_cdc_capture ON {table};
CREATE TRIGGER fulqrun_cdc_capture AFTER INSERT OR UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""
    )
    return body.format(
        function=function,
        outbox=sql.Identifier(CDC_SCHEMA, "outbox"),
        new_row=_pairs("NEW", columns),
        old_row=_pairs("OLD", columns),
        old_key=_pairs("OLD", key),
        channel=sql.Literal(CHANNEL),
        table=sql.Identifier(schema, table),
    )


def install_cdc(dsn: str, tables: Sequence[str] | None = None, schema: str = "public") -> dict[str, list[str]]:
    """Create schema `fulqrun_cdc` (outbox, dead_letter) and a capture trigger on each CRM table (default:
    `captured.default_capture`) in one transaction; idempotent (triggers replaced). Returns, per table, the contract
    columns captured (those it has). Tables the contract does not know or the database lacks are refused by name."""
    unknown = [t for t in tables or () if t not in CAPTURED_COLUMNS]
    if unknown:
        raise CDCError(f"unknown CRM tables {unknown}; the contract has {list(CAPTURED_COLUMNS)}")
    captured: dict[str, list[str]] = {}
    with connect(dsn) as conn, conn.transaction():
        # One installer at a time: concurrent CREATE ... IF NOT EXISTS can still collide on the catalog.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('fulqrun_cdc_install'))")
        conn.execute(_SCHEMA_SQL)
        existing = _columns(conn, schema)
        tables = default_capture(existing) if tables is None else tables
        missing = [t for t in tables if t not in existing]
        if missing:
            raise CDCError(f"tables {missing} do not exist in schema '{schema}': load the CRM first")
        for table in tables:
            columns = [c for c in CAPTURED_COLUMNS[table] if c in existing[table]]
            absent_key = [k for k in CONTRACTS[table].key if k not in columns]
            if absent_key:
                raise CDCError(f"table '{schema}.{table}' lacks its key column(s) {absent_key}")
            conn.execute(_trigger_sql(schema, table, columns))
            captured[table] = columns
    log.info("CDC installed on %s.%s", schema, sorted(captured))
    return captured


def uninstall_cdc(dsn: str, tables: Sequence[str] = tuple(CAPTURED_COLUMNS), schema: str = "public") -> None:
    """Drop the capture triggers and the `fulqrun_cdc` schema (outbox and dead letters included)."""
    with connect(dsn) as conn, conn.transaction():
        existing = _columns(conn, schema)
        for table in tables:
            if table in existing:
                conn.execute(
                    sql.SQL("DROP TRIGGER IF EXISTS fulqrun_cdc_capture ON {}").format(sql.Identifier(schema, table))
                )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(CDC_SCHEMA)))


def cdc_status(dsn: str, schema: str = "public") -> dict[str, Any]:
    """What is installed and how far behind the consumer is: captured tables, pending events, the age of the
    oldest pending one, dead letters."""
    with connect(dsn) as conn:
        installed = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{CDC_SCHEMA}.outbox",)).fetchone()[0]  # type: ignore[index]
        triggers = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE t.tgname = 'fulqrun_cdc_capture' AND n.nspname = %s ORDER BY 1",
                (schema,),
            ).fetchall()
        ]
        if not installed:
            return {"installed": False, "tables": triggers, "pending": 0, "oldest_pending_s": None, "dead_letters": 0}
        pending, oldest = conn.execute(
            f"SELECT count(*), extract(epoch FROM clock_timestamp() - min(committed_at)) FROM {CDC_SCHEMA}.outbox"
        ).fetchone()  # type: ignore[misc]
        dead = conn.execute(f"SELECT count(*) FROM {CDC_SCHEMA}.dead_letter").fetchone()[0]  # type: ignore[index]
    return {
        "installed": True,
        "tables": triggers,
        "pending": int(pending),
        "oldest_pending_s": None if oldest is None else float(oldest),
        "dead_letters": int(dead),
    }


def _columns(conn: psycopg.Connection, schema: str) -> dict[str, set[str]]:
    rows = conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s", (schema,)
    ).fetchall()
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(table, set()).add(column)
    return found


def parse_outbox_row(
    seq: int, table: Any, op: Any, row: Any, old_key: Any, committed_at: Any
) -> ChangeEvent | DeadLetter:
    """An outbox row as a ChangeEvent, or a DeadLetter naming the field that is wrong. Field-level contract
    checks (types, enumerations) are the mirror's; here only the envelope is checked."""
    at = pd.Timestamp(committed_at) if committed_at is not None else None
    if at is not None:
        at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")

    def dead(error: str) -> DeadLetter:
        return DeadLetter(int(seq), str(table), str(op), row, error, at)

    if table not in CAPTURED_COLUMNS:
        return dead(f"field 'table_name': unknown CRM table {table!r}; the contract has {list(CAPTURED_COLUMNS)}")
    if op not in OPS:
        return dead(f"field 'op': {op!r} is not one of {list(OPS)}")
    if isinstance(row, str):
        try:
            row = json.loads(row)
        except json.JSONDecodeError as err:
            return dead(f"field 'row': not valid JSON ({err})")
    if not isinstance(row, dict):
        return dead(f"field 'row': expected a JSON object of the {table} row, got {type(row).__name__}")
    if old_key is not None and not isinstance(old_key, dict):
        return dead(f"field 'old_key': expected a JSON object, got {type(old_key).__name__}")
    if at is None or pd.isna(at):
        return dead("field 'committed_at': missing")
    return ChangeEvent(int(seq), table, op, row, at, old_key)


class OutboxConsumer:
    """Reads committed outbox rows in seq order and deletes them once the caller has processed them.

    One connection LISTENs (autocommit, so notifications arrive between statements); another reads and
    acknowledges. `wait(timeout)` returns on a notification or after `timeout` seconds (the poll fallback)."""

    def __init__(self, dsn: str, schema: str = "public", quarantine_dir: str | None = None) -> None:
        self.dsn = dsn
        self.schema = schema
        self.quarantine_dir = quarantine_dir
        self._listen = connect(dsn, autocommit=True)
        self._listen.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        self._conn = connect(dsn)
        installed = self._conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{CDC_SCHEMA}.outbox",)).fetchone()
        self._conn.rollback()
        if not installed or not installed[0]:
            self.close()
            raise CDCError("change capture is not installed in this database: run `fulqrun-ml online cdc install`")

    def wait(self, timeout: float) -> bool:
        """Block until a NOTIFY arrives or `timeout` passes; True if woken by a notification."""
        woke = False
        for _ in self._listen.notifies(timeout=timeout, stop_after=1):
            woke = True
        if woke:  # drain what is already queued: one read serves every notification sent so far
            for _ in self._listen.notifies(timeout=0.0):
                pass
        return woke

    def load(self) -> tuple[CRMTables, set[int]]:
        """The whole CRM and the seqs of the outbox rows pending at that moment, from ONE snapshot.

        Why one snapshot: those pending events are already reflected in the tables read, so the worker must not
        apply them again (re-applying an older version of a row on top of a newer one would regress it until a
        later batch); events committed after the snapshot are not in it and must be applied. Rows that break
        the contract are quarantined (under `quarantine_dir`), not fatal: the worker must come up anyway."""
        quarantine = self.quarantine_dir or tempfile.mkdtemp(prefix="fulqrun-cdc-quarantine-")
        with connect(self.dsn) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            with conn.transaction():
                snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
                pending = {r[0] for r in conn.execute(f"SELECT seq FROM {CDC_SCHEMA}.outbox").fetchall()}
                source = PostgresSource(
                    self.dsn, self.schema, on_error="quarantine", quarantine_dir=quarantine, snapshot=snapshot
                )
                tables = source.load()
        if source.report is not None and source.report.problems:
            log.warning("CRM load quarantined rows (table -> reason -> rows): %s", source.report.counts())
        return tables, pending

    def watermark(self) -> int:
        """The sequence's current value: no event ever had a larger seq, so writes stamped from here on are
        monotone across restarts."""
        row = self._conn.execute(
            f"SELECT last_value FROM {CDC_SCHEMA}.outbox_seq_seq"  # owned by the bigserial column
        ).fetchone()
        self._conn.rollback()
        return int(row[0]) if row else 0

    def _recover(self, err: psycopg.Error, operation: str) -> CDCError:
        """After a database error: a fresh connection for the next try, and an error naming the operation."""
        try:
            self._conn.close()
        finally:
            self._conn = connect(self.dsn)
        return CDCError(f"PostgreSQL failed while {operation} the outbox: {err}")

    def read(self, limit: int) -> RawBatch:
        """Up to `limit` committed outbox rows in seq order (not removed: see `ack`)."""
        try:
            rows = self._conn.execute(
                f"SELECT seq, table_name, op, row, old_key, committed_at FROM {CDC_SCHEMA}.outbox "
                "ORDER BY seq LIMIT %s",
                (limit,),
            ).fetchall()
            self._conn.rollback()  # end the read transaction: the next read must see rows committed since
        except psycopg.Error as err:
            raise self._recover(err, "reading") from err
        batch = RawBatch()
        for r in rows:
            parsed = parse_outbox_row(*r)
            (batch.events if isinstance(parsed, ChangeEvent) else batch.malformed).append(parsed)  # type: ignore[arg-type]
        return batch

    def ack(self, seqs: Sequence[int], dead_letters: Sequence[DeadLetter] = ()) -> None:
        """Delete consumed rows and record dead letters, atomically: a crash before this commit replays them."""
        try:
            self._ack(seqs, dead_letters)
        except psycopg.Error as err:
            raise self._recover(err, "acknowledging") from err

    def _ack(self, seqs: Sequence[int], dead_letters: Sequence[DeadLetter]) -> None:
        with self._conn.transaction():
            if dead_letters:
                with self._conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {CDC_SCHEMA}.dead_letter (seq, table_name, op, row, error, committed_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (seq) DO NOTHING",
                        [
                            (d.seq, d.table, d.op, json.dumps(d.row, default=str), d.error, d.committed_at)
                            for d in dead_letters
                        ],
                    )
            if seqs:
                self._conn.execute(f"DELETE FROM {CDC_SCHEMA}.outbox WHERE seq = ANY(%s)", (list(seqs),))

    def dead_letters(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            f"SELECT seq, table_name, op, row, error FROM {CDC_SCHEMA}.dead_letter ORDER BY seq"
        ).fetchall()
        self._conn.rollback()
        return [dict(zip(("seq", "table", "op", "row", "error"), r, strict=True)) for r in rows]

    def close(self) -> None:
        for conn in (getattr(self, "_listen", None), getattr(self, "_conn", None)):
            if conn is not None and not conn.closed:
                conn.close()
