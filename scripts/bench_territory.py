"""Territory and assignment benchmark on the simulator: reports/bench_territory.json + reports/bench_territory_*.png.

    .venv/bin/python scripts/bench_territory.py [--seeds 8] [--sizes 1000,10000,50000] [--out reports]

1. **Balance** (default CRM: 6,000 deals, 800 accounts, 24 reps; configs/optimize/territories.yaml), per seed:
   coefficient of variation and Gini of potential and workload, compactness, travel, contiguity and the share
   moved, before (the status quo book) and after, next to a simple greedy rebalancing baseline with the same
   move budget, plus the CV of the TRUE potential (simulator truth). Goal: cv_reduction >= 0.5 at moved <= 0.2.
2. **Revenue lift** (configs/optimize/assignment.yaml), per seed: TRUE expected revenue (the simulator's story,
   `simulator_geo.true_revenue`) of the current book, the greedy baseline, the optimised assignment and the
   oracle (the same MILP on the true revenue matrix: the ceiling with perfect estimates); lifts with 95 %
   t-intervals over seeds.
3. **Solve times** for territories at each size (reps: 24 / 100 / 200), aggregated to grid cells above 2,000
   accounts, and for the assignment MILP at 1,000 accounts (it has reps x accounts binaries; larger books are
   not part of the scale target).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.data.simulator_geo import GeoWorld, haversine_km, true_revenue, true_revenue_matrix
from fulqrun_ml.machine import machine_info
from fulqrun_ml.optimize.assignment import AssignmentConfig, greedy_assignment, solve_assignment, travel_matrix
from fulqrun_ml.optimize.commands import load_config
from fulqrun_ml.optimize.estimates import fit_skill_model
from fulqrun_ml.optimize.inputs import simulated_inputs
from fulqrun_ml.optimize.metrics import coefficient_of_variation, plan_metrics
from fulqrun_ml.optimize.outputs import plot_plan
from fulqrun_ml.optimize.territories import TerritoryConfig, design_territories
from fulqrun_ml.registry.locking import atomic_write_json

REPS_AT = {1000: 24, 10000: 100, 50000: 200}


def interval(values: list[float]) -> dict:
    """Mean with a 95 % t-interval over seeds (the seeds are independent simulated organisations)."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else float("nan")
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)],
            "min": float(x.min()), "max": float(x.max()), "n_seeds": len(x)}  # fmt: skip


def _data(seed: int, base: dict) -> dict:
    return base | {"simulate": base["simulate"] | {"seed": seed}, "geo_seed": seed}


def greedy_rebalance(accounts: pd.DataFrame, reps: pd.DataFrame, max_moved_share: float) -> np.ndarray:
    """The simple baseline: while moves are left, hand the most loaded territory's account nearest to an
    under-mean rep's home to that rep (potential only; no capacity, no compactness objective)."""
    index = pd.Index(reps["rep_id"])
    owner = index.get_indexer(accounts["current_rep"])
    potential = accounts["potential"].to_numpy()
    load = np.bincount(owner, potential, minlength=len(reps))
    mean = load.mean()
    lat, lon = accounts["latitude"].to_numpy()[:, None], accounts["longitude"].to_numpy()[:, None]
    km = haversine_km(lat, lon, reps["home_latitude"].to_numpy()[None, :], reps["home_longitude"].to_numpy()[None, :])
    movable = ~accounts["locked"].to_numpy()
    for _ in range(int(max_moved_share * len(accounts))):
        high, under = int(np.argmax(load)), load < mean
        pool = np.flatnonzero((owner == high) & movable)
        if load[high] <= mean * 1.01 or not pool.size or not under.any():
            break
        dist = np.where(under[None, :], km[pool], np.inf)
        a, r = np.unravel_index(np.argmin(dist), dist.shape)
        owner[pool[a]], movable[pool[a]] = r, False
        load[high] -= potential[pool[a]]
        load[r] += potential[pool[a]]
    return index.to_numpy()[owner]


