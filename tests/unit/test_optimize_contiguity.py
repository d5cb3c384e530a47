"""Contiguity in territory design: with the constraint every territory is one 8-connected piece of grid cells
(checked by an independent flood fill), without it the same book is not, and a move cap that cannot coexist with
it is explained by name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator_geo import grid_cells, haversine_km
from fulqrun_ml.optimize.metrics import plan_metrics
from fulqrun_ml.optimize.problem import InfeasibleError
from fulqrun_ml.optimize.territories import TerritoryConfig, design_territories
from tests.unit.test_optimize_territories import tiny_book


def pieces(cells: pd.Series) -> int:
    """Number of 8-connected pieces of a set of '<row>_<col>' cells (flood fill)."""
    todo = {tuple(map(int, c.split("_"))) for c in cells}
    count = 0
    while todo:
        count += 1
        stack = [todo.pop()]
        while stack:
            r, c = stack.pop()
            for near in [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]:
                if near in todo:
                    todo.remove(near)
                    stack.append(near)
    return count


def book() -> tuple[pd.DataFrame, pd.DataFrame]:
    accounts, reps = tiny_book(n_accounts=150, n_reps=4, seed=6)
    accounts["grid_cell"] = grid_cells(accounts["latitude"], accounts["longitude"], 0.25)  # ~64 cells
    reps["capacity_hours"] = accounts["workload"].sum()
    rng = np.random.default_rng(1)
    accounts["current_rep"] = reps["rep_id"].to_numpy()[rng.integers(0, 4, len(accounts))]  # scattered books
    return accounts, reps


def test_contiguity_makes_every_territory_one_piece() -> None:
    accounts, reps = book()
    free = TerritoryConfig(max_moved_share=1.0, candidates=4, weight_compactness=0.0)
    loose = design_territories(accounts, reps, free).owner
    assert max(pieces(accounts.loc[loose == rep, "grid_cell"]) for rep in reps["rep_id"]) > 1  # it binds here
    tight = design_territories(accounts, reps, TerritoryConfig(**{**free.__dict__, "contiguity": True}))
    for rep in reps["rep_id"]:
        owned = accounts.loc[tight.owner == rep, "grid_cell"]
        assert owned.empty or pieces(owned) == 1
    assert tight.after["contiguous_share"] == 1.0
    # Balance within contiguity: no worse than the natural contiguous plan, every account to its nearest rep.
    lat, lon = accounts["latitude"].to_numpy()[:, None], accounts["longitude"].to_numpy()[:, None]
    km = haversine_km(lat, lon, reps["home_latitude"].to_numpy()[None, :], reps["home_longitude"].to_numpy()[None, :])
    nearest = plan_metrics(accounts, reps, reps["rep_id"].to_numpy()[km.argmin(axis=1)])
    assert tight.after["potential_cv"] <= nearest["potential_cv"] + 1e-9


def test_contiguity_against_a_move_cap_is_named() -> None:
    accounts, reps = book()
    with pytest.raises(InfeasibleError) as caught:
        design_territories(accounts, reps, TerritoryConfig(max_moved_share=0.0, candidates=4, contiguity=True))
    assert "contiguity" in caught.value.binding and "max_moved_share" in caught.value.binding
