"""A shape-constrained logistic curve: win log-odds = baseline(deal) + sum_j w_j(segment) min(d, knot_j), w >= 0.

Why a second model next to the monotone LightGBM: a tree ensemble learns the discount effect as steps from a
few thousand deals whose discounts cluster below 10 %, and its per-deal optimum jumps between steps. Economics
tells us more than "non-decreasing": each extra point of discount buys less (diminishing returns). Hinge
functions min(d, knot) are non-decreasing and concave, so any non-negative combination is too: the curve is
**monotone and concave by construction** (the bounds of L-BFGS-B, scipy, keep every weight >= 0). The weights
vary by segment through non-negative one-hot modifiers (industry, size, negotiation stage, competitor), so the
elasticity is heterogeneous, and every deal's slope is a sum of non-negative terms. The knots sit at quantiles
of the logged discounts (not at the simulator's scale): the curve is flat beyond the largest, so it never
promises a gain where no deal was ever discounted. A small L2 penalty keeps rare segments near the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError

CATEGORICAL = ("industry", "size", "discount_stage")


def hinges(discount: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """[n x knots] min(d, knot): non-decreasing, concave, flat beyond the knot."""
    return np.minimum(discount[:, None], knots[None, :])


def data_knots(discount: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Knots at quantiles of the logged positive discounts. The largest one bounds the curve: beyond it the model
    claims no further gain, because no history supports one there (no extrapolation outside the data's support)."""
    positive = discount[discount > 0]
    if len(positive) < 10:
        raise FieldValidationError("discount", f"only {len(positive)} deals carry a discount: no curve can be learnt")
    knots = np.unique(np.round(np.quantile(positive, quantiles), 4))
    return knots[knots > 0]


@dataclass
class ConcaveLogit:
    """One fitted curve model: baseline weights, non-negative discount weights, the encodings it was fitted on."""

    levels: dict[str, list[str]]
    adjust: dict[str, tuple[float, float]]  # proxy -> (mean, sd) used to standardise it
    knots: np.ndarray
    baseline: np.ndarray
    slopes: np.ndarray  # [knots x modifiers], >= 0 when fitted monotone

    def _baseline_x(self, deals: pd.DataFrame) -> np.ndarray:
        parts = [np.ones((len(deals), 1))]
        for column in CATEGORICAL:
            values = deals[column].astype(str).to_numpy()
            parts += [(values == level).astype(float)[:, None] for level in self.levels[column][1:]]
        parts.append(deals["competitor_present"].astype(bool).to_numpy().astype(float)[:, None])
        parts.append(np.log(deals["value"].to_numpy(dtype=float) / 50_000)[:, None])
        for column, (mean, sd) in self.adjust.items():
            parts.append(((pd.to_numeric(deals[column]).to_numpy(dtype=float) - mean) / sd)[:, None])
        return np.concatenate(parts, axis=1)

    def _modifiers(self, deals: pd.DataFrame) -> np.ndarray:
        parts = [np.ones((len(deals), 1))]
        for column in CATEGORICAL:
            values = deals[column].astype(str).to_numpy()
            parts += [(values == level).astype(float)[:, None] for level in self.levels[column]]
        competitor = deals["competitor_present"].astype(bool).to_numpy().astype(float)
        parts += [competitor[:, None], 1.0 - competitor[:, None]]
        return np.concatenate(parts, axis=1)

    def curves(self, deals: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
        """[deals x grid] P(win) at each discount."""
        hinge = hinges(np.asarray(grid, dtype=float), self.knots)  # grid x knots
        slope = np.einsum("gk,nm,km->ng", hinge, self._modifiers(deals), self.slopes)
        return 1.0 / (1.0 + np.exp(-(self._baseline_x(deals) @ self.baseline)[:, None] - slope))


def fit_concave_logit(
    deals: pd.DataFrame, adjust_for: tuple[str, ...], knot_quantiles: tuple[float, ...], l2: float, monotone: bool
) -> ConcaveLogit:
    """Penalised maximum likelihood with the discount weights bounded at 0 (L-BFGS-B)."""
    levels = {c: sorted(deals[c].astype(str).unique()) for c in CATEGORICAL}
    adjust = {}
    for column in adjust_for:
        values = pd.to_numeric(deals[column]).to_numpy(dtype=float)
        adjust[column] = (float(values.mean()), float(values.std()) or 1.0)
    knots = data_knots(deals["discount"].to_numpy(dtype=float), knot_quantiles)
    empty = ConcaveLogit(levels, adjust, knots, np.zeros(0), np.zeros(0))
    x = empty._baseline_x(deals)
    modifiers = empty._modifiers(deals)
    hinge = hinges(deals["discount"].to_numpy(dtype=float), empty.knots)
    z = (hinge[:, :, None] * modifiers[:, None, :]).reshape(len(deals), -1)
    y = deals["won"].astype(bool).to_numpy().astype(float)
    n_base = x.shape[1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = x @ w[:n_base] + z @ w[n_base:]
        p = 1.0 / (1.0 + np.exp(-eta))
        penalty = np.r_[0.0, w[1:]]  # the intercept is not penalised
        grad = np.concatenate([x.T @ (p - y), z.T @ (p - y)]) + l2 * penalty
        return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * l2 * np.sum(penalty**2)), grad

    bounds = [(None, None)] * n_base + [(0.0 if monotone else None, None)] * z.shape[1]
    result = minimize(loss, np.zeros(n_base + z.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds)
    if not np.all(np.isfinite(result.x)):
        raise FulqrunMLError(f"the concave pricing curve did not converge: {result.message}")
    slopes = result.x[n_base:].reshape(len(knots), modifiers.shape[1])
    return ConcaveLogit(levels, adjust, knots, result.x[:n_base], slopes)
