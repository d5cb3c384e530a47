"""The CRM tables as code: `CRMTables`, each table's columns and the columns a source may lack.

Every table's columns are declared once, with their types and rules, in `schemas.CRM_SCHEMAS`; the column
lists here are read from it. The vocabulary (stages, roles, ...) is in `vocabulary.py`, and the checks that
enforce the schemas are in `validation.py` (`check_contract`, `validate_crm`), which builds on this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fulqrun_ml.data.schemas import CRM_SCHEMAS, OPTIONAL_SCHEMAS, Kind
from fulqrun_ml.data.vocabulary import UNKNOWN_DIRECTION

# Each table's columns in contract order, as the schemas declare them.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {name: table.columns for name, table in CRM_SCHEMAS.items()}

# Columns a source may lack, with the value that stands for "not recorded": validation adds the column
# (and fills its empty cells) with it, so an export from before the column existed still loads.
OPTIONAL_COLUMN_DEFAULTS: dict[str, dict[str, str]] = {
    "activities": {"direction": UNKNOWN_DIRECTION},
    "opportunities": {"competitor": "unknown", "loss_reason": "unknown", "product": "unknown"},
}

# Slowly changing attributes, kept SCD type-2 style: one row per version of an entity's tracked fields, valid
# from `valid_from` until that entity's next row. Why: the CRM overwrites these fields in place, so the
# `companies` / `users` rows hold today's values, which a past snapshot must not read. Optional: an export
# without them loads with empty tables, and the feature builders then fall back to the current row, flagged
# "current value, not point-in-time" by the leakage audit (`features/audit.py`, `data/history.py`).
HISTORY_COLUMNS: dict[str, tuple[str, ...]] = {
    "company_history": ("company_id", "industry", "size", "annual_revenue", "employee_count", "country", "valid_from"),
    "user_history": ("user_id", "region", "valid_from"),
    # A deal's amount and expected close date as the rep revised them: slippage (close-date pushes, amount
    # changes) is only measurable, point-in-time, from these versions (v3).
    "opportunity_history": ("opportunity_id", "value", "close_date", "valid_from"),
}
# History table -> (the table whose rows it versions, keyed there by `id`; the history's own key column).
HISTORY_OF: dict[str, tuple[str, str]] = {
    "company_history": ("companies", "company_id"),
    "user_history": ("users", "user_id"),
    "opportunity_history": ("opportunities", "opportunity_id"),
}


# Optional event tables (`schemas.OPTIONAL_SCHEMAS`: MEDDPICC writes, free-text notes). An export without them
# loads with empty ones; the features that read them are then absent (their builders say so).
EVENT_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {name: table.columns for name, table in OPTIONAL_SCHEMAS.items()}
_EMPTY_DTYPE = {Kind.TIMESTAMP: "datetime64[us, UTC]", Kind.INTEGER: "Int64"}


def empty_events(name: str) -> pd.DataFrame:
    """An optional event table with no rows (a CRM that records none), with the dtypes readers compare against."""
    return pd.DataFrame(
        {f.name: pd.Series(dtype=_EMPTY_DTYPE.get(f.kind, object)) for f in OPTIONAL_SCHEMAS[name].fields}
    )


def empty_table(name: str) -> pd.DataFrame:
    """A table with the contract's columns and no rows: what a source holds for a table the CRM lacks."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in TABLE_COLUMNS[name]})


def empty_history(name: str) -> pd.DataFrame:
    """A history table with no rows (a CRM that records no versions): builders read the current rows."""
    columns = {column: pd.Series(dtype=object) for column in HISTORY_COLUMNS[name]}
    return pd.DataFrame(columns | {"valid_from": pd.Series(dtype="datetime64[us, UTC]")})


@dataclass(frozen=True)
class CRMTables:
    """The CRM's tables as DataFrames, plus the moment they were extracted.

    `extracted_at` matters for point-in-time work: deals still open at that moment have no label yet.
    `leads` defaults to an empty table so sources without leads (the skeleton simulator, older exports)
    still construct a complete CRM; every table named in TABLE_COLUMNS is always present. The history tables
    (HISTORY_COLUMNS) default to empty for the same reason: sources and callers that predate them still work.
    """

    organizations: pd.DataFrame
    users: pd.DataFrame
    companies: pd.DataFrame
    contacts: pd.DataFrame
    opportunities: pd.DataFrame
    activities: pd.DataFrame
    stage_history: pd.DataFrame
    extracted_at: pd.Timestamp
    leads: pd.DataFrame = field(default_factory=lambda: empty_table("leads"))
    company_history: pd.DataFrame = field(default_factory=lambda: empty_history("company_history"))
    user_history: pd.DataFrame = field(default_factory=lambda: empty_history("user_history"))
    meddpicc_events: pd.DataFrame = field(default_factory=lambda: empty_events("meddpicc_events"))
    notes: pd.DataFrame = field(default_factory=lambda: empty_events("notes"))
    opportunity_history: pd.DataFrame = field(default_factory=lambda: empty_history("opportunity_history"))
    lead_events: pd.DataFrame = field(default_factory=lambda: empty_events("lead_events"))
    account_states: pd.DataFrame = field(default_factory=lambda: empty_events("account_states"))
    surveys: pd.DataFrame = field(default_factory=lambda: empty_events("surveys"))

    def table(self, name: str) -> pd.DataFrame:
        if name not in TABLE_COLUMNS:
            raise KeyError(f"unknown CRM table '{name}'; the contract has {list(TABLE_COLUMNS)}")
        return getattr(self, name)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every table by name, in TABLE_COLUMNS order."""
        return {name: self.table(name) for name in TABLE_COLUMNS}

    def history(self, name: str) -> pd.DataFrame:
        if name not in HISTORY_COLUMNS:
            raise KeyError(f"unknown history table '{name}'; the contract has {list(HISTORY_COLUMNS)}")
        return getattr(self, name)

    def history_frames(self) -> dict[str, pd.DataFrame]:
        """Every history table by name (empty ones included), in HISTORY_COLUMNS order."""
        return {name: self.history(name) for name in HISTORY_COLUMNS}

    def event_frames(self) -> dict[str, pd.DataFrame]:
        """Every optional event table by name (empty ones included), in EVENT_TABLE_COLUMNS order."""
        return {name: getattr(self, name) for name in EVENT_TABLE_COLUMNS}


def stack_organizations(parts: list[CRMTables]) -> CRMTables:
    """One multi-tenant CRM from several organisations' CRMs: every table concatenated, extracted at the latest
    part's extraction. Why: the simulator makes one organisation; cross-organisation analytics (the peer
    benchmark) and their tests need an export holding several, as a multi-tenant CRM does. Ids must not collide
    (the simulator's are UUIDs drawn from each seed)."""
    names = [*parts[0].frames(), *parts[0].history_frames(), *parts[0].event_frames()]
    tables = {name: pd.concat([getattr(p, name) for p in parts], ignore_index=True) for name in names}
    return CRMTables(**tables, extracted_at=max(p.extracted_at for p in parts))
