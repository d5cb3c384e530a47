"""Pricing against the simulator's true elasticity: regret versus the true optimum, next to simple baselines.

Regret of a discount d for a deal = true expected revenue at the true optimum (within the same guardrails, on
the same grid) - true expected revenue at d; 0 is perfect. The models train on closed deals created before a
time cut and are scored on every deal created after it (the truth exists for open and closed deals alike), so
no deal is both learnt from and priced. Baselines: no discount, the rep's historical discount (capped to the
guardrails), a fixed 10 % (capped), and the naive curve (the same model without the confounder proxy).
Both monotone methods (`concave_logit`, `lightgbm`) are scored, so the default is chosen on measured regret.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_pricing import PricingWorld, true_expected_revenue, true_win_probability
from fulqrun_ml.recommend.pricing import PricingConfig, fit_pricing_model, recommend_discounts

FIXED_DISCOUNT = 0.10


def model_variants(config: PricingConfig) -> dict[str, PricingConfig]:
    """Both monotone methods with the confounder proxy, and the configured method without it (the naive curve)."""
    return {
        "concave_logit_adjusted": dataclasses.replace(config, method="concave_logit"),
        "lightgbm_adjusted": dataclasses.replace(config, method="lightgbm"),
        f"{config.method}_naive": dataclasses.replace(config, adjust_for=()),
    }


def time_split(deals: pd.DataFrame, train_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows to train on (closed, created before the cut) and rows to price (created at or after it)."""
    cut = deals["created_at"].quantile(train_share)
    train = np.flatnonzero((deals["created_at"] < cut).to_numpy() & deals["closed"].to_numpy(dtype=bool))
    test = np.flatnonzero((deals["created_at"] >= cut).to_numpy())
    return train, test


def evaluate_pricing(world: PricingWorld, config: PricingConfig, train_share: float = 0.7) -> dict:
    """Regret per method (mean $ per deal and share of the optimum), curve error of adjusted vs naive."""
    deals = world.deals
    train, test = time_split(deals, train_share)
    grid = config.grid()
    truth_rev = true_expected_revenue(world, np.tile(grid, (len(test), 1)), test)
    optimum = truth_rev.max(axis=1)
    cap = grid[-1]
    choices: dict[str, np.ndarray] = {
        "no_discount": np.zeros(len(test)),
        "historical": np.minimum(deals["discount"].to_numpy(dtype=float)[test], cap),
        "fixed_10pct": np.full(len(test), min(FIXED_DISCOUNT, cap)),
    }
    curves: dict[str, np.ndarray] = {}
    intervals: dict[str, pd.DataFrame] = {}
    for name, variant in model_variants(config).items():
        rec = recommend_discounts(fit_pricing_model(deals.iloc[train], variant), deals.iloc[test])
        choices[name] = rec.table["recommended_discount"].to_numpy()
        curves[name] = rec.curve
        intervals[name] = rec.table
    true_curve = true_win_probability(world, np.tile(grid, (len(test), 1)), test)
    out: dict = {"n_train": len(train), "n_test": len(test), "discount_cap": float(cap),
                 "true_optimum_revenue_per_deal": float(optimum.mean()),
                 "true_optimal_discount_mean": float(grid[truth_rev.argmax(axis=1)].mean())}  # fmt: skip
    for name, chosen in choices.items():
        achieved = true_expected_revenue(world, chosen, test)
        out[name] = {
            "regret_per_deal": float((optimum - achieved).mean()),
            "regret_share_of_optimum": float((optimum - achieved).sum() / optimum.sum()),
            "mean_discount": float(np.mean(chosen)),
        }
    for name, curve in curves.items():
        lift = curve[:, -1] - curve[:, 0]
        true_lift = true_curve[:, -1] - true_curve[:, 0]
        table = intervals[name]
        achieved = true_expected_revenue(world, table["recommended_discount"].to_numpy(), test)
        out[name] |= {
            "curve_mae": float(np.abs(curve - true_curve).mean()),
            "estimated_win_lift_at_cap": float(lift.mean()),
            "true_win_lift_at_cap": float(true_lift.mean()),
            "revenue_interval_coverage": float(
                np.mean((table["expected_revenue_low"] <= achieved) & (achieved <= table["expected_revenue_high"]))
            ),
        }
    return out


def example_curves(world: PricingWorld, config: PricingConfig, n_deals: int = 4, train_share: float = 0.7) -> dict:
    """Estimated (adjusted and naive) and true curves for a few test deals: the benchmark's picture."""
    deals = world.deals
    train, test = time_split(deals, train_share)
    grid = config.grid()
    rows = test[np.linspace(0, len(test) - 1, n_deals).astype(int)]
    out = {"grid": grid.tolist(), "deals": []}
    fitted = {name: fit_pricing_model(deals.iloc[train], variant) for name, variant in model_variants(config).items()}
    for row in rows:
        one = deals.iloc[[row]]
        entry = {"segment": "/".join(str(one[c].iloc[0]) for c in ("industry", "size", "discount_stage")),
                 "competitor_present": bool(one["competitor_present"].iloc[0]),
                 "true": true_win_probability(world, grid[None, :], np.array([row]))[0].tolist()}  # fmt: skip
        for name, model in fitted.items():
            curves = model.curves(one, grid)[:, 0, :]
            entry[name] = curves.mean(axis=0).tolist()
            entry[f"{name}_low"] = np.percentile(curves, 5, axis=0).tolist()
            entry[f"{name}_high"] = np.percentile(curves, 95, axis=0).tolist()
        out["deals"].append(entry)
    return out
