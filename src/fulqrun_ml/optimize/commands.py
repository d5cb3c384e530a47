"""`fulqrun-ml optimize territories|assignment|routes|coverage`: one interface over the solvers.

    fulqrun-ml optimize territories [--config territories] [--out DIR] [--set solver.max_moved_share=0.1 ...]
    fulqrun-ml optimize assignment  [--config assignment]  [--crm DIR --locations FILE [--rep-profiles FILE]]
    fulqrun-ml optimize routes      [--uplift FILE]        (account_id, expected_uplift from recommend)
    fulqrun-ml optimize coverage    [--predictions FILE]   (opportunity_id, probability from `fulqrun-ml score`)

Without --crm the command runs on the simulator (the config's `data.simulate` block) and its summary adds the
true revenue from the simulator's known truth. Each command writes `<name>.parquet`, `<name>.geojson`,
`<name>.png` and `<name>_summary.json` under --out (routes also `routes_baseline.parquet`). Errors are
FulqrunMLError subclasses naming the field or the binding constraint; `fulqrun-ml` prints them and exits 2.
`--progress` prints the solver's log (HiGHS: incumbent, bound, gap over time; OR-Tools: its search log).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from fulqrun_ml.data.simulator_geo import true_revenue, visiting_hours
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.optimize.assignment import AssignmentConfig, greedy_assignment, solve_assignment, travel_matrix
from fulqrun_ml.optimize.coverage import (
    CoverageConfig,
    open_pipeline,
    read_predictions,
    white_space,
    white_space_segments,
)
from fulqrun_ml.optimize.coverage_quota import quota_risk
from fulqrun_ml.optimize.coverage_truth import quota_truth, white_space_truth
from fulqrun_ml.optimize.estimates import fit_skill_model, segment_win_rates
from fulqrun_ml.optimize.inputs import OptimizeInputs, crm_inputs, simulated_inputs
from fulqrun_ml.optimize.model_potential import apply_potential, rescale_revenue
from fulqrun_ml.optimize.outputs import write_coverage_outputs, write_outputs
from fulqrun_ml.optimize.problem import OptimizeError, check_accounts, check_reps
from fulqrun_ml.optimize.routes import plan_totals, plan_week
from fulqrun_ml.optimize.routes_candidates import RouteConfig, read_uplift, visit_candidates
from fulqrun_ml.optimize.routes_outputs import write_route_outputs
from fulqrun_ml.optimize.territories import TerritoryConfig, design_territories
from fulqrun_ml.project import CONFIG_DIR

log = logging.getLogger(__name__)


def load_config(name_or_path: str, overrides: list[str]) -> dict:
    """configs/optimize/<name>.yaml (or a path) with `key=value` overrides, as a plain dict."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / "optimize" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise OptimizeError("config", f"no config {name_or_path!r} (looked for {path})")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise OptimizeError("set", f"overrides are key=value, got {bad}")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def solver_config(kind: type, settings: dict, progress: bool) -> object:
    """The solver dataclass from the config's `solver` block; an unknown key is named, not ignored."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise OptimizeError(f"solver.{unknown[0]}", f"unknown setting; known: {sorted(known)}")
    return kind(**(settings | ({"progress": True} if progress else {})))


def _inputs(args: argparse.Namespace, data: dict) -> OptimizeInputs:
    if args.crm:
        return crm_inputs(Path(args.crm), Path(args.locations) if args.locations else None,
                          Path(args.rep_profiles) if args.rep_profiles else None, data)  # fmt: skip
    return simulated_inputs(data)


def run_territories(inputs: OptimizeInputs, cfg: TerritoryConfig, out: Path) -> dict:
    """Solve, write the four outputs, return the summary."""
    result = design_territories(inputs.accounts, inputs.reps, cfg)
    plan = inputs.accounts.assign(territory_before=inputs.accounts["current_rep"], territory_after=result.owner)
    plan["moved"] = plan["territory_before"] != plan["territory_after"]
    summary = {"command": "territories", "accounts": len(plan), "reps": len(inputs.reps)} | result.summary()
    summary["potential"] = inputs.potential
    summary["config"] = dataclasses.asdict(cfg)
    summary["outputs"] = write_outputs(out, "territories", plan.drop(columns=["locked"]), inputs.reps,
                                       "territory_before", "territory_after", summary)  # fmt: skip
    return summary


def run_assignment(inputs: OptimizeInputs, cfg: AssignmentConfig, out: Path) -> dict:
    """Estimate rep x account revenue, solve, compare with the current book and the greedy baseline."""
    accounts, reps = inputs.accounts, inputs.reps
    model = fit_skill_model(inputs.deals, inputs.tables.companies)
    revenue = model.revenue(reps["rep_id"], accounts)
    if inputs.potential["source"] == "models":  # the model potential, with the rep's relative skill kept
        revenue = rescale_revenue(revenue, accounts)
    result = solve_assignment(accounts, reps, revenue, cfg)
    greedy = greedy_assignment(accounts, reps, revenue, cfg)
    rows = {rep: i for i, rep in enumerate(reps["rep_id"])}
    travel = travel_matrix(accounts, reps)
    columns = np.arange(len(accounts))
    books = {"current": accounts["current_rep"].to_numpy(), "optimised": result.owner, "greedy": greedy}
    summary: dict = {"command": "assignment", "accounts": len(accounts), "reps": len(reps), "status": result.status,
                     "mip_gap": result.mip_gap, "solve_seconds": round(result.solve_seconds, 3),
                     "skill_prior_strength_deals": model.strength}  # fmt: skip
    for name, owner in books.items():
        idx = np.array([rows[o] for o in owner])
        summary[name] = {
            "estimated_revenue": float(revenue[idx, columns].sum()),
            "travel_cost": float(travel[idx, columns].sum()),
            "moved_fraction": float(np.mean(owner != books["current"])),
        }
        if inputs.world is not None:
            summary[name]["true_revenue"] = true_revenue(inputs.world, accounts["company_id"].to_numpy(), owner)
    if inputs.world is not None:
        base = summary["current"]["true_revenue"]
        summary["true_revenue_lift_vs_current"] = summary["optimised"]["true_revenue"] / base - 1
        summary["true_revenue_lift_greedy_vs_current"] = summary["greedy"]["true_revenue"] / base - 1
    summary["potential"] = inputs.potential
    summary["config"] = dataclasses.asdict(cfg)
    plan = accounts.drop(columns=["locked"]).assign(rep_before=books["current"], rep_after=result.owner)
    plan["moved"] = plan["rep_before"] != plan["rep_after"]
    plan["expected_revenue_after"] = revenue[[rows[o] for o in result.owner], columns]
    summary["outputs"] = write_outputs(out, "assignment", plan, reps, "rep_before", "rep_after", summary)
    return summary


def run_routes(inputs: OptimizeInputs, cfg: RouteConfig, out: Path, uplift: Path | None, seed: int = 0) -> dict:
    """Candidates, OR-Tools weekly routes and the nearest-neighbour baseline under the same limits, compared."""
    reps = check_reps(inputs.reps)
    accounts = check_accounts(inputs.accounts, reps)
    if inputs.world is not None and "open_hour" not in accounts:
        accounts = accounts.merge(visiting_hours(inputs.world, seed), on="company_id", how="left")
    candidates = visit_candidates(accounts, inputs.tables, cfg, read_uplift(uplift) if uplift else None)
    log.info("routes: %d candidate visits over %d reps", len(candidates), candidates["current_rep"].nunique())
    started = time.perf_counter()
    plan = plan_week(candidates, reps, cfg)
    seconds = time.perf_counter() - started
    baseline = plan_week(candidates, reps, cfg, baseline=True)
    solved, greedy = plan_totals(plan, candidates, cfg), plan_totals(baseline, candidates, cfg)
    summary = {"command": "routes", "accounts": len(accounts), "reps": len(reps), "candidates": len(candidates),
               "value_source": "expected_uplift" if uplift else "potential", "solve_seconds": round(seconds, 3),
               "travel_km_saving_vs_baseline": 1 - solved["travel_km"] / greedy["travel_km"] if greedy["travel_km"]
               else 0.0, "value_covered_ratio_vs_baseline": solved["value_covered"] / greedy["value_covered"]
               if greedy["value_covered"] else float("nan"), "ortools": solved, "nearest_neighbour": greedy,
               "config": dataclasses.asdict(cfg)}  # fmt: skip
    summary["outputs"] = write_route_outputs(out, plan, baseline, summary)
    return summary


def run_coverage(inputs: OptimizeInputs, cfg: CoverageConfig, out: Path, predictions: Path | None) -> dict:
    """White space (accounts, segments) and quota risk per territory, ranked; scored against truth on the
    simulator. Writes coverage.parquet (accounts), coverage_segments.parquet, coverage_territories.parquet."""
    reps = check_reps(inputs.reps)
    accounts = check_accounts(inputs.accounts, reps)
    table = white_space(accounts, inputs.tables, cfg)
    segments = white_space_segments(table)
    pipeline = open_pipeline(accounts, inputs.tables, inputs.deals)
    rates = segment_win_rates(inputs.deals, inputs.tables.companies)
    territories = quota_risk(pipeline, reps, rates, cfg, read_predictions(predictions) if predictions else None)
    summary: dict = {"command": "coverage", "accounts": len(accounts), "reps": len(reps),
                     "white_space_accounts": int(table["white_space"].sum()),
                     "potential_at_stake": float(table.loc[table["white_space"], "potential_at_stake"].sum()),
                     "touch_benchmark": float(table["touch_benchmark"].iat[0]), "open_deals": len(pipeline),
                     "win_rates": "model predictions" if predictions else "shrunk segment x stage",
                     "territories_below_half_chance": int((territories["p_reach_quota"] < 0.5).sum()),
                     "potential": inputs.potential}  # fmt: skip
    top = table[table["white_space"]].head(cfg.top_k)
    summary["top_accounts"] = top[["rank", "company_id", "current_rep", "potential", "touches", "touch_gap",
                                   "potential_at_stake"]].to_dict("records")  # fmt: skip
    summary["top_segments"] = segments.head(cfg.top_k).to_dict("records")
    summary["territories"] = territories.to_dict("records")
    if inputs.world is not None and inputs.latent is not None:
        summary["truth"] = {"white_space": white_space_truth(inputs.world, table, inputs.tables),
                            "quota": quota_truth(inputs.latent, pipeline, territories)}  # fmt: skip
    summary["config"] = dataclasses.asdict(cfg)
    summary["outputs"] = write_coverage_outputs(out, table, segments, territories, reps, summary)
    return summary


RUNNERS: dict[str, tuple[type, object]] = {
    "territories": (TerritoryConfig, run_territories),
    "assignment": (AssignmentConfig, run_assignment),
    "routes": (RouteConfig, run_routes),
    "coverage": (CoverageConfig, run_coverage),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml optimize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=sorted(RUNNERS))
    parser.add_argument("--config", help="configs/optimize/<name>.yaml or a path (default: the command's name)")
    parser.add_argument("--out", default="outputs/optimize", help="output directory (default: %(default)s)")
    parser.add_argument("--crm", help="a CRM export directory (default: the simulator)")
    parser.add_argument("--locations", help="account_locations Parquet/CSV: company_id, latitude, longitude, ...")
    parser.add_argument("--rep-profiles", help="rep_profiles Parquet/CSV: rep_id, home_latitude, ...")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--progress", action="store_true", help="print the solver's progress log")
    parser.add_argument("--uplift", help="routes: per-account uplift Parquet/CSV (account_id, expected_uplift)")
    parser.add_argument("--predictions", help="coverage: deal-win scores Parquet/CSV (opportunity_id, probability)")
    parser.add_argument("--potential", choices=["estimates", "models"], help="account potential: the statistical "
                        "estimate or the registered deal-win/expansion/churn models (default: config)")  # fmt: skip
    parser.add_argument("--models-dir", help="the registry root the models are read from (potential.models_dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one optimisation; prints the summary's headline numbers and where the outputs are."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    cfg = load_config(args.config or args.command, args.set)
    kind, run = RUNNERS[args.command]
    solver = solver_config(kind, cfg.get("solver", {}), args.progress)
    log.info("optimize %s: building inputs", args.command)
    data = cfg.get("data", {})
    inputs = apply_potential(_inputs(args, data), cfg.get("potential"), args.potential, args.models_dir)
    if args.command == "routes":
        summary = run_routes(inputs, solver, Path(args.out), Path(args.uplift) if args.uplift else None,
                             int(data.get("geo_seed", 0)))  # type: ignore[arg-type]  # fmt: skip
    elif args.command == "coverage":
        summary = run_coverage(inputs, solver, Path(args.out), Path(args.predictions) if args.predictions else None)  # type: ignore[arg-type]
    else:
        summary = run(inputs, solver, Path(args.out))  # type: ignore[operator]
    headline = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    print("\n".join(f"{k}: {v}" for k, v in headline.items()))
    print(f"outputs: {summary['outputs']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main())
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
