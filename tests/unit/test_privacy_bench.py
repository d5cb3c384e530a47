"""The privacy report's arithmetic: the AUC cost is paired per seed against ε = ∞, and the goal is judged on the
upper end of its interval (met only when the whole interval is within the allowed cost)."""

from __future__ import annotations

import math

from fulqrun_ml.benchmarks.privacy import judge_goal, summarise


def rows(costs):
    out = []
    for seed, cost in enumerate(costs):
        base = 0.70 + 0.01 * seed
        out.append(
            {
                "task": "deal_win",
                "seed": seed,
                "epsilon_target": math.inf,
                "epsilon_spent": math.inf,
                "auc": base,
                "ece": 0.03,
                "rep_auc": 0.6,
            }
        )
        out.append(
            {
                "task": "deal_win",
                "seed": seed,
                "epsilon_target": 3.0,
                "epsilon_spent": 2.99,
                "auc": base - cost,
                "ece": 0.05,
                "rep_auc": 0.6,
            }
        )
    return out


def test_cost_is_paired_per_seed_and_the_goal_uses_the_interval():
    summary = summarise(rows([0.002, 0.004, 0.003]))
    cell = summary["deal_win"]["3.0"]
    assert abs(cell["auc_cost_vs_non_private"]["mean"] - 0.003) < 1e-9  # seed-level AUC spread cancels out
    assert cell["auc_cost_vs_non_private"]["ci95"][1] < 0.01
    assert judge_goal(summary)["verdict"] == "met"
    assert judge_goal(summarise(rows([0.03, 0.05, 0.04])))["verdict"] == "not met"
    assert judge_goal(summarise(rows([0.0, 0.03, -0.01])))["verdict"] == "inconclusive"
    # One seed has no interval: a small point estimate is not "met".
    assert judge_goal(summarise(rows([0.003])))["verdict"].startswith("inconclusive")
    assert judge_goal(summarise(rows([0.05])))["verdict"] == "not met"
