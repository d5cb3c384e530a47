"""reports/pharma.json: call and sample effects on NRx vs the simulator's truth, over seeds, next to naive baselines.

    .venv/bin/python scripts/bench_pharma.py --seeds 0 1 2 3 4

Why a writer that refuses NaN: `json.dumps` writes NaN by default, which is not JSON (strict parsers reject the
whole file) and hides *why* a number is missing. An estimate a method cannot give (a difference in means has no
contrast for samples) is written as null with the reason next to it; any other non-finite number stops the
writer with the key that holds it, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from fulqrun_ml.analytics.pharma_effects import METHODS, estimate_effects, lagged_panel
from fulqrun_ml.data.simulator_pharma import simulate_pharma
from fulqrun_ml.errors import DataContractError
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_text

UNDEFINED = {
    "difference_in_means/sample": "undefined: a difference in means contrasts weeks with and without a call; "
    "samples are left on calls, so it has no separate contrast for them",
}


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds (low / high null with a reason for a single seed)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return {"mean": float(v.mean()), "low": None, "high": None, "reason": "one seed: no interval"}
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return {"mean": float(v.mean()), "low": float(v.mean() - half), "high": float(v.mean() + half)}


def non_finite_keys(value: Any, where: str = "") -> list[str]:
    """Every key path in a JSON-like value that holds NaN or +-inf."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "<root>"]
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in non_finite_keys(item, f"{where}.{key}" if where else key)]
    if isinstance(value, (list, tuple)):
        return [k for i, item in enumerate(value) for k in non_finite_keys(item, f"{where}[{i}]")]
    return []


def write_json_report(path: Path, report: dict[str, Any]) -> Path:
    """Write `report` atomically as strict JSON, or raise (writing nothing) naming every non-finite number."""
    bad = non_finite_keys(report)
    if bad:
        raise DataContractError(f"{path.name}: non-finite numbers at {bad[:5]} (write null with a reason instead)")
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False))
    return path


def effects_report(
    seeds: Sequence[int], lags: int, methods: Sequence[str] = METHODS, **simulate: Any
) -> dict[str, Any]:
    """Each method's cumulative call / sample effect per seed on the promoted and the control product."""
    runs: dict[str, list[float | None]] = {}
    truth: dict[str, float] = {}
    for seed in seeds:
        sim = simulate_pharma(seed, **simulate)
        promoted, control = sim.tables["products"]["id"]
        truth = sim.effects.cumulative(lags)
        for product, pid in (("promoted", promoted), ("control", control)):
            panel = lagged_panel(sim.tables, pid, lags, promoted)
            for method in methods:
                est = estimate_effects(panel, lags, method)
                runs.setdefault(f"{product}/{method}/call", []).append(est.call)
                runs.setdefault(f"{product}/{method}/sample", []).append(est.sample)
    estimates: dict[str, Any] = {}
    for key, values in runs.items():
        method_effect = key.split("/", 1)[1]
        if any(v is None for v in values):
            reason = UNDEFINED.get(method_effect, "undefined for this method")
            estimates[key] = {"mean": None, "low": None, "high": None, "per_seed": values, "reason": reason}
        else:
            estimates[key] = {**interval([float(v) for v in values if v is not None]), "per_seed": values}
    return {
        "estimand": f"cumulative log-lift on NRx over weeks t..t+{lags} of one extra call / sample",
        "truth": {"promoted": truth, "control": {"call": 0.0, "sample": 0.0}},
        "seeds": list(seeds),
        "estimates": estimates,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--lags", type=int, default=6)
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    report = effects_report(args.seeds, args.lags)
    write_json_report(args.reports_dir / "pharma.json", report)
    print(json.dumps(report["estimates"], indent=0)[:2000])
    return 0
