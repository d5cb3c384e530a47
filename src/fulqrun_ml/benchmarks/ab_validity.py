"""`scripts/bench_ab.py`: do the A/B framework's error rates hold on the CRM simulator, where the truth is known?

    .venv/bin/python scripts/bench_ab.py                       # ~1 min on 2 cores
    .venv/bin/python scripts/bench_ab.py --aa-runs 500 --ab-runs 300

Runs `monitoring.experiments_sim.simulate_validity` for the example experiment (configs/ab_test/) and for
stress variants of it, then writes reports/bench_ab.json (machine info, the config, every measured rate
with its Clopper-Pearson interval) and reports/bench_ab.png:
  main           A/A runs (no effect) peeking after every batch: the always-valid test's false-positive rate
                 against alpha, next to the naive "re-run the z-test at every peek" habit and a single
                 fixed-horizon z-test; A/B runs at the MDE: power, direction, stopping sample size, coverage.
  peek_often     A/A with a look after every 20 outcomes (500 looks): continuous monitoring.
  split_80_20    A/A with an unequal split: the unpooled-variance mixture must stay valid.
  half_mde       A/B at half the MDE: power falls, the false-positive guarantee does not move.
The goal of issue 13 (`aa_false_positive_rate` <= alpha) is checked on the main run's point estimate and
reported with its interval, not asserted: a rate is measured, then judged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.experiments_config import DEFAULT_EXPERIMENT, load_experiment
from fulqrun_ml.monitoring.experiments_sim import deal_pool, simulate_validity
from fulqrun_ml.project import REPO_ROOT, git_commit
from fulqrun_ml.registry.locking import atomic_write_json


def run_benchmark(config: str, aa_runs: int, ab_runs: int, stress_runs: int) -> dict[str, Any]:
    """Every scenario on one shared deal population (simulated once)."""
    experiment = load_experiment(config)
    load_before = os.getloadavg()
    started = time.perf_counter()
    sim = experiment.simulation
    pool = deal_pool(int(sim.get("pool_opportunities", 2 * experiment.max_samples)), int(sim.get("seed", 13)))
    main = simulate_validity(experiment, aa_runs, ab_runs, pool=pool)
    often = dataclasses.replace(experiment, simulation={**sim, "batch_size": 20})
    control, treatment = experiment.variants
    unequal = dataclasses.replace(
        experiment,
        variants=(dataclasses.replace(control, weight=0.8), dataclasses.replace(treatment, weight=0.2)),
    )
    scenarios = {
        "peek_often": simulate_validity(often, stress_runs, 0, pool=pool),
        "split_80_20": simulate_validity(unequal, stress_runs, 0, pool=pool),
        "half_mde": simulate_validity(
            experiment, 1, stress_runs, pool=pool, effect=experiment.minimum_detectable_effect / 2
        ),
    }
    for result in scenarios.values():
        for half in ("aa", "ab"):
            if result.get(half):
                result[half].pop("curves")
    scenarios["half_mde"].pop("aa")  # one A/A run only seeds the call; its rate means nothing
    for key in ("aa_false_positive_rate", "aa_false_positive_rate_clopper_pearson_95"):
        scenarios["half_mde"].pop(key)
    alpha = experiment.alpha
    return {
        "benchmark": "ab_validity",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "machine": machine_info(load_average_before=[round(x, 2) for x in load_before]),
        "config": dataclasses.asdict(experiment),
        "aa_false_positive_rate": main["aa_false_positive_rate"],
        "aa_false_positive_rate_clopper_pearson_95": main["aa_false_positive_rate_clopper_pearson_95"],
        "naive_peeking_false_positive_rate": main["aa"]["naive_peeking_z_test"]["rejected"]["rate"],
        "power_at_mde": main["power"],
        "median_stopping_n_at_mde": main["median_stopping_n"],
        "goals": {
            "aa_false_positive_rate <= alpha": main["aa_false_positive_rate"] <= alpha,
            "upper 95% bound <= alpha": main["aa_false_positive_rate_clopper_pearson_95"][1] <= alpha,
            f"power at MDE >= {experiment.power}": (main["power"] or 0.0) >= experiment.power,
        },
        "main": main,
        "scenarios": scenarios,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    """Four panels: FPR over looks (A/A), power over sample size (A/B), stopping times, FPR per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main, alpha = report["main"], report["config"]["alpha"]
    aa, ab = main["aa"]["curves"], main["ab"]["curves"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    ax = axes[0, 0]
    ax.plot(aa["n"], aa["naive_cumulative_rejection"], color="tab:red", label="naive: z-test at every peek")
    ax.plot(aa["n"], aa["msprt_cumulative_rejection"], color="tab:blue", label="always-valid mSPRT")
    ax.axhline(alpha, color="black", linestyle="--", linewidth=1, label=f"alpha = {alpha}")
    ax.set(xlabel="outcomes so far (peek after every batch)", ylabel="A/A runs that declared an effect")
    ax.set_title(f"A/A: false positives under continuous peeking ({main['aa']['msprt']['rejected']['runs']} runs)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[0, 1]
    ax.plot(ab["n"], ab["msprt_cumulative_rejection"], color="tab:blue", label="mSPRT: stopped by n (any peeks)")
    ax.plot(
        ab["n"],
        ab["fixed_horizon_rejection_if_stopped_here"],
        color="tab:green",
        linestyle=":",
        label="one z-test at n, no peeking (valid only if n fixed in advance)",
    )
    ax.axhline(report["config"]["power"], color="black", linestyle="--", linewidth=1, label="target power")
    effect = main["treatment"]["true_effect_absolute"]
    ax.set(xlabel="outcomes so far", ylabel="A/B runs that detected the effect")
    ax.set_title(f"A/B at the MDE (+{effect:.3f} win rate, {main['ab']['msprt']['rejected']['runs']} runs)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[1, 0]
    stops = main["ab"]["msprt"]["stopping_n_all_runs"]
    quartiles = [stops.get("p25"), stops.get("median"), stops.get("p75")]
    ax.bar(["p25", "median", "p75"], quartiles, color="tab:blue")
    fixed_total = 2 * main["design"]["fixed_horizon_n_per_arm_for_target_power"]
    ax.axhline(fixed_total, color="tab:green", linestyle=":", label=f"fixed-horizon n for target power ({fixed_total})")
    ax.axhline(main["design"]["max_samples"], color="grey", linestyle="--", label="max_samples")
    ax.set_ylim(0, 1.2 * main["design"]["max_samples"])
    ax.set(ylabel="outcomes at stop", title="A/B at the MDE: when the always-valid test stopped")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[1, 1]
    rows = [
        ("mSPRT\n(batch 200)", main["aa"]["msprt"]["rejected"]),
        ("naive peek\n(batch 200)", main["aa"]["naive_peeking_z_test"]["rejected"]),
        ("one z-test\nat the end", main["aa"]["fixed_horizon_z_test_at_max_samples"]["rejected"]),
        ("mSPRT\n(batch 20)", report["scenarios"]["peek_often"]["aa"]["msprt"]["rejected"]),
        ("naive peek\n(batch 20)", report["scenarios"]["peek_often"]["aa"]["naive_peeking_z_test"]["rejected"]),
        ("mSPRT\n80/20 split", report["scenarios"]["split_80_20"]["aa"]["msprt"]["rejected"]),
    ]
    rates = [r["rate"] for _, r in rows]
    errors = [
        [r["rate"] - r["clopper_pearson_95"][0] for _, r in rows],
        [r["clopper_pearson_95"][1] - r["rate"] for _, r in rows],
    ]
    colours = ["tab:red" if "naive" in label else "tab:blue" for label, _ in rows]
    ax.bar([label for label, _ in rows], rates, yerr=errors, color=colours, capsize=4)
    ax.axhline(alpha, color="black", linestyle="--", linewidth=1)
    ax.set(ylabel="A/A false-positive rate (95% Clopper-Pearson)", title="False positives per analyst and design")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench_ab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=DEFAULT_EXPERIMENT)
    parser.add_argument("--aa-runs", type=int, default=2000)
    parser.add_argument("--ab-runs", type=int, default=1000)
    parser.add_argument("--stress-runs", type=int, default=500, help="runs per stress scenario")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench_ab.json")
    args = parser.parse_args(argv)
    report = run_benchmark(args.config, args.aa_runs, args.ab_runs, args.stress_runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    plot(report, args.out.with_suffix(".png"))
    print(
        f"A/A false-positive rate {report['aa_false_positive_rate']:.4f} "
        f"(95% CI {report['aa_false_positive_rate_clopper_pearson_95'][0]:.4f}-"
        f"{report['aa_false_positive_rate_clopper_pearson_95'][1]:.4f}; naive peeking "
        f"{report['naive_peeking_false_positive_rate']:.3f}); power at MDE {report['power_at_mde']:.3f}, "
        f"median stop n={report['median_stopping_n_at_mde']:.0f}; {report['wall_seconds']} s -> {args.out}"
    )
    return 0
