"""The causal action world: counterfactual consistency, shared noise, and the CRM left as it was."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_actions import (
    COMPONENTS,
    LOGIT_PER_Z,
    deal_states,
    oracle_actions,
    rules_actions,
    simulate_action_world,
    true_effects,
)


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=1500, n_companies=300, n_reps=10, seed=3, n_leads=10)


@pytest.fixture(scope="module")
def world(crm):
    return simulate_action_world(crm, seed=3)


def test_logged_action_rollout_reproduces_logged_outcome(world):
    won, cycle = world.rollout(world.logged_action)
    np.testing.assert_array_equal(won, world.won)
    np.testing.assert_allclose(cycle, world.cycle_days)
    assert len(world.states) > 500 and 0.2 < world.won.mean() < 0.8


def test_zero_effect_reproduces_the_crm_outcome(crm, world):
    """The shared uniform is coupled to the CRM's recorded outcome: no effect, the CRM's own result."""
    recorded = crm.latent.set_index("opportunity_id").loc[world.states["opportunity_id"], "won"].to_numpy()
    np.testing.assert_array_equal(world.u_win < world.p_open, recorded)


def test_shared_noise_makes_counterfactuals_monotone(world):
    """Common random numbers: under an action with a larger true effect, every deal won under the smaller one is
    still won (and some more), so policy differences are paired, not noise."""
    oracle, rules = oracle_actions(world.states), rules_actions(world.states)
    won_oracle, _ = world.rollout(oracle)
    won_rules, _ = world.rollout(rules)
    effects = true_effects(world.states)
    rows = np.arange(len(oracle))
    gap = sum(effects[c][rows, oracle[:, j]] - effects[c][rows, rules[:, j]] for j, c in enumerate(COMPONENTS))
    assert (gap >= -1e-12).all()  # the oracle's action is never worse for any deal
    assert not (won_rules & ~won_oracle).any()
    assert won_oracle.mean() > won_rules.mean()
    again, _ = world.rollout(rules)
    np.testing.assert_array_equal(again, won_rules)  # deterministic given the world


def test_win_probability_moves_by_the_documented_effect(world):
    actions = np.zeros((len(world.states), len(COMPONENTS)), dtype=int)
    p0 = world.win_probability(actions)
    np.testing.assert_allclose(np.log(p0 / (1 - p0)), np.log(world.p_open / (1 - world.p_open)) + LOGIT_PER_Z * 0.02)
    actions[:, 0] = 5  # demo/in_person: +0.20 z early, -0.05 late (+0.12 enterprise, -0.08 smb)
    early = world.states["stage"].isin(["prospecting", "qualifying"]).to_numpy()
    mid = (world.states["size"] == "mid_market").to_numpy()
    delta = np.log(world.win_probability(actions) / (1 - world.win_probability(actions))) - np.log(p0 / (1 - p0))
    np.testing.assert_allclose(delta[early & mid], LOGIT_PER_Z * (0.20 - 0.02))
    np.testing.assert_allclose(delta[~early & mid], LOGIT_PER_Z * (-0.05 - 0.02))


def test_history_is_confounded_by_quality(world):
    """Reps give in-person meetings, demos and proposals to better deals: the naive comparison is biased."""
    in_person = np.isin(world.logged_action[:, 0], [3, 5, 7])
    assert world.z[in_person].mean() > world.z[~in_person].mean() + 0.1


def test_world_leaves_the_crm_unchanged():
    before = simulate_crm(n_opportunities=400, n_companies=80, n_reps=6, seed=5, n_leads=5)
    snapshot = {name: pd.util.hash_pandas_object(t, index=False).sum() for name, t in before.tables.frames().items()}
    simulate_action_world(before, seed=5)
    after = {name: pd.util.hash_pandas_object(t, index=False).sum() for name, t in before.tables.frames().items()}
    assert snapshot == after


def test_states_read_only_the_past(crm):
    """A deal's state at as_of ignores touches after it: adding a later touch changes nothing."""
    as_of = crm.tables.extracted_at - pd.Timedelta(days=200)
    states = deal_states(crm.tables, as_of)
    acts = crm.tables.activities
    later = acts[(acts["related_type"] == "opportunity") & (acts["created_at"] > as_of)]
    assert len(later) and (states["days_since_last_touch"] >= 0).all()
    assert set(states["stage"]) <= {"prospecting", "qualifying", "proposal", "negotiation"}
    trimmed = dataclasses.replace(crm.tables, activities=acts[acts["created_at"] <= as_of])
    pd.testing.assert_frame_equal(deal_states(trimmed, as_of), states)
