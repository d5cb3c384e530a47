"""Product-positioning signals: win rate by product x segment (industry x size), with bootstrap intervals.

Why a model and not the raw table: 4 products x 6 industries x 3 sizes are 72 cells, most with a few dozen closed
deals, so raw rates mostly rank noise. A Binomial GLM with product, industry and size main effects and the
product x industry and product x size interactions (statsmodels) borrows strength across cells: each cell's rate
comes from its row and column, and the interactions carry "this product wins in this industry". Each cell's own
record is then shrunk toward that prediction (beta-binomial, strength by the method of moments), as the segment
ranking does (recommend/strategy.py). Intervals are 5-95 % percentiles over bootstrap resamples of the deals.

Products are optional in the contract (`opportunities.product`, v4; missing -> "unknown"): deals without a
known product are left out, and an export with none yields no table (`ProductPositioningUnavailable`), not an
error about the rest of the strategy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import statsmodels.api as sm

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError

CELL = ("product", "industry", "size")
UNKNOWN = "unknown"


class ProductPositioningUnavailable(FulqrunMLError):
    """The export carries no product on its closed deals (the optional column is absent or all unknown)."""


def product_deals(opportunities: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """Closed deals with a known product, their account's industry and size, and the outcome."""
    for column in ("id", "industry", "size"):
        if column not in companies.columns:
            raise FieldValidationError(f"companies.{column}", "missing")
    for column in ("company_id", "stage"):
        if column not in opportunities.columns:
            raise FieldValidationError(f"opportunities.{column}", "missing")
    if "product" not in opportunities.columns:
        raise ProductPositioningUnavailable("opportunities.product is absent: the export carries no products")
    closed = opportunities[opportunities["stage"].isin(["closed_won", "closed_lost"])]
    product = closed["product"].fillna(UNKNOWN).astype(str)
    closed = closed[product != UNKNOWN]
    if closed.empty:
        raise ProductPositioningUnavailable("opportunities.product: no closed deal has a known product")
    company = companies.set_index("id").reindex(closed["company_id"])
    return pd.DataFrame(
        {
            "product": closed["product"].astype(str).to_numpy(),
            "industry": company["industry"].fillna(UNKNOWN).astype(str).to_numpy(),
            "size": company["size"].fillna(UNKNOWN).astype(str).to_numpy(),
            "won": (closed["stage"] == "closed_won").to_numpy(),
        }
    )


def _design(frame: pd.DataFrame, levels: dict[str, list[str]]) -> np.ndarray:
    """Intercept, main effects (first level as reference) and product x industry, product x size interactions."""
    one_hot = {c: [(frame[c].to_numpy() == v).astype(float) for v in levels[c][1:]] for c in CELL}
    columns = [np.ones(len(frame)), *one_hot["product"], *one_hot["industry"], *one_hot["size"]]
    for other in ("industry", "size"):
        columns += [p * o for p in one_hot["product"] for o in one_hot[other]]
    return np.stack(columns, axis=1)


def _cell_rates(deals: pd.DataFrame, cells: pd.DataFrame, levels: dict[str, list[str]]) -> np.ndarray:
    """GLM prediction per cell, then each cell's own wins shrunk toward it (beta-binomial)."""
    x = _design(deals, levels)
    # IRLS (a handful of least-squares solves, pseudo-inverse: a cell a bootstrap resample left empty is harmless).
    fit = sm.GLM(deals["won"].to_numpy(dtype=float), x, family=sm.families.Binomial()).fit(maxiter=25)
    prior = 1.0 / (1.0 + np.exp(-np.clip(_design(cells, levels) @ np.asarray(fit.params), -30, 30)))
    grouped = deals.groupby(list(CELL))["won"].agg(["sum", "size"])
    grouped = grouped.reindex(pd.MultiIndex.from_frame(cells[list(CELL)])).fillna(0.0)
    wins, n = grouped["sum"].to_numpy(), grouped["size"].to_numpy()
    seen = n > 0
    residual = wins[seen] / n[seen] - prior[seen]
    noise = float(np.sum(prior[seen] * (1 - prior[seen])))
    between = max((float(np.sum(n[seen] * residual**2)) - noise) / max(float(n[seen].sum()), 1.0), 1e-5)
    strength = float(np.clip(np.mean(prior[seen] * (1 - prior[seen])) / between - 1.0, 1.0, 1e4))
    return (wins + strength * prior) / (n + strength)


def product_win_rates(deals: pd.DataFrame, n_bootstrap: int = 100, seed: int = 0) -> pd.DataFrame:
    """Win rate per product x industry x size with 5-95 % bootstrap intervals, the raw rate and deal count, and
    each product's rank within its segment (1 = the product that wins most there)."""
    if n_bootstrap < 2:
        raise FieldValidationError("n_bootstrap", f"must be at least 2, got {n_bootstrap}")
    levels = {c: sorted(set(deals[c])) for c in CELL}
    index = pd.MultiIndex.from_product([levels[c] for c in CELL], names=list(CELL))
    cells = index.to_frame(index=False)
    rng = np.random.default_rng(seed)
    draws = np.stack(
        [_cell_rates(deals.iloc[rng.integers(0, len(deals), len(deals))], cells, levels) for _ in range(n_bootstrap)]
    )
    table = cells.copy()
    grouped = deals.groupby(list(CELL))["won"].agg(["mean", "size"]).reindex(index)
    table["n_deals"] = grouped["size"].fillna(0).to_numpy(dtype=int)
    table["raw_win_rate"] = grouped["mean"].to_numpy(dtype=float)
    table["win_rate"] = _cell_rates(deals, cells, levels)
    table["win_rate_low"] = np.percentile(draws, 5, axis=0)
    table["win_rate_high"] = np.percentile(draws, 95, axis=0)
    table["rank_in_segment"] = table.groupby(["industry", "size"])["win_rate"].rank(ascending=False, method="first")
    return table.astype({"rank_in_segment": int})
