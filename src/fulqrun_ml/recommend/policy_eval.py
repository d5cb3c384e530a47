"""Policies judged on the simulator's true counterfactuals, and off-policy estimates judged against them.

Why here and not only in the benchmark: `fulqrun-ml train task=nba_uplift` reports the same numbers for its
holdout, and the tests check the estimators on a randomised logging policy. Every policy's value is the mean of
its rollouts on the test decisions with the shared noise (so differences between policies are paired); the
off-policy estimates (IPS, SNIPS, DR) use only what a CRM records: logged actions, outcomes and estimated
propensities, and sit next to the true value they estimate.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fulqrun_ml.data.simulator_actions import COMPONENTS, ActionWorld, oracle_actions, rules_actions
from fulqrun_ml.recommend.learners import PROPENSITY_FLOOR, SensitivityModel, best_actions, supported


def true_arm_effects(world: ActionWorld) -> np.ndarray:
    """True change in P(win) of each non-reference arm, the other components at their reference, [N, K]."""
    base = np.zeros((len(world.states), len(COMPONENTS)), dtype=int)
    p0 = world.win_probability(base)
    columns = []
    for j, arms in enumerate(COMPONENTS.values()):
        for a in range(1, len(arms)):
            changed = base.copy()
            changed[:, j] = a
            columns.append(world.win_probability(changed) - p0)
    return np.stack(columns, axis=1)


def policy_value(world: ActionWorld, actions: np.ndarray) -> dict[str, float]:
    """True win rate, revenue per decision and mean cycle days of `actions`, from the rollouts."""
    won, cycle = world.rollout(actions)
    value = world.states["value"].to_numpy()
    return {"win_rate": float(won.mean()), "revenue": float((won * value).mean()), "cycle_days": float(cycle.mean())}


def _match(actions: np.ndarray, logged: np.ndarray) -> np.ndarray:
    return (actions == logged).all(axis=1)


def logged_propensity(e: dict[str, np.ndarray], logged: np.ndarray) -> np.ndarray:
    """P(logged action | x) under estimated per-component propensities (independent components)."""
    rows = np.arange(len(logged))
    return np.prod([np.clip(e[c][rows, logged[:, j]], PROPENSITY_FLOOR, 1) for j, c in enumerate(COMPONENTS)], axis=0)


def ips(won: np.ndarray, match: np.ndarray, propensity: np.ndarray) -> float:
    """Inverse propensity scoring (Horvitz-Thompson): unbiased with the true propensities, high variance."""
    return float(np.mean(match / propensity * won))


def snips(won: np.ndarray, match: np.ndarray, propensity: np.ndarray) -> float:
    """Self-normalised IPS: divides by the realised weight sum (slightly biased, much lower variance)."""
    weights = match / propensity
    return float(np.sum(weights * won) / max(np.sum(weights), 1e-12))


def doubly_robust(
    won: np.ndarray, match: np.ndarray, propensity: np.ndarray, q_logged: np.ndarray, q_target: np.ndarray
) -> float:
    """Direct method plus an IPS correction of its error: unbiased if either the propensities or the outcome
    model is right."""
    return float(np.mean(q_target + match / propensity * (won - q_logged)))


def off_policy(
    world: ActionWorld, target: np.ndarray, propensity: np.ndarray, outcome: SensitivityModel
) -> dict[str, float]:
    """IPS, SNIPS and DR estimates of `target`'s win rate from the logged data, with the matched count."""
    match = _match(target, world.logged_action)
    won = world.won.astype(float)
    q_logged = outcome.predict(world.states, world.logged_action)
    q_target = outcome.predict(world.states, target)
    return {
        "ips": ips(won, match, propensity),
        "snips": snips(won, match, propensity),
        "dr": doubly_robust(won, match, propensity, q_logged, q_target),
        "matched_decisions": int(match.sum()),
    }


def evaluate_policies(
    world: ActionWorld,
    effects: dict[str, np.ndarray],
    propensities: dict[str, np.ndarray],
    outcome: SensitivityModel,
    ours: str,
    seed: int = 0,
    intervals: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """True value of every policy on `world` (the test decisions); each learner in `effects` ([N, K] estimated
    arm effects) becomes the policy that takes its best supported action. `ours` names the shipped learner,
    whose OPE estimates and `lift_fraction_of_oracle` are reported; `intervals` (its mean and sd) gets coverage."""
    rng = np.random.default_rng(seed)
    support = supported(propensities)
    policies = {
        "historical": world.logged_action,
        "random": np.stack([rng.integers(0, len(a), len(world.states)) for a in COMPONENTS.values()], axis=1),
        "rules": rules_actions(world.states),
        "oracle": oracle_actions(world.states),
    }
    for name, estimate in effects.items():
        policies[name] = best_actions(estimate, support)
    values = {name: policy_value(world, actions) for name, actions in policies.items()}
    truth = true_arm_effects(world)
    hist, oracle = values["historical"]["win_rate"], values["oracle"]["win_rate"]
    result: dict[str, Any] = {"policies": values, "decisions": len(world.states)}
    result["effect_rmse"] = {n: float(np.sqrt(np.mean((e - truth) ** 2))) for n, e in effects.items()}
    result["lift_fraction_of_oracle"] = {
        n: (values[n]["win_rate"] - hist) / (oracle - hist) if oracle > hist else float("nan") for n in effects
    }
    result["ours"] = ours
    estimated = logged_propensity(propensities, world.logged_action)
    result["ope"] = {
        "true_win_rate": values[ours]["win_rate"],
        "estimated_propensity": off_policy(world, policies[ours], estimated, outcome),
        "true_logging_propensity": off_policy(world, policies[ours], world.propensity, outcome),
    }
    if intervals is not None:
        mean, sd = intervals
        inside = np.abs(mean - truth) <= 1.96 * sd
        result["interval_coverage_95"] = float(inside.mean())
    return result
