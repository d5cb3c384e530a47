"""An in-memory copy of the CRM (`CRMTables`) kept current by applying change events in seq order.

Why a full mirror instead of incremental counters: the streaming features must come from the SAME
definitions as training (`compute_deal_features`, `compute_lead_features`), not from a second, incremental
implementation that could drift. Keeping the CRM's rows and recomputing the touched entities with those
functions gives counts, recency, days in stage and rep aggregates that are equal to an offline computation by
construction, and makes replay idempotent: applying an event is an upsert or delete keyed by the table's
primary key, so applying it twice leaves the same rows.

Every event's row is typed by the contract's own table check (`data/table_checks.check_table`, the one a
fresh load runs), so the mirror's frames have exactly the dtypes and column order that a fresh load has, and
its row order (sorted by key, as `PostgresSource` reads them) except for `APPEND_ORDER_TABLES`, whose changed
rows go to the end. A row that breaks the contract is absent from the mirror
(as a quarantining load would leave it out), and its events come back as dead letters whose message names the
field. Within one batch a key's events collapse to its last state before typing, so an insert followed by
updates costs one row.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import OPTIONAL_COLUMN_DEFAULTS, CRMTables
from fulqrun_ml.data.schemas import Kind
from fulqrun_ml.data.table_checks import check_table
from fulqrun_ml.errors import DataContractError
from fulqrun_ml.online.captured import CAPTURED_COLUMNS, CONTRACTS
from fulqrun_ml.online.cdc import ChangeEvent, DeadLetter

log = logging.getLogger(__name__)

Key = tuple[Any, ...]
# Event rows are typed without the "not after extraction" rule: a committed row is the CRM's truth even when
# its writer's clock runs ahead of ours (a fresh load made later would accept it too).
NO_EXTRACTION_LIMIT = pd.Timestamp("2200-01-01", tz="UTC")
# Tables kept in arrival order instead of key order. Every feature reads activities through counts, sums and
# maxima (order-free; the skew tests compare against a fresh, key-ordered load), and re-sorting the largest
# table on every micro-batch was the worker's biggest fixed cost (~30 ms at 177k rows, growing with the CRM).
# The MEDDPICC writes and notes likewise: their builders sort by time themselves or only count.
APPEND_ORDER_TABLES = frozenset({"activities", "meddpicc_events", "notes"})


@dataclass(frozen=True)
class RowChange:
    """One key's net change in a batch: the row before (None: absent) and after (None: deleted or refused),
    as contract-typed dicts, and the seqs of the events that made it."""

    table: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    seqs: tuple[int, ...]


@dataclass
class MirrorBatch:
    """What applying a batch did: the net row changes, and the events refused (with reasons)."""

    changes: list[RowChange] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)


def normalise_key(table: str, values: dict[str, Any]) -> Key:
    """A primary key comparable between raw event rows (JSON strings) and typed mirror rows: ids lowercase,
    timestamps as UTC Timestamps at microseconds. Raises KeyError naming a missing key field."""
    contract = CONTRACTS[table]
    parts = []
    for name in contract.key:
        if name not in values or values[name] is None:
            raise KeyError(name)
        value = values[name]
        kind = contract.field(name).kind
        if kind is Kind.ID:
            value = str(value).lower()
        elif kind is Kind.TIMESTAMP:
            value = pd.Timestamp(value)
            value = (value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")).floor("us")
        else:
            value = str(value)
        parts.append(value)
    return tuple(parts)


class CRMMirror:
    """The CRM as of the last applied event. `tables` is a `CRMTables` equal to a fresh validated load."""

    def __init__(self, tables: CRMTables) -> None:
        # Sorted by primary key, as PostgresSource reads them, so the mirror and a fresh load are frame-equal.
        self._frames = {
            name: getattr(tables, name).sort_values(list(CONTRACTS[name].key), kind="stable").reset_index(drop=True)
            for name in CAPTURED_COLUMNS
        }
        self._tables = dataclasses.replace(tables, **self._frames)

    @property
    def tables(self) -> CRMTables:
        return self._tables

    def row_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self._frames.items()}

    def apply(self, events: Sequence[ChangeEvent], reflected: Iterable[int] = ()) -> MirrorBatch:
        """Apply `events` (in seq order) as upserts and deletes by primary key.

        `reflected`: seqs whose effect the mirror's starting snapshot already holds (events still in the outbox
        when it was loaded). They are not applied again, but they still come back as changes, so the worker
        recomputes the entities they touched (a crash may have stopped it before their Redis write)."""
        reflected = set(reflected)
        result = MirrorBatch()
        # (table, key) -> (final raw row or None for absent, the events that led there)
        net: dict[tuple[str, Key], tuple[dict[str, Any] | None, list[ChangeEvent]]] = {}

        def mark(table: str, key: Key, row: dict[str, Any] | None, event: ChangeEvent) -> None:
            net[(table, key)] = (row, [*net.get((table, key), (None, []))[1], event])

        for event in sorted(events, key=lambda e: e.seq):
            try:
                key = normalise_key(event.table, event.row)
                old = normalise_key(event.table, event.old_key) if event.old_key else key
            except KeyError as err:
                result.dead_letters.append(_dead(event, f"field '{err.args[0]}': missing from the {event.table} row"))
                continue
            except (TypeError, ValueError) as err:
                result.dead_letters.append(_dead(event, f"a key field of the {event.table} row is unreadable: {err}"))
                continue
            if event.seq in reflected:
                after = None if event.op == "DELETE" else event.row
                result.changes.append(RowChange(event.table, event.row, after, (event.seq,)))
                continue
            if old != key:  # an UPDATE that changed the primary key: the old key's row goes
                mark(event.table, old, None, event)
            mark(event.table, key, None if event.op == "DELETE" else event.row, event)
        by_table: dict[str, dict[Key, tuple[dict[str, Any] | None, list[ChangeEvent]]]] = {}
        for (table, key), entry in net.items():
            by_table.setdefault(table, {})[key] = entry
        for table, entries in by_table.items():
            self._apply_table(table, entries, result)
        if by_table:
            self._tables = dataclasses.replace(self._tables, **{t: self._frames[t] for t in by_table})
        return result

    def _apply_table(
        self, table: str, entries: dict[Key, tuple[dict[str, Any] | None, list[ChangeEvent]]], result: MirrorBatch
    ) -> None:
        contract = CONTRACTS[table]
        frame = self._frames[table]
        typed, refused = _type_rows(table, {key: row for key, (row, _) in entries.items() if row is not None})
        for key, error in refused.items():
            events = entries[key][1]
            result.dead_letters.extend(_dead(event, error) for event in events)
            log.warning("CDC event(s) %s on %s refused: %s", [e.seq for e in events], table, error)
        touched = _in_keys(frame, contract.key, set(entries))
        before_rows = {normalise_key(table, r): r for r in frame[touched].to_dict("records")}
        after_rows = {normalise_key(table, r): r for r in typed.to_dict("records")} if typed is not None else {}
        kept = frame[~touched]
        if typed is not None and len(typed):
            kept = typed if not len(kept) else pd.concat([kept, typed])
        if table in APPEND_ORDER_TABLES:
            self._frames[table] = kept.reset_index(drop=True)
        else:
            self._frames[table] = kept.sort_values(list(contract.key), kind="stable").reset_index(drop=True)
        for key, (_, events) in entries.items():
            seqs = tuple(e.seq for e in events)
            result.changes.append(RowChange(table, before_rows.get(key), after_rows.get(key), seqs))


def _dead(event: ChangeEvent, error: str) -> DeadLetter:
    return DeadLetter(event.seq, event.table, event.op, event.row, error, event.committed_at)


def _in_keys(frame: pd.DataFrame, key: Sequence[str], keys: set[Key]) -> np.ndarray:
    """Boolean mask of the frame's rows whose primary key is in `keys` (normalised keys)."""
    if not len(frame):
        return np.zeros(0, dtype=bool)
    first = frame[key[0]].isin([k[0] for k in keys]).to_numpy(dtype=bool, copy=True)
    if len(key) == 1:
        return first
    # Compound keys: the exact tuple test only on rows whose first key part matches (a Python loop over the
    # whole table cost ~50 ms per batch at 28k MEDDPICC writes).
    rows = np.flatnonzero(first)
    candidates = frame.iloc[rows]
    first[rows] = np.fromiter(
        (tuple(r) in keys for r in zip(*(candidates[k] for k in key), strict=True)), dtype=bool, count=len(rows)
    )
    return first


