"""Rep-account assignment: optimum equals brute force, capacities / locks / move limit hold, the greedy baseline
is never better on the solver's objective, and shrinkage behaves as empirical Bayes should."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.optimize.assignment import AssignmentConfig, greedy_assignment, solve_assignment, travel_matrix
from fulqrun_ml.optimize.estimates import shrink_counts, shrink_rates
from fulqrun_ml.optimize.problem import InfeasibleError, OptimizeError
from tests.unit.test_optimize_territories import tiny_book


def _score(accounts: pd.DataFrame, reps: pd.DataFrame, revenue: np.ndarray, owner: np.ndarray) -> float:
    rows = pd.Index(reps["rep_id"]).get_indexer(owner)
    net = revenue - travel_matrix(accounts, reps)
    return float(net[rows, np.arange(len(owner))].sum())


def _fits(accounts: pd.DataFrame, reps: pd.DataFrame, owner: np.ndarray) -> bool:
    load = accounts["workload"].groupby(owner).sum().reindex(reps["rep_id"], fill_value=0.0)
    return bool((load.to_numpy() <= reps["capacity_hours"].to_numpy() + 1e-6).all())


def book(seed: int, n_accounts: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    accounts, reps = tiny_book(n_accounts=n_accounts, seed=seed)
    reps["capacity_hours"] = accounts["workload"].sum() * np.array([0.4, 0.35, 0.45])
    rng = np.random.default_rng(seed + 100)
    revenue = rng.uniform(0, 1000, size=(3, n_accounts))
    return accounts, reps, revenue


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_optimum_equals_brute_force(seed: int) -> None:
    accounts, reps, revenue = book(seed)
    result = solve_assignment(accounts, reps, revenue, AssignmentConfig(mip_rel_gap=0.0))
    best = max(
        _score(accounts, reps, revenue, np.array(owner))
        for owner in itertools.product(reps["rep_id"], repeat=len(accounts))
        if _fits(accounts, reps, np.array(owner))
    )
    assert _fits(accounts, reps, result.owner)
    assert _score(accounts, reps, revenue, result.owner) == pytest.approx(best, rel=1e-9)
    greedy = greedy_assignment(accounts, reps, revenue)
    if _fits(accounts, reps, greedy):
        assert _score(accounts, reps, revenue, greedy) <= best + 1e-6


def test_locks_and_move_limit_hold() -> None:
    accounts, reps, revenue = book(4, n_accounts=40)
    reps["capacity_hours"] = accounts["workload"].sum() / 3 * 1.4
    accounts["current_rep"] = reps["rep_id"].to_numpy()[np.arange(40) % 3]
    accounts["locked"] = np.arange(40) < 5
    result = solve_assignment(accounts, reps, revenue, AssignmentConfig(max_moved_share=0.25))
    moved = result.owner != accounts["current_rep"].to_numpy()
    assert moved.mean() <= 0.25 + 1e-9
    assert not moved[:5].any()
    assert _fits(accounts, reps, result.owner)


def test_capacity_shortfall_and_bad_revenue_are_named() -> None:
    accounts, reps, revenue = book(0)
    with pytest.raises(OptimizeError, match="field 'revenue'"):
        solve_assignment(accounts, reps, revenue[:, :3])
    reps["capacity_hours"] = 0.5
    with pytest.raises(InfeasibleError, match="capacity_hours"):
        solve_assignment(accounts, reps, revenue)
    with pytest.raises(OptimizeError, match="field 'travel_weight'"):
        AssignmentConfig(travel_weight=-1)


def test_locked_overload_is_explained() -> None:
    accounts, reps, revenue = book(1)
    reps["capacity_hours"] = [5.0, 40.0, 40.0]
    accounts["current_rep"] = "r0"
    accounts["locked"] = True
    with pytest.raises(InfeasibleError, match="locked accounts alone exceed") as caught:
        solve_assignment(accounts, reps, revenue)
    assert caught.value.binding == ["locked"]


def test_shrinkage_follows_the_evidence() -> None:
    prior = np.full(4, 0.4)
    rates, k = shrink_rates(np.array([1, 0, 600, 200]), np.array([2, 2, 1000, 1000]), prior)
    assert k == pytest.approx(0.24 / ((2 * 0.01 + 2 * 0.16 + 1000 * 0.04 * 2 - 4 * 0.24) / 2004) - 1)
    assert abs(rates[2] - 0.6) < abs(rates[0] - 0.5)  # big cells keep their rate, small ones move to the prior
    assert rates[0] == pytest.approx((1 + k * 0.4) / (2 + k))
    same, k_same = shrink_rates(np.array([40, 40, 40]), np.array([100, 100, 100]), np.full(3, 0.4))
    assert k_same == 1e4 and np.allclose(same, 0.4, atol=0.01)  # no between-cell spread: all prior
    rate = shrink_counts(np.array([0, 0, 10, 1]), exposure_years=2.0)
    assert rate[2] < 5.0 and rate[0] > 0.0 and (np.diff(rate[[0, 3, 2]]) > 0).all()
