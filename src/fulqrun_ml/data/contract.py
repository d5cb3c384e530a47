"""The CRM data contract (../shared/CRM_DATA.md) as code: table names, columns and enumerations.

The column names are the CRM's own, so a real export loads without renaming. This module holds the
vocabulary (tables, columns, enumerations) and the `CRMTables` container; the typed, per-column
schemas live in `schemas.py` and the checks that enforce them in `validation.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

OPEN_STAGES: tuple[str, ...] = ("prospecting", "qualifying", "proposal", "negotiation")
CLOSED_STAGES: tuple[str, ...] = ("closed_won", "closed_lost")
STAGES: tuple[str, ...] = OPEN_STAGES + CLOSED_STAGES
# The PEAK stages as the CRM names them (values of `opportunities.peak_stage`).
PEAK_STAGES: tuple[str, ...] = ("prospecting", "engaging", "advancing", "key_decision")
USER_ROLES: tuple[str, ...] = ("rep", "manager", "admin")
LEAD_STATUSES: tuple[str, ...] = ("new", "contacted", "qualified", "unqualified", "converted")
# What an activity can be attached to (`activities.related_type`), and the table each one lives in.
RELATED_TABLE_OF: dict[str, str] = {
    "lead": "leads",
    "opportunity": "opportunities",
    "company": "companies",
    "contact": "contacts",
}
RELATED_TYPES: tuple[str, ...] = tuple(RELATED_TABLE_OF)
# The CRM's PEAK view of the same journey (prospecting, engaging, advancing, key_decision).
PEAK_STAGE_OF: dict[str, str] = {
    "prospecting": "prospecting",
    "qualifying": "engaging",
    "proposal": "advancing",
    "negotiation": "key_decision",
    "closed_won": "key_decision",
    "closed_lost": "key_decision",
}
# The CRM sets a deal's `probability` from its stage; this is the rep's guess the model must beat.
STAGE_DEFAULT_PROBABILITY: dict[str, float] = {
    "prospecting": 0.10,
    "qualifying": 0.25,
    "proposal": 0.50,
    "negotiation": 0.75,
    "closed_won": 1.0,
    "closed_lost": 0.0,
}
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "task", "note")
# Who started a touch (`activities.direction`): the customer (inbound) or the rep (outbound). Optional in an
# export; where a source has no such column or leaves it empty, the value is "unknown".
ACTIVITY_DIRECTIONS: tuple[str, ...] = ("inbound", "outbound", "unknown")
UNKNOWN_DIRECTION = "unknown"
MEDDPICC_FIELDS: tuple[str, ...] = (
    "metrics",
    "economic_buyer",
    "decision_criteria",
    "decision_process",
    "paper_process",
    "identify_pain",
    "implicate_pain",
    "champion",
    "competition",
)

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "organizations": ("id", "name", "created_at"),
    "users": ("id", "organization_id", "role", "manager_id", "region", "created_at"),
    "companies": (
        "id",
        "organization_id",
        "name",
        "industry",
        "size",
        "annual_revenue",
        "employee_count",
        "country",
        "created_at",
    ),
    "contacts": ("id", "company_id", "title", "email", "phone", "created_at"),
    "leads": (
        "id",
        "organization_id",
        "company_id",
        "source",
        "status",
        "score",
        "assigned_to",
        "created_at",
        "updated_at",
    ),
    "opportunities": (
        "id",
        "organization_id",
        "company_id",
        "contact_id",
        "assigned_to",
        "stage",
        "peak_stage",
        "value",
        "probability",
        "close_date",
        "created_at",
        "updated_at",
        *MEDDPICC_FIELDS,
        "meddpicc_score",
    ),
    "activities": (
        "id",
        "organization_id",
        "type",
        "status",
        "subject",
        "description",
        "related_type",
        "related_id",
        "created_by",
        "due_date",
        "created_at",
        "direction",
    ),
    "stage_history": ("opportunity_id", "from_stage", "to_stage", "changed_at"),
}


# Columns a source may lack, with the value that stands for "not recorded": validation adds the column
# (and fills its empty cells) with it, so an export from before the column existed still loads.
OPTIONAL_COLUMN_DEFAULTS: dict[str, dict[str, str]] = {"activities": {"direction": UNKNOWN_DIRECTION}}


def empty_table(name: str) -> pd.DataFrame:
    """A table with the contract's columns and no rows: what a source holds for a table the CRM lacks."""
    return pd.DataFrame({column: pd.Series(dtype=object) for column in TABLE_COLUMNS[name]})


@dataclass(frozen=True)
class CRMTables:
    """The CRM's tables as DataFrames, plus the moment they were extracted.

    `extracted_at` matters for point-in-time work: deals still open at that moment have no label yet.
    `leads` defaults to an empty table so sources without leads (the skeleton simulator, older exports)
    still construct a complete CRM; every table named in TABLE_COLUMNS is always present.
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

    def table(self, name: str) -> pd.DataFrame:
        if name not in TABLE_COLUMNS:
            raise KeyError(f"unknown CRM table '{name}'; the contract has {list(TABLE_COLUMNS)}")
        return getattr(self, name)

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every table by name, in TABLE_COLUMNS order."""
        return {name: self.table(name) for name in TABLE_COLUMNS}


def check_contract(tables: CRMTables) -> None:
    """Raise DataContractError (a `CRMValidationError`) listing every contract violation in `tables`.

    Delegates to `validation.validate_crm`, the full typed check (columns, types, enumerations, ids,
    foreign keys, timestamps, money). Imported here lazily because validation builds on this module.
    """
    from fulqrun_ml.data.validation import validate_crm

    validate_crm(tables, on_error="fail")
