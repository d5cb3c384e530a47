"""The CRM data contract (../shared/CRM_DATA.md) as code: table names, columns and enumerations.

The column names are the CRM's own, so a real export loads without renaming. The data-layer issue
grows this into full typed schemas; the walking skeleton checks presence of tables and columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fulqrun_ml.errors import DataContractError

OPEN_STAGES: tuple[str, ...] = ("prospecting", "qualifying", "proposal", "negotiation")
CLOSED_STAGES: tuple[str, ...] = ("closed_won", "closed_lost")
STAGES: tuple[str, ...] = OPEN_STAGES + CLOSED_STAGES
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
    ),
    "stage_history": ("opportunity_id", "from_stage", "to_stage", "changed_at"),
}


@dataclass(frozen=True)
class CRMTables:
    """The CRM's tables as DataFrames, plus the moment they were extracted.

    `extracted_at` matters for point-in-time work: deals still open at that moment have no label yet.
    """

    organizations: pd.DataFrame
    users: pd.DataFrame
    companies: pd.DataFrame
    contacts: pd.DataFrame
    opportunities: pd.DataFrame
    activities: pd.DataFrame
    stage_history: pd.DataFrame
    extracted_at: pd.Timestamp

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)


def check_contract(tables: CRMTables) -> None:
    """Raise DataContractError naming every missing column and every unknown stage."""
    problems: list[str] = []
    for name, columns in TABLE_COLUMNS.items():
        frame = tables.table(name)
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            problems.append(f"table '{name}' is missing columns {missing}")
    if "stage" in tables.opportunities.columns:
        unknown = sorted(set(tables.opportunities["stage"].dropna()) - set(STAGES))
        if unknown:
            problems.append(f"table 'opportunities' column 'stage' has unknown values {unknown}")
    if problems:
        raise DataContractError("; ".join(problems))
