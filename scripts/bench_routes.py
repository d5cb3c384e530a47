"""Visit routing and coverage benchmark on the simulator: reports/bench_routes.json + bench_routes.png (one
rep-week, OR-Tools next to the nearest-neighbour baseline) + bench_routes_coverage.png.

    .venv/bin/python scripts/bench_routes.py [--seeds 5] [--coverage-seeds 8] [--out reports]

1. **Routing** (configs/optimize/routes.yaml: 800 accounts, 24 reps, 5 days, OR-Tools guided local search at its
   per-rep time limit), per seed: travel km and hours, visits, value covered and working hours of the OR-Tools
   plan and of the nearest-neighbour baseline under the same day limits and time windows, measured in the same
   run on the same candidates; ratios with 95 % t-intervals over seeds.
2. **Coverage** (configs/optimize/coverage.yaml), per seed: the white-space ranking of untouched accounts
   against their TRUE potential (precision@k, Spearman) next to random and "largest accounts first"; the quota
   forecast against the open deals' real outcomes (interval coverage, Brier score of P(reach quota) next to the
   in-sample base rate, rank correlation of expected and actual bookings).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval as interval
from fulqrun_ml.data.simulator_geo import visiting_hours
from fulqrun_ml.machine import machine_info
from fulqrun_ml.optimize.commands import load_config, solver_config
from fulqrun_ml.optimize.coverage import CoverageConfig, open_pipeline, white_space
from fulqrun_ml.optimize.coverage_quota import quota_risk
from fulqrun_ml.optimize.coverage_truth import quota_truth, white_space_truth
from fulqrun_ml.optimize.estimates import segment_win_rates
from fulqrun_ml.optimize.inputs import simulated_inputs
from fulqrun_ml.optimize.outputs import plot_coverage
from fulqrun_ml.optimize.problem import check_accounts, check_reps
from fulqrun_ml.optimize.routes import plan_totals, plan_week
from fulqrun_ml.optimize.routes_candidates import RouteConfig, visit_candidates
from fulqrun_ml.optimize.routes_outputs import busiest_rep, plot_routes
from fulqrun_ml.registry.locking import atomic_write_json


def _data(seed: int, base: dict) -> dict:
    """The config's simulator block with this seed for the CRM and its geography (as bench_territory)."""
    return base | {"simulate": base["simulate"] | {"seed": seed}, "geo_seed": seed}


def routing(seeds: list[int], out: Path) -> dict:
    cfg = load_config("routes", [])
    solver: RouteConfig = solver_config(RouteConfig, cfg["solver"], False)  # type: ignore[assignment]
    rows = []
    for seed in seeds:
        inputs = simulated_inputs(_data(seed, cfg["data"]))
        reps = check_reps(inputs.reps)
        accounts = check_accounts(inputs.accounts, reps).merge(visiting_hours(inputs.world, seed), on="company_id")
        candidates = visit_candidates(accounts, inputs.tables, solver)
        started = time.perf_counter()
        plan = plan_week(candidates, reps, solver)
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        baseline = plan_week(candidates, reps, solver, baseline=True)
        baseline_seconds = time.perf_counter() - started
        row = {"seed": seed, "candidates": len(candidates), "ortools": plan_totals(plan, candidates, solver),
               "nearest_neighbour": plan_totals(baseline, candidates, solver), "ortools_seconds": round(seconds, 2),
               "baseline_seconds": round(baseline_seconds, 3)}  # fmt: skip
        rows.append(row)
        if seed == seeds[0]:
            rep = busiest_rep(plan)
            plot_routes(out / "bench_routes.png", {"OR-Tools": plan, "nearest neighbour": baseline}, rep,
                        f"seed {seed}, rep {str(rep)[:8]} week")  # fmt: skip
        o, b = row["ortools"], row["nearest_neighbour"]
        print(f"routing seed {seed}: km {o['travel_km']:.0f} vs {b['travel_km']:.0f}, value", end=" ")
        print(f"{o['value_covered']:.3g} vs {b['value_covered']:.3g}, visits {o['visits']} vs {b['visits']}")

    def ratio(key: str) -> dict:
        return interval([r["ortools"][key] / r["nearest_neighbour"][key] for r in rows])

    def per_visit(r: dict, name: str) -> float:
        return r[name]["travel_km"] / max(r[name]["visits"], 1)

    return {
        "config": cfg["solver"],
        "travel_km_ratio_ortools_vs_nn": ratio("travel_km"),
        "travel_hours_ratio_ortools_vs_nn": ratio("travel_hours"),
        "value_covered_ratio_ortools_vs_nn": ratio("value_covered"),
        "visits_ratio_ortools_vs_nn": ratio("visits"),
        "km_per_visit_ratio_ortools_vs_nn": interval(
            [per_visit(r, "ortools") / per_visit(r, "nearest_neighbour") for r in rows]
        ),
        "value_covered_share_ortools": interval([r["ortools"]["value_covered_share"] for r in rows]),
        "value_covered_share_nn": interval([r["nearest_neighbour"]["value_covered_share"] for r in rows]),
        "travel_km_ortools": interval([r["ortools"]["travel_km"] for r in rows]),
        "travel_km_nn": interval([r["nearest_neighbour"]["travel_km"] for r in rows]),
        "ortools_seconds": interval([r["ortools_seconds"] for r in rows]),
        "per_seed": rows,
    }


