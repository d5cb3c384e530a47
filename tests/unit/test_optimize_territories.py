"""Territory design: the MILP's optimum equals brute force on a tiny book, every constraint holds on the
output, and infeasible or bad input is explained by field / binding constraint instead of a solver trace."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator_geo import haversine_km
from fulqrun_ml.optimize.metrics import coefficient_of_variation, gini
from fulqrun_ml.optimize.problem import InfeasibleError, OptimizeError
from fulqrun_ml.optimize.territories import TerritoryConfig, design_territories


def tiny_book(n_accounts: int = 7, n_reps: int = 3, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    reps = pd.DataFrame(
        {
            "rep_id": [f"r{i}" for i in range(n_reps)],
            "home_latitude": rng.uniform(40, 42, n_reps),
            "home_longitude": rng.uniform(-75, -73, n_reps),
            "capacity_hours": np.full(n_reps, 100.0),
            "travel_cost_per_km": np.full(n_reps, 0.5),
        }
    )
    lat, lon = rng.uniform(40, 42, n_accounts), rng.uniform(-75, -73, n_accounts)
    accounts = pd.DataFrame(
        {
            "company_id": [f"a{i}" for i in range(n_accounts)],
            "latitude": lat,
            "longitude": lon,
            "grid_cell": [f"{int(a // 0.5)}_{int(b // 0.5)}" for a, b in zip(lat, lon, strict=True)],
            "potential": rng.uniform(1, 10, n_accounts),
            "workload": rng.uniform(1, 10, n_accounts),
            "visits": rng.uniform(0, 4, n_accounts),
            "current_rep": ["r0"] * (n_accounts - 2) + ["r1", "r2"],  # r0 overloaded today
        }
    )
    return accounts, reps


def objective(accounts: pd.DataFrame, reps: pd.DataFrame, owner: np.ndarray, cfg: TerritoryConfig) -> float:
    """The documented objective, computed independently of the model's matrices."""
    rows = pd.Index(reps["rep_id"]).get_indexer(owner)
    n = len(reps)
    pot = np.bincount(rows, accounts["potential"], minlength=n)
    work = np.bincount(rows, accounts["workload"], minlength=n)
    km = haversine_km(accounts["latitude"], accounts["longitude"], reps["home_latitude"].to_numpy()[rows],
                      reps["home_longitude"].to_numpy()[rows])  # fmt: skip
    cur = pd.Index(reps["rep_id"]).get_indexer(accounts["current_rep"])
    km_now = haversine_km(accounts["latitude"], accounts["longitude"], reps["home_latitude"].to_numpy()[cur],
                          reps["home_longitude"].to_numpy()[cur])  # fmt: skip
    baseline = float(accounts["workload"] @ km_now)
    return (
        cfg.weight_balance * np.abs(pot / pot.mean() - 1).mean()
        + cfg.weight_workload * np.abs(work / work.mean() - 1).mean()
        + cfg.weight_compactness * float(accounts["workload"] @ km) / baseline
        - cfg.weight_moved * np.mean(owner == accounts["current_rep"].to_numpy())
    )