def true_potential_cv(world: GeoWorld, accounts: pd.DataFrame, reps: pd.DataFrame, owner: np.ndarray) -> float:
    """CV across territories of the TRUE potential (true revenue per year averaged over reps)."""
    truth = true_revenue_matrix(world, accounts["company_id"]).mean(axis=0)
    return coefficient_of_variation(np.bincount(pd.Index(reps["rep_id"]).get_indexer(owner), truth, len(reps)))


def balance(seeds: list[int], out: Path) -> dict:
    cfg = load_config("territories", [])
    solver = TerritoryConfig(**cfg["solver"])
    runs = []
    for seed in seeds:
        inputs = simulated_inputs(_data(seed, cfg["data"]))
        result = design_territories(inputs.accounts, inputs.reps, solver)
        accounts, reps, world = inputs.accounts, inputs.reps, inputs.world
        assert world is not None
        baseline = greedy_rebalance(accounts, reps, solver.max_moved_share)
        runs.append({"seed": seed} | result.summary() | {"greedy_baseline": plan_metrics(accounts, reps, baseline)})
        before = runs[-1]["before"]["potential_cv"]
        runs[-1]["greedy_baseline"]["cv_reduction"] = 1 - runs[-1]["greedy_baseline"]["potential_cv"] / before
        runs[-1]["true_potential_cv"] = {
            name: true_potential_cv(world, accounts, reps, owner)
            for name, owner in (("before", accounts["current_rep"].to_numpy()), ("after", result.owner),
                                ("greedy_baseline", baseline))
        }  # fmt: skip
        if seed == seeds[0]:
            plan = inputs.accounts.assign(before=inputs.accounts["current_rep"], after=result.owner)
            plot_plan(out / "bench_territory_map.png", plan, inputs.reps, "before", "after", f"territories seed {seed}")
        print(
            f"balance seed {seed}: cv_reduction {runs[-1]['cv_reduction']:.3f} moved {runs[-1]['moved_fraction']:.3f}"
        )
    return {
        "config": dataclasses.asdict(solver),
        "cv_reduction": interval([r["cv_reduction"] for r in runs]),
        "moved_fraction": interval([r["moved_fraction"] for r in runs]),
        "cv_reduction_greedy_baseline": interval([r["greedy_baseline"]["cv_reduction"] for r in runs]),
        "moved_fraction_greedy_baseline": interval([r["greedy_baseline"]["moved_fraction"] for r in runs]),
        "true_potential_cv_reduction": interval(
            [1 - r["true_potential_cv"]["after"] / r["true_potential_cv"]["before"] for r in runs]
        ),
        "potential_cv_before": interval([r["before"]["potential_cv"] for r in runs]),
        "potential_cv_after": interval([r["after"]["potential_cv"] for r in runs]),
        "goal": {"cv_reduction_at_least": 0.5, "moved_fraction_at_most": 0.2,
                 "met_every_seed": all(r["cv_reduction"] >= 0.5 and r["moved_fraction"] <= 0.2 + 1e-9 for r in runs)},
        "per_seed": runs,
    }  # fmt: skip


