"""`fulqrun-ml recommend pricing|coaching|strategy`: price, coaching and segment recommendations.

    fulqrun-ml recommend pricing  [--config pricing]  [--out DIR] [--crm DIR --pricing FILE] [--set KEY=VALUE ...]
    fulqrun-ml recommend coaching [--config coaching] [--out DIR] [--crm DIR]
    fulqrun-ml recommend strategy [--config strategy] [--out DIR] [--crm DIR]

Without --crm each command runs on the simulator (the config's `data` block) and its summary adds the check
against the simulator's known truth (regret, rank correlations). Outputs under --out: `<command>.parquet`
(pricing: one row per open deal; coaching: every rep x stage gap, plus `coaching_suggestions.parquet`;
strategy: every segment) and `<command>_summary.json`, each written atomically (temp file + rename), the
summary last. Errors are FulqrunMLError subclasses naming the field; `fulqrun-ml` prints them and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import COUNTRIES, simulate_crm
from fulqrun_ml.data.simulator_coaching import simulate_coaching
from fulqrun_ml.data.simulator_pricing import simulate_pricing, true_expected_revenue
from fulqrun_ml.data.simulator_products import ProductStory
from fulqrun_ml.data.sources import DirectorySource
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.recommend.coaching import CoachingConfig, fit_stage_effects
from fulqrun_ml.recommend.coaching_eval import evaluate_coaching
from fulqrun_ml.recommend.coaching_inputs import crm_coaching_deals
from fulqrun_ml.recommend.coaching_suggestions import skill_gaps, suggestions
from fulqrun_ml.recommend.pricing import PricingConfig, fit_pricing_model, recommend_discounts
from fulqrun_ml.recommend.pricing_inputs import crm_pricing_deals, read_table
from fulqrun_ml.recommend.product_positioning import ProductPositioningUnavailable, product_deals, product_win_rates
from fulqrun_ml.recommend.strategy import StrategyConfig, rank_segments, segment_deals
from fulqrun_ml.recommend.strategy_eval import evaluate_products, evaluate_strategy
from fulqrun_ml.registry.locking import atomic_write_json

log = logging.getLogger(__name__)
COMMANDS = ("pricing", "coaching", "strategy")


def load_config(name_or_path: str, overrides: list[str]) -> dict:
    """configs/recommend/<name>.yaml (or a path) with `key=value` overrides, as a plain dict. A twin of
    optimize.commands.load_config: optimize and recommend share a layer and must not import each other."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / "recommend" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FieldValidationError("config", f"no config {name_or_path!r} (looked for {path})")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise FieldValidationError("set", f"overrides are key=value, got {bad}")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def model_config(kind: type, settings: dict) -> object:
    """The settings dataclass from the config's `model` block; an unknown key is named, not ignored."""
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise FieldValidationError(f"model.{unknown[0]}", f"unknown setting; known: {sorted(known)}")
    tuples = {k: tuple(v) for k, v in settings.items() if isinstance(v, list)}
    return kind(**(settings | tuples))


