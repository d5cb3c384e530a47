"""Contiguity constraints for territory design: every unit a territory owns has an owned grid-cell neighbour
that is strictly closer to the rep's home, except the territory's seed (its unit nearest to the home).

Why this form: following "a strictly closer owned neighbour" from any owned unit must end at the seed (distances
strictly fall and the units are finite), so every territory is one 8-connected piece of grid cells. It costs one
linear row per candidate (unit, rep) pair, x_ur - sum_{v in N(u), d(v, r) < d(u, r)} x_vr <= 0, instead of a
flow formulation's extra continuous variables per pair and rep. It is sufficient, not necessary: it also
asks territories to be star-shaped around the home (no contiguous plan that winds away from the home and back),
which is the compactness the design wants anyway. Neighbours are units in the same or an 8-adjacent grid cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from fulqrun_ml.optimize.problem import OptimizeError


def cell_rows_cols(cells: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """`"<row>_<col>"` grid cells as integer rows and columns (the contract of `simulator_geo.grid_cells`)."""
    parts = cells.astype(str).str.split("_", expand=True)
    if parts.shape[1] != 2:
        raise OptimizeError("grid_cell", "contiguity needs grid cells named '<row>_<col>' (as grid_cells makes)")
    try:
        return parts[0].astype(int).to_numpy(), parts[1].astype(int).to_numpy()
    except ValueError as exc:
        raise OptimizeError("grid_cell", "contiguity needs integer '<row>_<col>' grid cells") from exc


def contiguity_rows(cells: pd.Series, km: np.ndarray, u: np.ndarray, r: np.ndarray, n_var: int) -> csr_matrix:
    """[edges x n_var] rows (upper bound 0) over the edge variables x_e, e = (u[e], r[e]); seeds get an empty row."""
    row, col = cell_rows_cols(cells)
    edges = pd.DataFrame({"e": np.arange(len(u)), "r": r, "row": row[u], "col": col[u], "d": km[u, r]})
    seed = edges.loc[edges.groupby("r")["d"].idxmin(), "e"].to_numpy()
    shifted = [edges.assign(row=edges["row"] + dr, col=edges["col"] + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    near = pd.concat(shifted, ignore_index=True).rename(columns={"e": "support", "d": "d_support"})
    pairs = edges.merge(near, on=["r", "row", "col"])
    pairs = pairs[pairs["d_support"] < pairs["d"]]
    pairs = pairs[~pairs["e"].isin(seed)]
    keep = ~np.isin(edges["e"].to_numpy(), seed)
    data = np.concatenate([np.ones(int(keep.sum())), -np.ones(len(pairs))])
    rows = np.concatenate([edges["e"].to_numpy()[keep], pairs["e"].to_numpy()])
    cols = np.concatenate([edges["e"].to_numpy()[keep], pairs["support"].to_numpy()])
    return csr_matrix((data, (rows, cols)), shape=(len(u), n_var))
