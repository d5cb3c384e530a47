"""Next best action on the simulator's truth: policy values by method with CIs over seeds, OPE error, learner error.

    .venv/bin/python scripts/bench_recommendations.py [--seeds 5] [--opportunities 30000] [--members 3] [--causalml]
        [--hidden 64,32]

Each seed simulates a CRM and its action world (data/simulator_actions.py), trains the effect models on the
earlier decisions and judges every policy's rollouts on the later ones (recommend/study.py). Writes the `nba` and
`served` sections of reports/bench_recommendations.json (other sections - pricing, coaching - are kept) and
reports/bench_recommendations.png (win rate +- 95% CI by method). `--causalml` adds causalml 0.18's
BaseTClassifier / BaseDRRegressor as learners (install the `causal` extra first; the tests never need it).
Each seed also writes the gap diagnostics (recommend/gap_diagnostics.py) and a learning curve: the T-learner
refitted on a random half of the training decisions, to measure how much of the gap is estimation noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

from fulqrun_ml.data.simulator_actions import oracle_actions
from fulqrun_ml.machine import machine_info
from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.recommend.datamodule import UpliftDataModule
from fulqrun_ml.recommend.effect_model import fit_members, predict_uplift
from fulqrun_ml.recommend.gap_diagnostics import oracle_gap
from fulqrun_ml.recommend.learners import best_actions, supported, t_learner_effects
from fulqrun_ml.recommend.policy_eval import policy_value, true_arm_effects
from fulqrun_ml.recommend.study import OURS, compare_learners
from fulqrun_ml.registry.locking import atomic_write_text

REPORT = Path("reports/bench_recommendations.json")
ORDER = ("random", "historical", "rules", "naive_sensitivity", "causalml_dr", "causalml_t", "t_learner", OURS, "oracle")


def interval(values: list[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)], "n": len(x)}


def causalml_effects(datamodule: UpliftDataModule) -> dict[str, np.ndarray]:
    """causalml 0.18's T-learner and DR-learner per component (installed on demand: xgboost + NCCL wheels)."""
    try:
        import causalml  # noqa: F401
    except ImportError:
        sys.exit('--causalml needs the causal extra: .venv/bin/python -m pip install -e ".[causal]"')
    from causalml.inference.meta import BaseDRRegressor, BaseTClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from fulqrun_ml.data.simulator_actions import COMPONENTS
    from fulqrun_ml.recommend.learners import design

    train, test = datamodule.worlds["train"], datamodule.worlds["test"]
    x, xt = design(datamodule.spec, train.states), design(datamodule.spec, test.states)
    out: dict[str, list[np.ndarray]] = {"causalml_t": [], "causalml_dr": []}
    for j, arms in enumerate(COMPONENTS.values()):
        treatment = np.asarray(arms, dtype=object)[train.logged_action[:, j]]
        t_model = BaseTClassifier(learner=LogisticRegression(max_iter=500), control_name=arms[0])
        t_model.fit(x, treatment, train.won.astype(int))
        dr_model = BaseDRRegressor(learner=LinearRegression(), control_name=arms[0])
        dr_model.fit(x, treatment, train.won.astype(float))
        # causalml orders its effect columns by the sorted treatment names (t_groups), not by the arms: reorder,
        # and give an arm the history never logged (no column) no effect.
        for model, name in ((t_model, "causalml_t"), (dr_model, "causalml_dr")):
            effects, column = model.predict(xt), {g: k for k, g in enumerate(model.t_groups)}
            out[name].append(
                np.stack([effects[:, column[a]] if a in column else np.zeros(len(xt)) for a in arms[1:]], axis=1)
            )
    return {k: np.concatenate(v, axis=1) for k, v in out.items()}


