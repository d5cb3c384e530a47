"""Where a learned policy loses to the oracle: positivity, per-component mistakes, effect size vs estimation error.

Why: `lift_fraction_of_oracle` says how far a policy is from the oracle, not why. Each cause has its own
measurement on the simulator's truth, so the benchmark can name the one that matters:
- **positivity**: the oracle restricted to the support mask (arms reps used for similar deals). If it kept the
  whole lift, staying on the support costs nothing.
- **which component is wrong**: per action component, how often the policy picks the oracle's arm, and the share
  of the oracle's lift it would regain with the oracle's arm swapped in for that component alone.
- **signal vs noise**: per component, the spread of the true arm effects within a deal (what ranking must
  resolve) next to the learner's error on them (RMSE against the truth). Error comparable to the spread means the
  ranking is mostly estimation noise, which only more logged rows or less variance can fix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fulqrun_ml.data.simulator_actions import COMPONENTS, ActionWorld, oracle_actions
from fulqrun_ml.recommend.learners import best_actions
from fulqrun_ml.recommend.policy_eval import policy_value, true_arm_effects


def _blocks() -> dict[str, slice]:
    """Effect columns of each component in `effect_outputs()` order."""
    edges = np.cumsum([0] + [len(a) - 1 for a in COMPONENTS.values()])
    return {c: slice(int(edges[j]), int(edges[j + 1])) for j, c in enumerate(COMPONENTS)}


def oracle_gap(world: ActionWorld, effects: dict[str, np.ndarray], support: np.ndarray) -> dict[str, Any]:
    """The three measurements of the module docstring, for every learner in `effects` ([N, K] estimated arm
    effects on `world`'s decisions) under the `support` mask its policy obeys."""
    truth = true_arm_effects(world)
    oracle = oracle_actions(world.states)
    hist = policy_value(world, world.logged_action)["win_rate"]
    gain = policy_value(world, oracle)["win_rate"] - hist

    def fraction(actions: np.ndarray) -> float:
        return (policy_value(world, actions)["win_rate"] - hist) / gain if gain > 0 else float("nan")

    blocks = _blocks()
    out: dict[str, Any] = {
        "oracle_on_support_fraction": fraction(best_actions(truth, support)),
        "unsupported_arm_share": float(1.0 - support.mean()),
        "true_effect_spread": {
            c: float(np.concatenate([np.zeros((len(truth), 1)), truth[:, b]], axis=1).std(axis=1).mean())
            for c, b in blocks.items()
        },
        "learners": {},
    }
    for name, estimate in effects.items():
        actions = best_actions(estimate, support)
        base = fraction(actions)
        components = {}
        for j, (c, b) in enumerate(blocks.items()):
            swapped = actions.copy()
            swapped[:, j] = oracle[:, j]
            components[c] = {
                "agreement_with_oracle": float((actions[:, j] == oracle[:, j]).mean()),
                "lift_fraction_regained_with_oracle_arm": fraction(swapped) - base,
                "effect_rmse": float(np.sqrt(np.mean((estimate[:, b] - truth[:, b]) ** 2))),
            }
        out["learners"][name] = {"lift_fraction_of_oracle": base, "components": components}
    return out
