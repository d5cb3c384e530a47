"""The federated report's paired gaps and goal verdicts, on hand-made per-seed rows."""

from __future__ import annotations

import pytest

from fulqrun_ml.benchmarks.federated import ALL, judge, privacy_cost, summarise, with_weighted_means
from fulqrun_ml.benchmarks.federated_study import arm_overrides


def rows(fed_gap: float, small_lead: float) -> list[dict]:
    out = []
    for seed, noise in enumerate((0.0, 0.001, -0.001)):
        for org, n, base in (("big", 1000, 0.80), ("small", 100, 0.70)):
            arms = {"centralised": base, "local_only": base - (small_lead if org == "small" else 0.0)}
            arms["fedavg"] = base + fed_gap + noise
            for arm, auc in arms.items():
                out.append(
                    {
                        "seed": seed,
                        "arm": arm,
                        "organisation": org,
                        "auc": auc,
                        "n": n,
                        "oracle_auc": 0.9,
                        "train_rows": n,
                        "positives": n // 3,
                        "log_loss": 0.5,
                    }
                )
    return with_weighted_means(out)


def test_goals_follow_the_paired_intervals() -> None:
    summary = summarise(rows(-0.001, 0.05), ["fedavg"])
    assert abs(summary[ALL]["fedavg_minus_centralised"]["mean"] + 0.001) < 1e-9
    goals = judge(summary, ["fedavg"])
    assert goals["small_organisations"] == ["small"]
    assert goals["fedavg"]["within_0.005_of_centralised"]["verdict"] == "met"
    assert goals["fedavg"]["ahead_of_local_only"]["small"]["verdict"] == "met"
    goals = judge(summarise(rows(-0.02, -0.01), ["fedavg"]), ["fedavg"])
    assert goals["fedavg"]["within_0.005_of_centralised"]["verdict"] == "not met"
    assert goals["fedavg"]["ahead_of_local_only"]["small"]["verdict"] == "not met"


def test_privacy_arms_are_costed_against_plain_fedavg() -> None:
    base = rows(-0.001, 0.05)
    extra = []
    for row in base:
        if row["arm"] == "fedavg" and row["organisation"] != ALL:
            extra.append({**row, "arm": "fedavg+secagg", "epsilon": None})
            extra.append({**row, "arm": "fedavg+dp1", "auc": row["auc"] - 0.03, "epsilon": 19.0})
    table = with_weighted_means([r for r in base if r["organisation"] != ALL] + extra)
    arms = ["fedavg", "fedavg+secagg", "fedavg+dp1"]
    cost = privacy_cost(table, summarise(table, arms), arms)
    assert cost["fedavg+secagg"]["max_abs_gap_to_fedavg"] == 0.0 and cost["fedavg+secagg"]["epsilon"] is None
    assert abs(cost["fedavg+dp1"]["auc_minus_fedavg"]["mean"] + 0.03) < 1e-9
    assert cost["fedavg+dp1"]["epsilon"] == 19.0
    assert arm_overrides("fedavg+secagg+dp0.5", 0.01, 0.1) == [
        "federated=fedavg",
        "federated.secure_aggregation=true",
        "federated.dp.noise_multiplier=0.5",
        "federated.dp.clip_norm=0.1",
    ]
    with pytest.raises(ValueError, match="unknown option 'tls'"):
        arm_overrides("fedavg+tls", 0.01, 0.1)
