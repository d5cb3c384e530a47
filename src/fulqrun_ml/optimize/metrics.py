"""Balance, compactness, travel, contiguity and disruption of a territory plan: the before/after report.

Why these: the issue's goals are stated in them (coefficient of variation and Gini of potential and workload
across territories, the share of accounts moved), and compactness / travel / contiguity are what a balanced
but sprawling plan would give away, so they are reported next to balance rather than hidden.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from fulqrun_ml.data.simulator_geo import haversine_km


def coefficient_of_variation(values: np.ndarray) -> float:
    """Population std / mean (0 when the mean is 0)."""
    values = np.asarray(values, dtype=float)
    mean = values.mean()
    return float(values.std() / mean) if mean > 0 else 0.0


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal, towards 1 = one territory holds everything)."""
    values = np.sort(np.asarray(values, dtype=float))
    n, total = len(values), values.sum()
    if n == 0 or total <= 0:
        return 0.0
    return float((2 * np.arange(1, n + 1) - n - 1) @ values / (n * total))


def _contiguous_share(accounts: pd.DataFrame, owner: np.ndarray) -> float:
    """Share of territories whose grid cells form one 8-connected piece (cells named '<row>_<col>')."""
    cells = pd.DataFrame({"cell": accounts["grid_cell"].to_numpy(), "owner": owner}).drop_duplicates()
    parts = cells["cell"].str.split("_", expand=True)
    if parts.shape[1] != 2:
        return float("nan")
    cells["row"], cells["col"] = parts[0].astype(int).to_numpy(), parts[1].astype(int).to_numpy()
    whole = 0
    for _, group in cells.groupby("owner"):
        index = {(r, c): i for i, (r, c) in enumerate(zip(group["row"], group["col"], strict=True))}
        src, dst = [], []
        for (r, c), i in index.items():
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    j = index.get((r + dr, c + dc))
                    if j is not None:
                        src.append(i)
                        dst.append(j)
        graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(len(index), len(index)))
        whole += connected_components(graph, directed=False)[0] == 1
    return whole / max(cells["owner"].nunique(), 1)


def plan_metrics(accounts: pd.DataFrame, reps: pd.DataFrame, owner: np.ndarray) -> dict[str, float]:
    """Balance across all reps (a rep with no accounts counts as an empty territory), compactness as the
    workload-weighted mean km from an account to its rep's home, yearly travel cost of the visits (a round
    trip per visit), contiguity, and the share of accounts moved from `current_rep`."""
    rep_index = pd.Index(reps["rep_id"])
    rows = rep_index.get_indexer(owner)
    n_reps = len(rep_index)
    potential = np.bincount(rows, accounts["potential"].to_numpy(), minlength=n_reps)
    workload = np.bincount(rows, accounts["workload"].to_numpy(), minlength=n_reps)
    km = haversine_km(
        accounts["latitude"].to_numpy(),
        accounts["longitude"].to_numpy(),
        reps["home_latitude"].to_numpy()[rows],
        reps["home_longitude"].to_numpy()[rows],
    )
    weight = accounts["workload"].to_numpy()
    travel = 2 * km * accounts["visits"].to_numpy() * reps["travel_cost_per_km"].to_numpy()[rows]
    over = np.maximum(workload - reps["capacity_hours"].to_numpy(), 0.0)
    return {
        "potential_cv": coefficient_of_variation(potential),
        "potential_gini": gini(potential),
        "workload_cv": coefficient_of_variation(workload),
        "workload_gini": gini(workload),
        "compactness_km": float(km @ weight / weight.sum()) if weight.sum() > 0 else float(km.mean()),
        "travel_cost_per_year": float(travel.sum()),
        "contiguous_share": _contiguous_share(accounts, np.asarray(owner)),
        "over_capacity_hours": float(over.sum()),
        "moved_fraction": float(np.mean(np.asarray(owner) != accounts["current_rep"].to_numpy())),
    }
