"""The accounts and reps tables the solvers read, built from the simulator or from a user's CRM export.

Simulator: `simulator_geo` supplies locations, rep profiles, the current book and the skill-aware deal history.
A user's CRM: the contract has no coordinates, so they come from an optional `account_locations` file
(Parquet or CSV: company_id, latitude, longitude[, region, grid_cell, owner_id]) and rep profiles from an
optional `rep_profiles` file (rep_id, home_latitude, home_longitude, capacity_hours, travel_cost_per_km).
The rules when they are absent (docs/optimize.md):
- no locations file, or an account missing from it: refused with an error naming the field (`latitude`) and
  the accounts, because territories and travel need coordinates;
- no grid_cell: computed from the coordinates with `cell_degrees`;
- no owner_id: the rep on the account's most recent deal, else the rep whose home base is nearest;
- no rep profiles: a rep's home is the workload-weighted centre of the accounts of its most recent deals,
  capacity is the book's workload x `capacity_slack` split evenly, travel cost is `travel_cost_per_km`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_geo import GeoWorld, grid_cells, haversine_km, simulate_geography
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.optimize.estimates import account_estimates, closed_deals
from fulqrun_ml.optimize.problem import REP_COLUMNS, OptimizeError


@dataclass
class OptimizeInputs:
    """Everything a command solves on; `world` is the simulator's truth (None for a real CRM)."""

    accounts: pd.DataFrame
    reps: pd.DataFrame
    deals: pd.DataFrame
    tables: CRMTables
    world: GeoWorld | None = None
    latent: pd.DataFrame | None = None  # the simulator's per-deal truth (outcomes of open deals), evaluation only
    # Where `accounts.potential` came from (model_potential.apply_potential): every summary records it.
    potential: dict = field(default_factory=lambda: {"source": "estimates", "terms": "estimates.account_estimates"})


def simulated_inputs(data: dict) -> OptimizeInputs:
    """A simulated CRM (`data.simulate` goes to simulate_crm) with its geography and estimates."""
    crm = simulate_crm(**data.get("simulate", {}))
    world = simulate_geography(
        crm, seed=int(data.get("geo_seed", 0)), cell_degrees=float(data.get("cell_degrees", 0.5))
    )
    estimates = account_estimates(crm.tables, world.deal_outcomes, int(data.get("window_days", 365)),
                                  data.get("activity_minutes"))  # fmt: skip
    accounts = world.accounts.drop(columns=["industry", "size"]).merge(estimates, on="company_id")
    return OptimizeInputs(_lock(accounts, data), world.reps.copy(), world.deal_outcomes, crm.tables, world, crm.latent)


def _read_table(path: Path, field: str) -> pd.DataFrame:
    if not path.is_file():
        raise OptimizeError(field, f"file {path} does not exist")
    return pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)


def _lock(accounts: pd.DataFrame, data: dict) -> pd.DataFrame:
    locked = set(map(str, data.get("locked_accounts") or []))
    unknown = locked - set(accounts["company_id"].astype(str))
    if unknown:
        raise OptimizeError("locked_accounts", f"unknown company ids {sorted(unknown)[:3]}")
    return accounts.assign(locked=accounts["company_id"].astype(str).isin(locked))


def crm_inputs(crm_dir: Path, locations: Path | None, rep_profiles: Path | None, data: dict) -> OptimizeInputs:
    """A user's CRM export directory plus the optional location and rep-profile files (rules above)."""
    tables = DirectorySource(crm_dir).load()
    if locations is None:
        raise OptimizeError("latitude", "a real CRM has no coordinates: pass --locations with an account_locations "
                            "file (company_id, latitude, longitude[, region, grid_cell, owner_id])")  # fmt: skip
    located = _read_table(locations, "locations")
    for column in ("company_id", "latitude", "longitude"):
        if column not in located.columns:
            raise OptimizeError(column, f"the locations file {locations} has no '{column}' column")
    estimates = account_estimates(tables, None, int(data.get("window_days", 365)), data.get("activity_minutes"))
    accounts = estimates.merge(located, on="company_id", how="left")
    if "grid_cell" not in accounts or accounts["grid_cell"].isna().all():
        accounts["grid_cell"] = grid_cells(accounts["latitude"].fillna(0), accounts["longitude"].fillna(0),
                                           float(data.get("cell_degrees", 0.5)))  # fmt: skip
    reps_users = tables.users[tables.users["role"] == "rep"]["id"].to_numpy()
    opps = tables.opportunities.sort_values("created_at", kind="stable")
    last_rep = opps.groupby("company_id")["assigned_to"].last()
    owner = accounts["owner_id"] if "owner_id" in accounts else pd.Series(np.nan, index=accounts.index, dtype=object)
    accounts["current_rep"] = owner.fillna(accounts["company_id"].map(last_rep))
    reps = _rep_profiles(rep_profiles, accounts, reps_users, data)
    no_owner = accounts["current_rep"].isna().to_numpy() | ~accounts["current_rep"].isin(reps["rep_id"]).to_numpy()
    if no_owner.any() and accounts["latitude"].notna().all():
        km = haversine_km(
            accounts.loc[no_owner, "latitude"].to_numpy()[:, None],
            accounts.loc[no_owner, "longitude"].to_numpy()[:, None],
            reps["home_latitude"].to_numpy()[None, :],
            reps["home_longitude"].to_numpy()[None, :],
        )
        accounts.loc[no_owner, "current_rep"] = reps["rep_id"].to_numpy()[km.argmin(axis=1)]  # fmt: skip
    return OptimizeInputs(_lock(accounts, data), reps, closed_deals(tables), tables)


def _rep_profiles(path: Path | None, accounts: pd.DataFrame, rep_ids: np.ndarray, data: dict) -> pd.DataFrame:
    if path is not None:
        reps = _read_table(path, "rep_profiles")
        missing = [c for c in REP_COLUMNS if c not in reps.columns]
        if missing:
            raise OptimizeError(missing[0], f"the rep_profiles file {path} needs columns {list(REP_COLUMNS)}")
        return reps
    if len(rep_ids) == 0:
        raise OptimizeError("users.role", "the CRM has no users with role 'rep' and no rep_profiles file was given")
    weight = accounts["workload"].clip(lower=1e-6)
    centre = (
        accounts.assign(wlat=accounts["latitude"] * weight, wlon=accounts["longitude"] * weight, w=weight)
        .groupby("current_rep")[["wlat", "wlon", "w"]]
        .sum()
        .reindex(rep_ids)
    )
    fallback_lat, fallback_lon = accounts["latitude"].mean(), accounts["longitude"].mean()
    capacity = accounts["workload"].sum() * float(data.get("capacity_slack", 1.2)) / len(rep_ids)
    return pd.DataFrame(
        {
            "rep_id": rep_ids,
            "home_latitude": (centre["wlat"] / centre["w"]).fillna(fallback_lat).to_numpy(),
            "home_longitude": (centre["wlon"] / centre["w"]).fillna(fallback_lon).to_numpy(),
            "capacity_hours": capacity,
            "travel_cost_per_km": float(data.get("travel_cost_per_km", 0.5)),
        }
    )