def write_parquet(path: Path, frame: pd.DataFrame) -> str:
    """Parquet written to a temp sibling and renamed into place: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


def _crm(args: argparse.Namespace) -> CRMTables:
    return DirectorySource(Path(args.crm)).load()


def run_pricing(args: argparse.Namespace, cfg: dict, out: Path) -> dict:
    """Fit on closed deals, price every open deal; on the simulator, score the prices against the truth."""
    config = model_config(PricingConfig, cfg.get("model", {}))
    config.discount_cap()  # type: ignore[attr-defined]  # refuse impossible guardrails before any work
    data = cfg.get("data", {})
    world = None
    if args.crm:
        if not args.pricing:
            raise FieldValidationError("discount", "the CRM contract has no discount: pass --pricing FILE "
                                       "(opportunity_id, discount[, competitor_present, discount_stage])")  # fmt: skip
        deals = crm_pricing_deals(_crm(args), read_table(Path(args.pricing), "pricing"), data.get("defaults", {}))
    else:
        world = simulate_pricing(simulate_crm(**data.get("simulate", {})), seed=int(data.get("pricing_seed", 0)))
        deals = world.deals
    closed = deals["closed"].to_numpy(dtype=bool)
    model = fit_pricing_model(deals[closed], config)  # type: ignore[arg-type]
    open_rows = np.flatnonzero(~closed)
    if not len(open_rows):
        raise FieldValidationError("stage", "no open deals to price")
    rec = recommend_discounts(model, deals.iloc[open_rows])
    summary: dict = {"command": "pricing", "trained_on_deals": int(closed.sum()), "priced_deals": len(open_rows),
                     "discount_cap": float(rec.grid[-1]),
                     "mean_recommended_discount": float(rec.table["recommended_discount"].mean()),
                     "expected_revenue": float(rec.table["expected_revenue"].sum()),
                     "expected_revenue_at_list": float(rec.table["expected_revenue_at_list"].sum())}  # fmt: skip
    if world is not None:
        grid = rec.grid
        truth = true_expected_revenue(world, np.tile(grid, (len(open_rows), 1)), open_rows)
        optimum = truth.max(axis=1)
        chosen = {"model": rec.table["recommended_discount"].to_numpy(), "no_discount": np.zeros(len(open_rows)),
                  "historical": np.minimum(deals["discount"].to_numpy()[open_rows], grid[-1]),
                  "fixed_10pct": np.full(len(open_rows), min(0.10, grid[-1]))}  # fmt: skip
        summary["true_regret_per_deal"] = {
            name: float((optimum - true_expected_revenue(world, d, open_rows)).mean()) for name, d in chosen.items()
        }
    summary["config"] = dataclasses.asdict(config)  # type: ignore[arg-type]
    summary["outputs"] = {"parquet": write_parquet(out / "pricing.parquet", rec.table)}
    return summary


def run_coaching(args: argparse.Namespace, cfg: dict, out: Path) -> dict:
    """Fit rep x stage effects, write every gap and the suggestions; on the simulator, rank-check the truth."""
    config = model_config(CoachingConfig, cfg.get("model", {}))
    data = cfg.get("data", {})
    world = None
    if args.crm:
        deals = crm_coaching_deals(_crm(args))
    else:
        world = simulate_coaching(simulate_crm(**data.get("simulate", {})), seed=int(data.get("coaching_seed", 0)))
        deals = world.deals
    effects = fit_stage_effects(deals, config)  # type: ignore[arg-type]
    gaps = skill_gaps(effects, deals, config)  # type: ignore[arg-type]
    advice = suggestions(gaps, config)  # type: ignore[arg-type]
    summary: dict = {"command": "coaching", "reps": int(gaps["rep_id"].nunique()), "cells": len(gaps),
                     "tau2": effects.tau2, "suggestions": len(advice),
                     "revenue_at_stake": float(advice["revenue_at_stake"].sum())}  # fmt: skip
    if world is not None:
        summary["truth"] = evaluate_coaching(world, config)  # type: ignore[arg-type]
    summary["config"] = dataclasses.asdict(config)  # type: ignore[arg-type]
    summary["outputs"] = {"parquet": write_parquet(out / "coaching.parquet", gaps),
                          "suggestions": write_parquet(out / "coaching_suggestions.parquet", advice)}  # fmt: skip
    return summary


def run_strategy(args: argparse.Namespace, cfg: dict, out: Path) -> dict:
    """Rank segments with intervals; on the simulator, rank-check against the true segment parameters."""
    settings = dict(cfg.get("model", {}))
    settings.setdefault("region_of_country", {c: r for r, cs in COUNTRIES.items() for c in cs})
    config = model_config(StrategyConfig, settings)
    data = cfg.get("data", {})
    story = ProductStory() if data.get("products") else None
    tables = _crm(args) if args.crm else simulate_crm(**data.get("simulate", {}), products=story).tables
    deals = segment_deals(tables.opportunities, tables.companies, config.region_of_country)  # type: ignore[attr-defined]
    table = rank_segments(deals, tables.companies, config)  # type: ignore[arg-type]
    top = ["/".join(r) for r in table.head(5)[["industry", "size", "region"]].itertuples(index=False)]
    summary: dict = {"command": "strategy", "segments": len(table), "closed_deals": len(deals), "top_segments": top}
    if not args.crm and story is None:  # the segment truth integrates no product effects
        summary["truth"] = evaluate_strategy(table)
    summary["config"] = dataclasses.asdict(config)  # type: ignore[arg-type]
    summary["outputs"] = {"parquet": write_parquet(out / "strategy.parquet", table)}
    try:  # product positioning, when the export carries products (optional column)
        sold = product_deals(tables.opportunities, tables.companies)
        products = product_win_rates(sold, config.n_bootstrap)  # type: ignore[attr-defined]
    except ProductPositioningUnavailable as reason:
        summary["products"] = {"available": False, "reason": str(reason)}
        return summary
    best = products[products["rank_in_segment"] == 1]
    summary["products"] = {
        "available": True,
        "cells": len(products),
        "best_product_by_segment": {f"{r.industry}/{r.size}": r.product for r in best.itertuples(index=False)},
    }
    if story is not None:
        summary["products"]["truth"] = evaluate_products(products, story)
    summary["outputs"]["products_parquet"] = write_parquet(out / "product_positioning.parquet", products)
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml recommend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--config", help="configs/recommend/<name>.yaml or a path (default: the command's name)")
    parser.add_argument("--out", default="outputs/recommend", help="output directory (default: %(default)s)")
    parser.add_argument("--crm", help="a CRM export directory (default: the simulator)")
    parser.add_argument("--pricing", help="pricing only: Parquet/CSV with opportunity_id, discount, ...")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    return parser


def main(argv: list[str]) -> int:
    """Run one insight command; prints the summary's headline numbers and where the outputs are."""
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config or args.command, args.set)
    run = {"pricing": run_pricing, "coaching": run_coaching, "strategy": run_strategy}[args.command]
    out = Path(args.out)
    summary = run(args, cfg, out)
    summary["outputs"]["summary"] = str(out / f"{args.command}_summary.json")
    atomic_write_json(out / f"{args.command}_summary.json", summary)
    headline = {k: v for k, v in summary.items() if not isinstance(v, dict | list)}
    print("\n".join(f"{k}: {v}" for k, v in headline.items()))
    print(f"outputs: {summary['outputs']}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        sys.exit(main(sys.argv[1:]))
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