def half_history_fraction(datamodule: UpliftDataModule, seed: int) -> float:
    """The T-learner's lift fraction of the oracle when it learns from a random half of the training decisions
    (same test decisions): next to the full-history value, the slope of the learning curve."""
    from fulqrun_ml.recommend.learners import fit_nuisance

    train, test = datamodule.worlds["train"], datamodule.worlds["test"]
    rows = np.sort(np.random.default_rng(seed).permutation(len(train.states))[: len(train.states) // 2])
    half = fit_nuisance(train.states.iloc[rows], train.logged_action[rows], train.won[rows], seed, datamodule.folds)
    actions = best_actions(t_learner_effects(half, test.states), supported(half.propensity(test.states)))
    hist = policy_value(test, test.logged_action)["win_rate"]
    oracle = policy_value(test, oracle_actions(test.states))["win_rate"]
    return (policy_value(test, actions)["win_rate"] - hist) / (oracle - hist)


def run_seed(seed: int, opportunities: int, members: int, use_causalml: bool, hidden: tuple[int, ...]) -> dict:
    t0 = time.perf_counter()
    crm = {"n_opportunities": opportunities, "n_companies": opportunities // 7, "n_reps": opportunities // 250}
    datamodule = UpliftDataModule(crm={**crm, "seed": seed, "n_leads": 10}, world={"seed": seed}, seed=seed)
    datamodule.setup()
    t1 = time.perf_counter()
    dims = (len(datamodule.spec.spec.numeric), datamodule.spec.cardinalities)
    ensemble = fit_members(datamodule, lambda: MLP(*dims, hidden, 0.1, 8, datamodule.n_outputs), members, seed)
    result = compare_learners(datamodule, ensemble, seed)
    test = datamodule.worlds["test"]
    truth, support = true_arm_effects(test), supported(datamodule.nuisance.propensity(test.states))
    hist, oracle = result["policies"]["historical"]["win_rate"], result["policies"]["oracle"]["win_rate"]
    learned = {
        OURS: predict_uplift(ensemble, datamodule.spec, test.states)[0],
        "t_learner": t_learner_effects(datamodule.nuisance, test.states),
    }
    if use_causalml:
        for name, effects in causalml_effects(datamodule).items():
            learned[name] = effects
            result["policies"][name] = policy_value(test, best_actions(effects, support))
            result["effect_rmse"][name] = float(np.sqrt(np.mean((effects - truth) ** 2)))
            result["lift_fraction_of_oracle"][name] = (result["policies"][name]["win_rate"] - hist) / (oracle - hist)
    result["diagnostics"] = oracle_gap(test, learned, support)
    result["diagnostics"]["t_learner_half_history_fraction"] = half_history_fraction(datamodule, seed)
    result["diagnostics"]["training_decisions"] = datamodule.sizes["train"]
    result["seconds"] = {"data": round(t1 - t0, 1), "fit_and_evaluate": round(time.perf_counter() - t1, 1)}
    result["sizes"] = datamodule.sizes
    print(f"seed {seed}: lift fraction {result['lift_fraction_of_oracle']} ({result['seconds']})", flush=True)
    return result


def summarise(runs: list[dict]) -> dict:
    names = list(runs[0]["policies"])
    policies = {n: {k: interval([r["policies"][n][k] for r in runs]) for k in runs[0]["policies"][n]} for n in names}
    learners = list(runs[0]["lift_fraction_of_oracle"])
    hist = lambda r, k: r["policies"]["historical"][k]  # noqa: E731 - one lookup
    ope = {}
    for who in ("estimated_propensity", "true_logging_propensity"):
        ope[who] = {
            est: {
                "estimate": interval([r["ope"][who][est] for r in runs]),
                "error": interval([r["ope"][who][est] - r["ope"]["true_win_rate"] for r in runs]),
            }
            for est in ("ips", "snips", "dr")
        } | {"matched_decisions": interval([r["ope"][who]["matched_decisions"] for r in runs])}
    ope["true_win_rate"] = interval([r["ope"]["true_win_rate"] for r in runs])
    return {
        "ours": OURS,
        "lift_fraction_of_oracle": interval([r["lift_fraction_of_oracle"][OURS] for r in runs]),
        "lift_fraction_of_oracle_by_learner": {
            n: interval([r["lift_fraction_of_oracle"][n] for r in runs]) for n in learners
        },
        "ours_minus_rules_win_rate": interval(
            [r["policies"][OURS]["win_rate"] - r["policies"]["rules"]["win_rate"] for r in runs]
        ),
        "ours_minus_historical_win_rate": interval(
            [r["policies"][OURS]["win_rate"] - hist(r, "win_rate") for r in runs]
        ),
        "mission_claims": {
            "relative_win_rate_lift_vs_historical": interval(
                [r["policies"][OURS]["win_rate"] / hist(r, "win_rate") - 1 for r in runs]
            ),
            "oracle_relative_win_rate_lift_vs_historical": interval(
                [r["policies"]["oracle"]["win_rate"] / hist(r, "win_rate") - 1 for r in runs]
            ),
            "relative_cycle_change_vs_historical": interval(
                [r["policies"][OURS]["cycle_days"] / hist(r, "cycle_days") - 1 for r in runs]
            ),
            "claimed": {"lead_conversion_lift": 0.40, "cycle_change": -0.25},
            "note": "measured on deal win rate per decision (the action world has no lead decisions)",
        },
        "policies": policies,
        "effect_rmse": {n: interval([r["effect_rmse"][n] for r in runs]) for n in runs[0]["effect_rmse"]},
        "interval_coverage_95": interval([r["interval_coverage_95"] for r in runs]),
        "ope": ope,
        "goals": {"lift_fraction_of_oracle": 0.70, "beat_rules_ci_excludes_zero": True},
        "gap_diagnostics": summarise_diagnostics([r["diagnostics"] for r in runs]),
    }


def summarise_diagnostics(diagnostics: list[dict]) -> dict:
    """Intervals over seeds of every gap diagnostic (recommend/gap_diagnostics.py), plus the learning curve."""
    first = diagnostics[0]
    learners = {}
    for name, block in first["learners"].items():
        learners[name] = {
            "lift_fraction_of_oracle": interval([d["learners"][name]["lift_fraction_of_oracle"] for d in diagnostics]),
            "components": {
                c: {k: interval([d["learners"][name]["components"][c][k] for d in diagnostics]) for k in fields}
                for c, fields in block["components"].items()
            },
        }
    return {
        "oracle_on_support_fraction": interval([d["oracle_on_support_fraction"] for d in diagnostics]),
        "unsupported_arm_share": interval([d["unsupported_arm_share"] for d in diagnostics]),
        "true_effect_spread": {
            c: interval([d["true_effect_spread"][c] for d in diagnostics]) for c in first["true_effect_spread"]
        },
        "learning_curve_t_learner": {
            "half_history": interval([d["t_learner_half_history_fraction"] for d in diagnostics]),
            "full_history": learners["t_learner"]["lift_fraction_of_oracle"],
            "training_decisions_full": interval([d["training_decisions"] for d in diagnostics]),
        },
        "learners": learners,
    }


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ORDER if n in summary["policies"]] + [n for n in summary["policies"] if n not in ORDER]
    means = [summary["policies"][n]["win_rate"]["mean"] for n in names]
    errors = np.array(
        [
            [m - summary["policies"][n]["win_rate"]["ci95"][0], summary["policies"][n]["win_rate"]["ci95"][1] - m]
            for n, m in zip(names, means, strict=True)
        ]
    ).T
    fig, ax = plt.subplots(figsize=(12, 5))
    ax.bar(names, means, yerr=errors, capsize=4, color=["#bbb" if n != OURS else "#2a7" for n in names])
    ax.set_ylim(min(means) - 0.05, max(means) + 0.03)
    ax.set_ylabel("true win rate (rollouts)", fontsize=11)
    ax.set_title("Next best action: true win rate by policy, mean and 95% CI over seeds", fontsize=12)
    plt.xticks(rotation=25, fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--opportunities", type=int, default=30000)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--causalml", action="store_true")
    parser.add_argument("--hidden", default="64,32", help="the DR final stage's MLP hidden widths ('' = linear)")
    args = parser.parse_args()
    hidden = tuple(int(w) for w in args.hidden.split(",") if w)
    started = time.perf_counter()
    runs = [run_seed(s, args.opportunities, args.members, args.causalml, hidden) for s in range(1, args.seeds + 1)]
    summary = summarise(runs)
    summary["config"] = vars(args) | {"seconds": round(time.perf_counter() - started, 1)}
    summary["runs"] = runs
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report["machine"] = machine_info()
    report["nba"] = summary
    report.setdefault("served", {"served_p99_ms": None, "note": "filled by the serving benchmark (issue 14 item 7)"})
    REPORT.parent.mkdir(exist_ok=True)
    atomic_write_text(REPORT, json.dumps(report, indent=2))
    plot(summary, REPORT.with_suffix(".png"))
    print(json.dumps({k: summary[k] for k in ("lift_fraction_of_oracle", "ours_minus_rules_win_rate")}, indent=2))


if __name__ == "__main__":
    main()
