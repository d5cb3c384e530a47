"""The CRM tables as code: `CRMTables`, each table's columns and the columns a source may lack.

Every table's columns are declared once, with their types and rules, in `schemas.CRM_SCHEMAS`; the column
lists here are read from it. The vocabulary (stages, roles, ...) is in `vocabulary.py`, and the checks that
enforce the schemas are in `validation.py` (`check_contract`, `validate_crm`), which builds on this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fulqrun_ml.data.schemas import CRM_SCHEMAS
from fulqrun_ml.data.vocabulary import UNKNOWN_DIRECTION

# Each table's columns in contract order, as the schemas declare them.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {name: table.columns for name, table in CRM_SCHEMAS.items()}

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
