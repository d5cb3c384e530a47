"""DP cross-organisation segment win rates: error vs epsilon against the simulator's truth -> reports/dp_analytics.json.

Three simulated organisations of different sizes are pooled; the truth per industry is the mean of the simulator's
latent true win probability. Baseline: the exact (non-private) empirical win rate, measured in the same run, whose
error is pure sampling noise. Intervals: 2.5/97.5 percentiles of the mean absolute error over seeds.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.privacy.dp_analytics import L1_SENSITIVITY, dp_segment_win_rates

EPSILONS = (0.1, 0.5, 1.0, 5.0)
SEEDS = range(5)
ORG_SIZES = (300, 800, 2000)


def _pooled(seed: int) -> pd.DataFrame:
    """Deal-level industry, outcome and true probability, pooled over organisations (rows stay in the bench)."""
    parts = []
    for i, n in enumerate(ORG_SIZES):
        crm = simulate_crm(n_opportunities=n, seed=100 * seed + i, organization_name=f"org{i}")
        opp = crm.tables.opportunities[["id", "company_id"]].merge(
            crm.tables.companies[["id", "industry"]].rename(columns={"id": "company_id"}), on="company_id"
        )
        lat = crm.latent[["opportunity_id", "true_win_probability", "won"]].rename(columns={"opportunity_id": "id"})
        parts.append(opp.merge(lat, on="id"))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    rows: dict[str, list[float]] = {str(e): [] for e in EPSILONS}
    rows["exact"] = []
    for seed in SEEDS:
        frame = _pooled(seed)
        frame["won"] = frame["won"].astype(int)
        truth = frame.groupby("industry")["true_win_probability"].mean()
        segments = sorted(truth.index)
        exact = frame.groupby("industry")["won"].mean().reindex(segments)
        rows["exact"].append(float(np.mean(np.abs(exact - truth.reindex(segments)))))
        for eps in EPSILONS:
            out = dp_segment_win_rates(frame, "industry", "won", eps, np.random.default_rng([seed, 7]), segments)
            rows[str(eps)].append(
                float(np.mean(np.abs(out["win_rate"].to_numpy() - truth.reindex(segments).to_numpy())))
            )
    summary = {
        k: {"mae_mean": float(np.mean(v)), "mae_ci95": [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]}
        for k, v in rows.items()
    }
    report = {
        "mechanism": f"Laplace on (count, wins) per segment, L1 sensitivity {L1_SENSITIVITY}, scale 2/epsilon",
        "truth": "mean simulator true_win_probability per industry",
        "baseline": "exact empirical win rate (no privacy), same run",
        "org_sizes": list(ORG_SIZES),
        "seeds": len(SEEDS),
        "win_rate_mae_vs_truth": summary,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
    }
    out_path = Path("reports/dp_analytics.json")
    with tempfile.NamedTemporaryFile("w", dir=out_path.parent, delete=False, suffix=".tmp") as tmp:
        json.dump(report, tmp, indent=2)
    os.replace(tmp.name, out_path)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