def coverage(seeds: list[int], out: Path) -> dict:
    cfg = load_config("coverage", [])
    solver: CoverageConfig = solver_config(CoverageConfig, cfg["solver"], False)  # type: ignore[assignment]
    rows = []
    for seed in seeds:
        inputs = simulated_inputs(_data(seed, cfg["data"]))
        reps = check_reps(inputs.reps)
        accounts = check_accounts(inputs.accounts, reps)
        table = white_space(accounts, inputs.tables, solver)
        pipeline = open_pipeline(accounts, inputs.tables, inputs.deals)
        territories = quota_risk(pipeline, reps, segment_win_rates(inputs.deals, inputs.tables.companies), solver)
        assert inputs.world is not None and inputs.latent is not None
        row = {"seed": seed, "white_space": white_space_truth(inputs.world, table, inputs.tables),
               "quota": quota_truth(inputs.latent, pipeline, territories)}  # fmt: skip
        rows.append(row)
        if seed == seeds[0]:
            plot_coverage(out / "bench_routes_coverage.png", table, territories)
        w, q = row["white_space"], row["quota"]
        print(f"coverage seed {seed}: precision@k {w['precision_at_k']:.2f}", end=" ")
        print(
            f"(largest {w['precision_at_k_largest_accounts']:.2f}, random {w['precision_at_k_random']:.2f});", end=" "
        )
        print(f"quota interval coverage {q['interval_coverage']:.2f}")

    def over(section: str, key: str) -> dict:
        return interval([r[section][key] for r in rows])

    keys_ws = ("precision_at_k", "precision_at_k_largest_accounts", "precision_at_k_random", "spearman",
               "spearman_largest_accounts", "true_potential_captured", "untouched_accounts")  # fmt: skip
    gain = interval([r["white_space"]["precision_at_k"] - r["white_space"]["precision_at_k_random"] for r in rows])
    keys_q = ("interval_coverage", "brier_p_reach_quota", "brier_base_rate", "spearman_expected_vs_actual")
    return {
        "config": cfg["solver"],
        "white_space": {k: over("white_space", k) for k in keys_ws} | {"precision_gain_vs_random": gain},
        "quota": {k: over("quota", k) for k in keys_q} | {"nominal_interval": solver.interval},
        "per_seed": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--coverage-seeds", type=int, default=8)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = {"machine": machine_info()}
    report["coverage"] = coverage(list(range(1, args.coverage_seeds + 1)), out)
    report["routing"] = routing(list(range(1, args.seeds + 1)), out)
    report["machine_after"] = machine_info()
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "bench_routes.json", report)
    print(json.dumps({"seconds": report["seconds"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
