"""The simulator's geography: deterministic, leaves the CRM untouched, and its truth moves the right way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.simulator_geo import grid_cells, simulate_geography, true_revenue, true_revenue_matrix
from fulqrun_ml.optimize.estimates import account_estimates, fit_skill_model


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return simulate_crm(n_opportunities=3000, n_reps=12, n_companies=300, seed=3)


def test_deterministic_and_crm_untouched(crm: SimulatedCRM) -> None:
    before = {name: frame.copy() for name, frame in crm.tables.frames().items()}
    one, two = simulate_geography(crm, seed=5), simulate_geography(crm, seed=5)
    pd.testing.assert_frame_equal(one.accounts, two.accounts)
    pd.testing.assert_frame_equal(one.deal_outcomes, two.deal_outcomes)
    for name, frame in crm.tables.frames().items():
        pd.testing.assert_frame_equal(frame, before[name])
    accounts = one.accounts
    assert accounts["latitude"].between(-90, 90).all() and accounts["longitude"].between(-180, 180).all()
    assert (grid_cells(accounts["latitude"], accounts["longitude"], 0.5) == accounts["grid_cell"]).all()
    assert accounts["current_rep"].isin(one.reps["rep_id"]).all()


def test_history_carries_the_skill_effect(crm: SimulatedCRM) -> None:
    world = simulate_geography(crm, seed=1)
    latent = crm.latent.set_index("opportunity_id")["won"].reindex(world.deal_outcomes["opportunity_id"])
    industry = crm.tables.companies.set_index("id")["industry"].reindex(world.deal_outcomes["company_id"])
    effect = world.skill_effect.stack().reindex(pd.MultiIndex.from_arrays([world.deal_outcomes["rep_id"], industry]))
    change = world.deal_outcomes["won"].to_numpy(dtype=int) - latent.to_numpy(dtype=int)
    assert (change[effect.to_numpy() > 0] >= 0).all() and (change[effect.to_numpy() < 0] <= 0).all()  # coupling
    model = fit_skill_model(world.deal_outcomes, crm.tables.companies)
    fitted = model.effect.reindex(index=world.skill_effect.index, columns=world.skill_effect.columns)
    true = world.skill_effect + world.rep_skill.to_numpy()[:, None]
    assert np.corrcoef(fitted.to_numpy().ravel(), true.to_numpy().ravel())[0, 1] > 0.5


def test_true_revenue_follows_the_effects(crm: SimulatedCRM) -> None:
    world = simulate_geography(crm, seed=2)
    matrix = true_revenue_matrix(world)
    assert matrix.shape == (len(world.reps), len(world.accounts)) and (matrix > 0).all()
    skill = world.rep_skill.to_numpy()
    assert np.corrcoef(skill, matrix.mean(axis=1))[0, 1] > 0.5  # better reps earn more on the same accounts
    ids = world.accounts["company_id"].to_numpy()
    best = world.reps["rep_id"].to_numpy()[matrix.argmax(axis=0)]
    assert true_revenue(world, ids, best) >= true_revenue(world, ids, world.accounts["current_rep"].to_numpy())
    estimates = account_estimates(crm.tables, world.deal_outcomes)
    assert (estimates["potential"] > 0).all() and (estimates["workload"] >= 0).all()
    assert estimates["workload"].sum() > 0 and estimates["visits"].sum() > 0
