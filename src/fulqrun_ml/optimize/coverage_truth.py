"""Coverage analysis scored against the simulator's known truth (evaluation only: nothing here feeds a ranking).

- **White space**: among the accounts untouched in the window (touch gap 1, pure white space), does the ranking
  by estimated potential find the accounts with the highest TRUE potential (the simulator's expected revenue
  per year under the account's current rep, `simulator_geo.true_revenue_matrix`)? Precision@k (k = the top
  quarter) and Spearman correlation, next to a random ranking (precision k/n in expectation) and the
  "largest accounts first" ranking (size band, then employees).
- **Quota risk**: the open deals' real outcomes are in the simulator's latent table, so each territory's actual
  bookings are known: the share of territories whose actual bookings fall inside the reported interval,
  the Brier score of P(reach quota) against reaching it, and the rank correlation of expected and actual.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator_geo import GeoWorld, true_revenue_matrix

SIZE_ORDER = {"smb": 0, "mid_market": 1, "enterprise": 2}


def _precision(order: np.ndarray, truth_top: set[int], k: int) -> float:
    return len(set(order[:k].tolist()) & truth_top) / k


def white_space_truth(world: GeoWorld, table: pd.DataFrame, tables: CRMTables, top_share: float = 0.25) -> dict:
    """Precision@k and Spearman of the ranking on untouched accounts against their true potential."""
    untouched = table[table["touch_gap"] >= 1.0].reset_index(drop=True)
    n = len(untouched)
    if n < 8:
        return {"untouched_accounts": n, "note": "too few untouched accounts to score a ranking"}
    matrix = true_revenue_matrix(world, untouched["company_id"])
    rows = pd.Index(world.reps["rep_id"]).get_indexer(untouched["current_rep"])
    truth = matrix[rows, np.arange(n)]
    k = max(1, round(top_share * n))
    top = set(np.argsort(-truth, kind="stable")[:k].tolist())
    ours = np.argsort(-untouched["potential"].to_numpy(), kind="stable")
    companies = tables.companies.set_index("id").reindex(untouched["company_id"])
    size = companies["size"].map(SIZE_ORDER).fillna(0).to_numpy(dtype=float)
    employees = pd.to_numeric(companies.get("employees", pd.Series(0, index=companies.index)), errors="coerce")
    big = size + employees.fillna(0).rank(pct=True).to_numpy() / 2  # size band first, employees within it
    largest = np.argsort(-big, kind="stable")
    return {
        "untouched_accounts": n,
        "k": k,
        "precision_at_k": _precision(ours, top, k),
        "precision_at_k_largest_accounts": _precision(largest, top, k),
        "precision_at_k_random": k / n,
        "spearman": float(stats.spearmanr(untouched["potential"], truth).statistic),
        "spearman_largest_accounts": float(
            stats.spearmanr(size + employees.fillna(0).rank(pct=True) / 2, truth).statistic
        ),
        "true_potential_captured": float(truth[ours[:k]].sum() / truth[list(top)].sum()),
    }


def quota_truth(latent: pd.DataFrame, pipeline: pd.DataFrame, quota: pd.DataFrame) -> dict:
    """Interval coverage, Brier score and rank correlation of the quota forecast against actual bookings."""
    won = latent.assign(opportunity_id=latent["opportunity_id"].astype(str)).set_index("opportunity_id")["won"]
    outcome = won.reindex(pipeline["opportunity_id"]).fillna(False).to_numpy(dtype=float)
    actual = pipeline.assign(v=pipeline["value"] * outcome).groupby("territory")["v"].sum()
    table = quota.set_index("rep_id")
    actual = actual.reindex(table.index, fill_value=0.0)
    has = table["open_deals"] > 0
    inside = (table["bookings_low"] <= actual) & (actual <= table["bookings_high"])
    reached = (actual >= table["quota"]).astype(float)
    return {
        "territories_with_open_deals": int(has.sum()),
        "interval_coverage": float(inside[has].mean()) if has.any() else float("nan"),
        "brier_p_reach_quota": float(((table["p_reach_quota"] - reached) ** 2).mean()),
        "brier_base_rate": float(((reached.mean() - reached) ** 2).mean()),
        "spearman_expected_vs_actual": float(stats.spearmanr(table["expected_bookings"], actual).statistic),
        "actual_bookings_total": float(actual.sum()),
        "expected_bookings_total": float(table["expected_bookings"].sum()),
    }
