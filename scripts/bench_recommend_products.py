"""Product positioning against the simulator's truth: win rate by product x segment, over seeds, next to raw rates.

    .venv/bin/python scripts/bench_recommend_products.py [--seeds 3] [--opportunities 6000] [--bootstrap 30]

Each seed simulates a CRM that sells products (data/simulator_products.py, true product x industry x size win
effects), estimates every cell's win rate with intervals (recommend/product_positioning.py) and compares it with
the story's true cell win rate (recommend/strategy_eval.evaluate_products): Spearman over the 72 cells, the
share of segments whose top product is the truly best one, and 90% interval coverage, each next to the raw cell
rate as the baseline. Writes the `products` section of reports/bench_recommendations.json (others are kept).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_products import ProductStory
from fulqrun_ml.machine import machine_info
from fulqrun_ml.recommend.product_positioning import product_deals, product_win_rates
from fulqrun_ml.recommend.strategy_eval import evaluate_products
from fulqrun_ml.registry.locking import atomic_write_text

REPORT = Path("reports/bench_recommendations.json")


def interval(values: list[float]) -> dict:
    """Mean and 95% t-interval over seeds."""
    x = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)], "n": len(x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--opportunities", type=int, default=6000)
    parser.add_argument("--bootstrap", type=int, default=30)
    args = parser.parse_args()
    started, runs = time.perf_counter(), []
    for seed in range(1, args.seeds + 1):
        n = args.opportunities
        crm = simulate_crm(n_opportunities=n, n_reps=n // 250, n_companies=n // 7, seed=seed, products=ProductStory())
        deals = product_deals(crm.tables.opportunities, crm.tables.companies)
        result = evaluate_products(product_win_rates(deals, args.bootstrap, seed), ProductStory())
        runs.append(result | {"closed_deals_with_product": len(deals)})
        print(f"seed {seed}: {result}", flush=True)
    keys = [k for k in runs[0] if k != "n_cells"]
    section = {k: interval([r[k] for r in runs]) for k in keys}
    section["config"] = vars(args) | {"seconds": round(time.perf_counter() - started, 1)}
    section["runs"] = runs
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report["machine"] = machine_info()
    report["products"] = section
    atomic_write_text(REPORT, json.dumps(report, indent=2))
    print(json.dumps({k: section[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
