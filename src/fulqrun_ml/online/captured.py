"""Which CRM tables change capture and the mirror carry: the required tables plus the optional event tables.

Why a module of its own: the MEDDPICC history (`meddpicc_events`) and the notes (`notes`) are optional tables
(`schemas.OPTIONAL_SCHEMAS`), kept out of `CRM_SCHEMAS` so that readers of the required tables work unchanged on
exports without them. Change capture must still carry them, or a MEDDPICC write or a new note would never reach
the deal's features in Redis. `cdc.py` and `mirror.py` look tables up here, so both treat an event table like
any other: captured by a trigger, typed by its contract, upserted by its declared key.
"""

from __future__ import annotations

from collections.abc import Collection

from fulqrun_ml.data.contract import EVENT_TABLE_COLUMNS, TABLE_COLUMNS
from fulqrun_ml.data.schemas import CRM_SCHEMAS, LOAD_ORDER, OPTIONAL_SCHEMAS, TableContract

# Every table a change event may name, with its contract and its columns (contract order).
CONTRACTS: dict[str, TableContract] = {**CRM_SCHEMAS, **OPTIONAL_SCHEMAS}
CAPTURED_COLUMNS: dict[str, tuple[str, ...]] = {**TABLE_COLUMNS, **EVENT_TABLE_COLUMNS}
EVENT_TABLES: tuple[str, ...] = tuple(OPTIONAL_SCHEMAS)


def default_capture(existing: Collection[str]) -> tuple[str, ...]:
    """The tables to capture by default: every required table, then the event tables the database has (a CRM
    without them is captured as before; `install_cdc` refuses a missing *required* table)."""
    return (*LOAD_ORDER, *(t for t in EVENT_TABLES if t in existing))