def _type_rows(table: str, rows: dict[Key, dict[str, Any]]) -> tuple[pd.DataFrame | None, dict[Key, str]]:
    """The rows as a frame typed by the contract (order: contract columns), and the keys refused, with why."""
    if not rows:
        return None, {}
    columns = CAPTURED_COLUMNS[table]
    defaults = OPTIONAL_COLUMN_DEFAULTS.get(table, {})
    refused: dict[Key, str] = {}
    records: list[dict[str, Any]] = []
    keys: list[Key] = []
    for key, row in rows.items():
        missing = [c for c in columns if c not in row and c not in defaults]
        if missing:
            refused[key] = f"field '{missing[0]}': missing from the {table} row (fields missing: {missing})"
            continue
        record = {c: row.get(c) for c in columns}
        for column, default in defaults.items():
            if record[column] is None:
                record[column] = default
        records.append(record)
        keys.append(key)
    if not records:
        return None, refused
    raw = pd.DataFrame.from_records(records, columns=list(columns)).astype(object)
    try:
        typed, problems = check_table(CONTRACTS[table], raw, NO_EXTRACTION_LIMIT)
    except DataContractError as err:
        problems, typed = [], None
        whole = str(err)
    else:
        whole = None
    if whole is not None or any(p.row is None for p in problems):
        # A column failed as a whole: type row by row, so one bad row does not take the batch with it.
        return _type_each(table, dict(zip(keys, records, strict=True)), refused)
    bad_rows: dict[int, str] = {}
    for problem in problems:
        bad_rows.setdefault(int(problem.row), str(problem))  # type: ignore[arg-type]
    for row, message in bad_rows.items():
        refused[keys[row]] = message
    good = [i for i in range(len(keys)) if i not in bad_rows]
    return typed.iloc[good].reset_index(drop=True), refused  # type: ignore[union-attr]


def _type_each(
    table: str, rows: dict[Key, dict[str, Any]], refused: dict[Key, str]
) -> tuple[pd.DataFrame | None, dict[Key, str]]:
    parts = []
    for key, record in rows.items():
        raw = pd.DataFrame.from_records([record], columns=list(CAPTURED_COLUMNS[table])).astype(object)
        try:
            typed, problems = check_table(CONTRACTS[table], raw, NO_EXTRACTION_LIMIT)
        except DataContractError as err:
            refused[key] = f"{table}: {err}"
            continue
        if problems:
            refused[key] = str(problems[0])
        else:
            parts.append(typed)
    return (pd.concat(parts, ignore_index=True) if parts else None), refused