def revenue(seeds: list[int], out: Path) -> dict:
    cfg = load_config("assignment", [])
    solver = AssignmentConfig(**cfg["solver"])
    rows = []
    for seed in seeds:
        inputs = simulated_inputs(_data(seed, cfg["data"]))
        accounts, reps, world = inputs.accounts, inputs.reps, inputs.world
        assert world is not None
        model = fit_skill_model(inputs.deals, inputs.tables.companies)
        estimated = model.revenue(reps["rep_id"], accounts)
        optimised = solve_assignment(accounts, reps, estimated, solver)
        oracle = solve_assignment(accounts, reps, true_revenue_matrix(world, accounts["company_id"]), solver)
        books = {"current": accounts["current_rep"].to_numpy(), "greedy": greedy_assignment(accounts, reps, estimated),
                 "optimised": optimised.owner, "oracle": oracle.owner}  # fmt: skip
        ids = accounts["company_id"].to_numpy()
        truth = {name: true_revenue(world, ids, owner) for name, owner in books.items()}
        travel_cost = travel_matrix(accounts, reps)
        rep_row = {rep: i for i, rep in enumerate(reps["rep_id"])}
        travel = {name: float(travel_cost[[rep_row[o] for o in owner], np.arange(len(owner))].sum())
                  for name, owner in books.items()}  # fmt: skip
        moved = float(np.mean(books["optimised"] != books["current"]))
        rows.append({"seed": seed, "true_revenue": truth, "travel_cost": travel, "moved_fraction": moved,
                     "solve_seconds": optimised.solve_seconds, "status": optimised.status})  # fmt: skip
        if seed == seeds[0]:
            plan = accounts.assign(before=books["current"], after=books["optimised"])
            plot_plan(out / "bench_territory_assignment.png", plan, reps, "before", "after", f"assignment seed {seed}")
        lifts = {name: round(value / truth["current"] - 1, 3) for name, value in truth.items()}
        print(f"revenue seed {seed}: lift vs current {lifts}")

    def lift(a: str, b: str) -> dict:
        return interval([r["true_revenue"][a] / r["true_revenue"][b] - 1 for r in rows])

    return {
        "config": dataclasses.asdict(solver),
        "lift_optimised_vs_current": lift("optimised", "current"),
        "lift_greedy_vs_current": lift("greedy", "current"),
        "lift_optimised_vs_greedy": lift("optimised", "greedy"),
        "lift_oracle_vs_current": lift("oracle", "current"),
        "net_of_travel_lift_optimised_vs_current": interval(
            [
                (r["true_revenue"]["optimised"] - r["travel_cost"]["optimised"])
                / (r["true_revenue"]["current"] - r["travel_cost"]["current"])
                - 1
                for r in rows
            ]
        ),
        "per_seed": rows,
    }


def scale(sizes: list[int]) -> list[dict]:
    base = load_config("territories", [])
    solver = TerritoryConfig(**base["solver"] | {"time_limit_s": 100.0})
    results = []
    for n in sizes:
        n_reps = REPS_AT.get(n, max(24, n // 250))
        started = time.perf_counter()
        data = base["data"] | {"simulate": {"n_opportunities": n, "n_companies": n, "n_reps": n_reps,
                                            "n_leads": n // 10, "seed": 1}, "geo_seed": 1}  # fmt: skip
        inputs = simulated_inputs(data)
        prepared = time.perf_counter() - started
        started = time.perf_counter()
        result = design_territories(inputs.accounts, inputs.reps, solver)
        row = {"accounts": n, "reps": n_reps, "data_and_estimates_seconds": round(prepared, 2),
               "territory_seconds": round(time.perf_counter() - started, 2), "territory_milp_seconds":
               round(result.solve_seconds, 2)} | {k: v for k, v in result.summary().items()
                                                  if k not in ("before", "after")}  # fmt: skip
        if n <= 1000:
            model = fit_skill_model(inputs.deals, inputs.tables.companies)
            estimated = model.revenue(inputs.reps["rep_id"], inputs.accounts)
            settings = AssignmentConfig(**load_config("assignment", [])["solver"])
            assigned = solve_assignment(inputs.accounts, inputs.reps, estimated, settings)
            row["assignment_seconds"] = round(assigned.solve_seconds, 2)
        results.append(row)
        print(f"scale {n} x {n_reps}: territories {row['territory_seconds']} s ({row['status']})")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    seeds = list(range(1, args.seeds + 1))
    report = {
        "machine": machine_info(),
        "balance": balance(seeds, out),
        "revenue": revenue(seeds, out),
        "scale": scale([int(s) for s in args.sizes.split(",") if s]),
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(out / "bench_territory.json", report)
    print(json.dumps({k: report[k] for k in ("seconds",)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
