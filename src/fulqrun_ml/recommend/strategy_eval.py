"""Segment ranking against the simulator's true segment parameters (Spearman), next to the raw win rate.

The story (`simulate_crm` step 3) makes a segment's true win probability
E[sigmoid(-0.4 + industry + size + 1.3 z + 0.6 skill - 0.25 log(v / 50k))] over z, skill ~ N(0, 1) and
v ~ lognormal(log 40k, 0.9): a sum of Gaussians on the log-odds, integrated by Gauss-Hermite quadrature. Region
has no effect in the story, so the truth ties across regions (Spearman ranks ties by their average) and a
ranking that orders regions by noise pays for it. The expected value per deal E[v p] is checked the same way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.data.simulator import INDUSTRY_EFFECT, SIZE_EFFECT
from fulqrun_ml.data.simulator_products import PRODUCTS, ProductStory

LOGIT_SD = float(np.sqrt(1.3**2 + 0.6**2 + (0.25 * 0.9) ** 2))


def true_segment_parameters(segments: pd.DataFrame, shift: np.ndarray | None = None) -> pd.DataFrame:
    """True win probability and expected won value per deal for each (industry, size) of `segments`; `shift`
    adds a known logit effect per row (a product's, simulator_products.py)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    c = -0.4 + segments["industry"].map(INDUSTRY_EFFECT).to_numpy() + segments["size"].map(SIZE_EFFECT).to_numpy()
    c = c + (0.0 if shift is None else np.asarray(shift, dtype=float))
    # log v = log 40k + 0.9 e_v; the logit is linear in it, so sample e_v jointly with the rest on a 2-D grid.
    other_sd = float(np.sqrt(1.3**2 + 0.6**2))
    e_v = nodes[None, :, None]
    logit = c[:, None, None] + other_sd * nodes[None, None, :] - 0.25 * (np.log(40_000 / 50_000) + 0.9 * e_v)
    p = 1.0 / (1.0 + np.exp(-logit))
    w = weights[None, :, None] * weights[None, None, :]
    value = 40_000 * np.exp(0.9 * e_v)
    return pd.DataFrame({"true_win_rate": (p * w).sum(axis=(1, 2)), "true_value_per_deal": (p * value * w).sum((1, 2))})


def evaluate_strategy(table: pd.DataFrame) -> dict:
    """Spearman of estimated vs true segment win rate (ours and the raw rate) and of expected value per deal."""
    known = table[table["industry"].isin(INDUSTRY_EFFECT) & table["size"].isin(SIZE_EFFECT)].reset_index(drop=True)
    truth = true_segment_parameters(known)
    raw = known["raw_win_rate"].fillna(known["raw_win_rate"].mean())
    value_per_deal = known["velocity"] * known["cycle_days"]  # win rate x mean value
    return {
        "n_segments": len(known),
        "win_rate_spearman": float(stats.spearmanr(known["win_rate"], truth["true_win_rate"]).statistic),
        "raw_win_rate_spearman": float(stats.spearmanr(raw, truth["true_win_rate"]).statistic),
        "value_per_deal_spearman": float(stats.spearmanr(value_per_deal, truth["true_value_per_deal"]).statistic),
    }


def evaluate_products(table: pd.DataFrame, story: ProductStory) -> dict:
    """Product x segment win rates (recommend/product_positioning.py) against the story's truth: Spearman over
    all cells (ours and the raw rate), and how often the top product of a segment is the truly best one."""
    known = table[
        table["product"].isin(PRODUCTS) & table["industry"].isin(INDUSTRY_EFFECT) & table["size"].isin(SIZE_EFFECT)
    ].reset_index(drop=True)
    shift = [story.true_effect(p, i, s) for p, i, s in known[["product", "industry", "size"]].itertuples(index=False)]
    truth = known.assign(true_win_rate=true_segment_parameters(known, np.asarray(shift))["true_win_rate"].to_numpy())
    raw = known["raw_win_rate"].fillna(known["raw_win_rate"].mean())
    segments = truth.groupby(["industry", "size"])
    best_true = segments["true_win_rate"].idxmax()
    best_ours = segments["win_rate"].idxmax()
    best_raw = raw.groupby([truth["industry"], truth["size"]]).idxmax()
    inside = (truth["win_rate_low"] <= truth["true_win_rate"]) & (truth["true_win_rate"] <= truth["win_rate_high"])
    return {
        "n_cells": len(known),
        "win_rate_spearman": float(stats.spearmanr(known["win_rate"], truth["true_win_rate"]).statistic),
        "raw_win_rate_spearman": float(stats.spearmanr(raw, truth["true_win_rate"]).statistic),
        "top_product_accuracy": float((best_ours == best_true).mean()),
        "raw_top_product_accuracy": float((best_raw == best_true).mean()),
        "interval_90_coverage": float(inside.mean()),
    }
