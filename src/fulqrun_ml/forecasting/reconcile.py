"""Hierarchical reconciliation: bottom-up and MinT with a shrunk covariance (Wickramasuriya, Athanasopoulos &
Hyndman 2019), so that every parent's forecast equals the sum of its children's.

Hand-written in NumPy because no pinned library does it: statsmodels has no reconciliation, and Nixtla's
hierarchicalforecast / sktime are not dependencies (a few lines of linear algebra do not justify either).
Nodes are ordered as `data.series_table.summing_matrix` orders them: S [n_nodes, n_bottom], bottom last.

Quantiles: the point (median) forecasts are reconciled; every other quantile of a node moves by its median's
shift, so a node keeps its own calibrated interval width around a coherent centre (summing children's quantiles
would not give the parent's quantile).
"""

from __future__ import annotations

import numpy as np

from fulqrun_ml.errors import FulqrunMLError


def shrunk_covariance(residuals: np.ndarray) -> np.ndarray:
    """Schäfer-Strimmer shrinkage of the residual covariance towards its diagonal (residuals [n, k])."""
    x = np.asarray(residuals, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise FulqrunMLError(f"MinT needs at least 2 residual vectors, got {n}")
    centred = x - x.mean(axis=0)
    sd = centred.std(axis=0, ddof=1)
    sd = np.where(sd > 0, sd, 1.0)
    z = centred / sd
    w = np.einsum("ni,nj->nij", z, z)
    corr = w.sum(axis=0) / (n - 1)
    var_corr = n / (n - 1) ** 3 * ((w - w.mean(axis=0)) ** 2).sum(axis=0)
    off = ~np.eye(x.shape[1], dtype=bool)
    denominator = (corr[off] ** 2).sum()
    lam = float(np.clip(var_corr[off].sum() / denominator, 0.0, 1.0)) if denominator > 0 else 1.0
    cov = np.cov(x, rowvar=False, ddof=1)
    return lam * np.diag(np.diag(cov)) + (1 - lam) * cov


def mint_projection(summing: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """P [n_bottom, n_nodes] = (S' W^-1 S)^-1 S' W^-1: the reconciled nodes are S P y_hat."""
    w = covariance + 1e-9 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))  # ridge: W may be singular
    w_inv_s = np.linalg.solve(w, summing)
    return np.linalg.solve(summing.T @ w_inv_s, w_inv_s.T)


def bottom_up_projection(summing: np.ndarray) -> np.ndarray:
    """P that keeps the bottom forecasts and ignores every parent's own."""
    n_nodes, n_bottom = summing.shape
    return np.hstack([np.zeros((n_bottom, n_nodes - n_bottom)), np.eye(n_bottom)])


def reconcile_quantiles(quantiles: np.ndarray, summing: np.ndarray, projection: np.ndarray, centre: int) -> np.ndarray:
    """quantiles [..., n_nodes, H, Q] -> the same with coherent medians (see the module docstring)."""
    median = quantiles[..., centre]  # [..., n_nodes, H]
    coherent = np.einsum("nb,bm,...mh->...nh", summing, projection, median)
    return quantiles + (coherent - median)[..., None]