def feasible(accounts: pd.DataFrame, reps: pd.DataFrame, owner: np.ndarray, cfg: TerritoryConfig) -> bool:
    rows = pd.Index(reps["rep_id"]).get_indexer(owner)
    n = len(reps)
    pot = np.bincount(rows, accounts["potential"], minlength=n)
    work = np.bincount(rows, accounts["workload"], minlength=n)
    today = np.bincount(
        pd.Index(reps["rep_id"]).get_indexer(accounts["current_rep"]), accounts["workload"], minlength=n
    )
    moved = np.mean(owner != accounts["current_rep"].to_numpy())
    locked = accounts.get("locked", pd.Series(False, index=accounts.index)).to_numpy(dtype=bool)
    return bool(
        (work <= np.maximum(reps["capacity_hours"].to_numpy(), today) + 1e-6).all()
        and moved <= cfg.max_moved_share + 1e-9
        and (cfg.balance_tolerance is None or (np.abs(pot / pot.mean() - 1) <= cfg.balance_tolerance + 1e-6).all())
        and (owner[locked] == accounts["current_rep"].to_numpy()[locked]).all()
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_milp_matches_brute_force(seed: int) -> None:
    accounts, reps = tiny_book(seed=seed)
    accounts["locked"] = [True] + [False] * (len(accounts) - 1)
    cfg = TerritoryConfig(max_moved_share=3 / 7, candidates=3, mip_rel_gap=0.0, weight_compactness=0.1)
    result = design_territories(accounts, reps, cfg)
    best = min(
        objective(accounts, reps, np.array(owner), cfg)
        for owner in itertools.product(reps["rep_id"], repeat=len(accounts))
        if feasible(accounts, reps, np.array(owner), cfg)
    )
    assert feasible(accounts, reps, result.owner, cfg)
    assert objective(accounts, reps, result.owner, cfg) == pytest.approx(best, abs=1e-6)


def test_every_constraint_holds_on_a_larger_book() -> None:
    accounts, reps = tiny_book(n_accounts=300, n_reps=8, seed=3)
    accounts["current_rep"] = np.where(np.arange(300) < 150, "r0", reps["rep_id"].to_numpy()[np.arange(300) % 8])
    accounts["locked"] = np.arange(300) % 25 == 0
    reps["capacity_hours"] = accounts["workload"].sum() / 8 * 1.3
    cfg = TerritoryConfig(max_moved_share=0.3, balance_tolerance=0.2, candidates=4)
    result = design_territories(accounts, reps, cfg)
    assert feasible(accounts, reps, result.owner, cfg)
    summary = result.summary()
    assert summary["moved_fraction"] <= 0.3 + 1e-9
    assert summary["after"]["potential_cv"] < summary["before"]["potential_cv"]
    assert summary["cv_reduction"] > 0.5


def test_aggregation_to_cells_keeps_the_moved_count_exact() -> None:
    accounts, reps = tiny_book(n_accounts=400, n_reps=6, seed=5)
    reps["capacity_hours"] = accounts["workload"].sum() / 6 * 1.5
    cfg = TerritoryConfig(max_moved_share=0.25, aggregate_above=100)
    result = design_territories(accounts, reps, cfg)
    assert result.aggregated and result.units < 400
    assert result.summary()["moved_fraction"] <= 0.25 + 1e-9
    assert feasible(accounts, reps, result.owner, cfg)


def test_infeasible_names_the_binding_constraints() -> None:
    accounts, reps = tiny_book(n_accounts=40, n_reps=4, seed=2)
    with pytest.raises(InfeasibleError) as caught:
        design_territories(accounts, reps, TerritoryConfig(balance_tolerance=0.01, max_moved_share=0.0))
    assert "max_moved_share" in caught.value.binding
    assert "max_moved_share" in str(caught.value)


def test_account_without_location_is_refused_by_name() -> None:
    accounts, reps = tiny_book()
    accounts.loc[2, "latitude"] = np.nan
    with pytest.raises(OptimizeError, match=r"field 'latitude': 1 accounts have no location.*a2"):
        design_territories(accounts, reps)


def test_capacity_below_workload_is_refused_before_solving() -> None:
    accounts, reps = tiny_book()
    reps["capacity_hours"] = 1.0
    with pytest.raises(InfeasibleError, match=r"capacity_hours.*below the accounts' total workload") as caught:
        design_territories(accounts, reps)
    assert caught.value.binding == ["capacity_hours"]


@pytest.mark.parametrize(
    ("setting", "value"), [("max_moved_share", 1.5), ("balance_tolerance", -0.1), ("candidates", 0)]
)
def test_bad_settings_name_their_field(setting: str, value: float) -> None:
    with pytest.raises(OptimizeError, match=f"field '{setting}'"):
        TerritoryConfig(**{setting: value})


def test_balance_metrics() -> None:
    assert coefficient_of_variation(np.array([1.0, 1.0, 1.0])) == 0.0
    assert coefficient_of_variation(np.array([0.0, 2.0])) == pytest.approx(1.0)
    assert gini(np.array([1.0, 1.0, 1.0, 1.0])) == pytest.approx(0.0)
    assert gini(np.array([0.0, 0.0, 0.0, 4.0])) == pytest.approx(0.75)  # (n - 1) / n for one holder
