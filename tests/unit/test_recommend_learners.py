"""Known-effect recovery by the causal learners, the naive learner's confounding bias, and OPE unbiasedness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_actions import COMPONENTS, draw_actions, rules_actions, simulate_action_world
from fulqrun_ml.recommend.actions import effect_outputs
from fulqrun_ml.recommend.learners import (
    additive_uplift,
    best_actions,
    dr_pseudo_outcomes,
    fit_nuisance,
    t_learner_effects,
)
from fulqrun_ml.recommend.policy_eval import doubly_robust, ips, snips

DEMO = effect_outputs().index(("type_channel", "demo/in_person"))


def synthetic(n: int, seed: int, confounded: bool) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Deal states with a known effect: demo/in_person adds +1.0 log-odds early and -1.0 late; nothing else
    acts. With `confounded`, a hidden quality raises both the demo rate and the win odds, and the data records a
    noisy proxy of it (the inbound-share column)."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(["prospecting", "qualifying", "proposal", "negotiation"], n)
    quality = rng.normal(size=n)
    states = pd.DataFrame(
        {
            "opportunity_id": [f"D{i}" for i in range(n)],
            "stage": stage,
            "industry": rng.choice(["software", "retail"], n),
            "size": rng.choice(["smb", "enterprise"], n),
            "value": rng.lognormal(10, 0.5, n),
            "meddpicc_gaps": rng.integers(0, 9, n).astype(float),
            "champion_missing": rng.integers(0, 2, n).astype(float),
            "age_days": rng.uniform(0, 90, n),
            "days_in_stage": rng.uniform(0, 30, n),
            "days_since_last_touch": rng.uniform(0, 20, n),
            "touches_30d": rng.poisson(3, n).astype(float),
            "meetings_30d": rng.poisson(1, n).astype(float),
            "inbound_share_30d": quality + rng.normal(0, 0.2, n) if confounded else rng.uniform(size=n),
        }
    )
    lean = 1.0 * quality if confounded else np.zeros(n)
    props = {}
    for c, arms in COMPONENTS.items():
        logits = np.zeros((n, len(arms)))
        if c == "type_channel":
            logits[:, 5] = lean
        props[c] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    actions, _ = draw_actions(rng, props)
    early = np.isin(stage, ["prospecting", "qualifying"])
    effect = np.where(early, 1.0, -1.0) * (actions[:, 0] == 5)
    p = 1 / (1 + np.exp(-(0.8 * quality + effect) if confounded else -(effect)))
    won = rng.uniform(size=n) < p
    base = 1 / (1 + np.exp(-0.8 * quality)) if confounded else np.full(n, 0.5)
    true_effect = (
        np.where(
            early,
            1 / (1 + np.exp(-(np.log(base / (1 - base)) + 1))),
            1 / (1 + np.exp(-(np.log(base / (1 - base)) - 1))),
        )
        - base
    )
    return states, actions, won, true_effect


@pytest.mark.parametrize("confounded", [False, True])
def test_t_and_dr_learners_recover_a_known_effect(confounded):
    states, actions, won, truth = synthetic(6000, 1, confounded)
    nuisance = fit_nuisance(states, actions, won, seed=0)
    early = states["stage"].isin(["prospecting", "qualifying"]).to_numpy()
    t_effect = t_learner_effects(nuisance, states)[:, DEMO]
    dr = dr_pseudo_outcomes(nuisance.mu, nuisance.e, actions, won)[:, DEMO]
    for rows in (early, ~early):
        # DR corrects the outcome model's error; the L2-regularised T-learner is shrunk toward zero, not flipped.
        assert abs(dr[rows].mean() - truth[rows].mean()) < 0.05
        assert np.sign(t_effect[rows].mean()) == np.sign(truth[rows].mean())
        assert abs(t_effect[rows].mean() - truth[rows].mean()) < 0.5 * abs(truth[rows].mean())
    # The learned policy demos early deals and not late ones.
    chosen = best_actions(t_learner_effects(nuisance, states))[:, 0]
    assert (chosen[early] == 5).mean() > 0.8 and (chosen[~early] == 5).mean() < 0.2


def test_naive_difference_is_biased_by_confounding():
    """The 'do what winners did' comparison (win rate with vs without a demo) overstates the late-stage effect."""
    states, actions, won, truth = synthetic(6000, 2, True)
    late = ~states["stage"].isin(["prospecting", "qualifying"]).to_numpy()
    demo = actions[:, 0] == 5
    naive = won[late & demo].mean() - won[late & ~demo].mean()
    assert naive - truth[late].mean() > 0.07  # measured 0.107; the DR learner on the same data errs by 0.036


def test_additive_uplift_sums_component_effects():
    effects = np.arange(len(effect_outputs()), dtype=float)[None, :].repeat(2, axis=0)
    actions = np.array([[0, 0, 0, 0], [5, 1, 1, 3]])
    # demo/in_person is output 4, next_day 7, weekday_morning 9, case_study_software 12
    np.testing.assert_allclose(additive_uplift(effects, actions), [0.0, 4 + 7 + 9 + 12])


@pytest.fixture(scope="module")
def random_world():
    crm = simulate_crm(n_opportunities=1500, n_companies=300, n_reps=10, seed=4, n_leads=10)
    return simulate_action_world(crm, seed=4, policy="random")


def test_ope_estimators_are_unbiased_on_a_randomised_logging_policy(random_world):
    """Logging: half the time the rules action, else uniform (propensities known). Target: the rules policy.
    Over many re-drawn logs, IPS and DR (even with a wrong outcome model) centre on the true value; SNIPS too."""
    world = random_world
    n = len(world.states)
    target = rules_actions(world.states)
    true_value = world.rollout(target)[0].mean()
    n_actions = np.prod([len(a) for a in COMPONENTS.values()])
    rng = np.random.default_rng(0)
    estimates = {"ips": [], "snips": [], "dr": []}
    for _ in range(200):
        uniform = np.stack([rng.integers(0, len(a), n) for a in COMPONENTS.values()], axis=1)
        logged = np.where(rng.uniform(size=(n, 1)) < 0.5, target, uniform)
        match = (logged == target).all(axis=1)
        propensity = 0.5 * match + 0.5 / n_actions
        won = world.rollout(logged)[0].astype(float)
        wrong_model = np.full(n, 0.3)
        estimates["ips"].append(ips(won, match, propensity))
        estimates["snips"].append(snips(won, match, propensity))
        estimates["dr"].append(doubly_robust(won, match, propensity, wrong_model, wrong_model))
    for name, values in estimates.items():
        values = np.asarray(values)
        assert abs(values.mean() - true_value) < 4 * values.std() / np.sqrt(len(values)) + 1e-3, name
