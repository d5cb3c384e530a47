"""The two tables every optimisation reads (accounts, reps), checked so that bad input names its field.

Why one checker: territories and assignment read the same columns, and a missing location or a capacity
shortfall must be reported as the user's data problem before any solver runs, never as a solver trace.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

ACCOUNT_COLUMNS = ("company_id", "latitude", "longitude", "grid_cell", "potential", "workload", "current_rep")
REP_COLUMNS = ("rep_id", "home_latitude", "home_longitude", "capacity_hours", "travel_cost_per_km")


class OptimizeError(FulqrunMLError):
    """Bad optimisation input; `field` names the column or setting at fault."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"field '{field}': {reason}")
        self.field = field
        self.reason = reason


class InfeasibleError(FulqrunMLError):
    """No plan meets every constraint; `binding` names the constraint families that cannot all hold."""

    def __init__(self, binding: list[str], reason: str) -> None:
        super().__init__(reason)
        self.binding = binding


def _examples(ids: pd.Series, mask: np.ndarray) -> str:
    return ", ".join(map(str, ids[mask].head(3).tolist()))


def _numeric(frame: pd.DataFrame, column: str, key: str, minimum: float | None = None) -> None:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        raise OptimizeError(
            column, f"{int(bad.sum())} rows are missing or not numbers (e.g. {key} {_examples(frame[key], bad)})"
        )
    if minimum is not None and (values < minimum).any():
        low = values < minimum
        raise OptimizeError(
            column, f"must be >= {minimum}; {int(low.sum())} rows are below (e.g. {_examples(frame[key], low)})"
        )
    frame[column] = values


def check_reps(reps: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of the reps table (one row per rep, home base, capacity, travel cost)."""
    missing = [c for c in REP_COLUMNS if c not in reps.columns]
    if missing:
        raise OptimizeError(missing[0], f"the reps table needs columns {list(REP_COLUMNS)}; missing {missing}")
    if reps.empty:
        raise OptimizeError("rep_id", "there are no reps to assign accounts to")
    reps = reps.reset_index(drop=True).copy()
    if reps["rep_id"].isna().any() or reps["rep_id"].duplicated().any():
        raise OptimizeError("rep_id", "every rep needs exactly one row (missing or duplicated ids)")
    for column in ("home_latitude", "home_longitude"):
        _numeric(reps, column, "rep_id")
    _numeric(reps, "capacity_hours", "rep_id", minimum=0.0)
    _numeric(reps, "travel_cost_per_km", "rep_id", minimum=0.0)
    return reps


def check_accounts(accounts: pd.DataFrame, reps: pd.DataFrame) -> pd.DataFrame:
    """A checked copy of the accounts table; every account needs a location, potential, workload and owner."""
    missing = [c for c in ACCOUNT_COLUMNS if c not in accounts.columns]
    if missing:
        raise OptimizeError(missing[0], f"the accounts table needs columns {list(ACCOUNT_COLUMNS)}; missing {missing}")
    if accounts.empty:
        raise OptimizeError("company_id", "there are no accounts to optimise")
    accounts = accounts.reset_index(drop=True).copy()
    if accounts["company_id"].isna().any() or accounts["company_id"].duplicated().any():
        raise OptimizeError("company_id", "every account needs exactly one row (missing or duplicated ids)")
    for column in ("latitude", "longitude"):
        absent = pd.to_numeric(accounts[column], errors="coerce").isna().to_numpy()
        if absent.any():
            example = _examples(accounts["company_id"], absent)
            raise OptimizeError(
                column,
                f"{int(absent.sum())} accounts have no location (e.g. company_id {example}); "
                "territories and assignment need latitude and longitude for every account: add them to the "
                "account_locations file or leave those accounts out",
            )
        _numeric(accounts, column, "company_id")
    if (accounts["latitude"].abs() > 90).any() or (accounts["longitude"].abs() > 180).any():
        raise OptimizeError("latitude", "latitude must lie in [-90, 90] and longitude in [-180, 180]")
    _numeric(accounts, "potential", "company_id", minimum=0.0)
    _numeric(accounts, "workload", "company_id", minimum=0.0)
    unknown = ~accounts["current_rep"].isin(reps["rep_id"]).to_numpy()
    if unknown.any():
        raise OptimizeError(
            "current_rep",
            f"{int(unknown.sum())} accounts are owned by a rep not in the reps table "
            f"(e.g. company_id {_examples(accounts['company_id'], unknown)})",
        )
    accounts["locked"] = accounts["locked"].fillna(False).astype(bool) if "locked" in accounts else False
    if "visits" not in accounts:
        accounts["visits"] = 0.0
    _numeric(accounts, "visits", "company_id", minimum=0.0)
    accounts["grid_cell"] = accounts["grid_cell"].astype(str)
    return accounts


def check_capacity(accounts: pd.DataFrame, reps: pd.DataFrame) -> None:
    """Refuse before solving when the reps cannot carry the book at all (the binding constraint is obvious)."""
    need, have = float(accounts["workload"].sum()), float(reps["capacity_hours"].sum())
    if have < need:
        raise InfeasibleError(
            ["capacity_hours"],
            f"field 'capacity_hours': the reps' total capacity {have:,.0f} h is below the accounts' total workload "
            f"{need:,.0f} h; add reps or capacity, or drop accounts (short by {need - have:,.0f} h)",
        )
