"""reports/pharma.json: call and sample effects on NRx vs the simulator's truth, over seeds, next to naive baselines.

.venv/bin/python scripts/bench_pharma.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from fulqrun_ml.analytics.pharma_effects import METHODS, estimate_effects, lagged_panel
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_text


def interval(values: list[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds."""
    v = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
    return {"mean": float(v.mean()), "low": float(v.mean() - half), "high": float(v.mean() + half)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--lags", type=int, default=6)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    runs: dict[str, list[float]] = {}
    for seed in args.seeds:
        sim = simulate_pharma(seed)
        promoted, control = sim.tables["products"]["id"]
        for product, pid in (("promoted", promoted), ("control", control)):
            panel = lagged_panel(sim.tables, pid, args.lags, promoted)
            for method in METHODS:
                est = estimate_effects(panel, args.lags, method)
                runs.setdefault(f"{product}/{method}/call", []).append(est.call)
                runs.setdefault(f"{product}/{method}/sample", []).append(est.sample)
    truth = sim.effects.cumulative(args.lags)
    report = {
        "estimand": f"cumulative log-lift on NRx over weeks t..t+{args.lags} of one extra call / sample",
        "truth": {"promoted": truth, "control": {"call": 0.0, "sample": 0.0}},
        "seeds": args.seeds,
        "estimates": {k: {**interval(v), "per_seed": v} for k, v in runs.items()},
        "machine": machine_info(),
    }
    path = args.reports_dir / "pharma.json"
    atomic_write_text(path, json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report["estimates"].items()}, indent=0)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
