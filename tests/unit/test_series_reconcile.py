"""Reconciliation: coherence (children sum to parents exactly), MinT's known optimum, the shrinkage rule, and the
window / baseline row order on a ragged table."""

from __future__ import annotations

import numpy as np
import pytest

from fulqrun_ml.data.series_table import summing_matrix
from fulqrun_ml.forecasting.reconcile import (
    bottom_up_projection,
    mint_projection,
    reconcile_quantiles,
    shrunk_covariance,
)

NODES, _, S = summing_matrix(["a/x", "a/y", "b/z", "b/w"], 2)  # total, a, b, 4 leaves


def test_reconciled_children_sum_to_their_parents_exactly() -> None:
    rng = np.random.default_rng(0)
    base = np.sort(rng.gamma(5.0, 10.0, size=(3, len(NODES), 4, 5)), axis=-1)  # [origins, nodes, H, Q]
    cov = shrunk_covariance(rng.normal(size=(12, len(NODES))))
    for projection in (bottom_up_projection(S), mint_projection(S, cov)):
        median = reconcile_quantiles(base, S, projection, centre=2)[..., 2]
        np.testing.assert_allclose(median[:, :3], np.einsum("nb,obh->onh", S[:3], median[:, 3:]), rtol=1e-10)
        # every other quantile moves with its median: each node keeps its interval width
        moved = reconcile_quantiles(base, S, projection, centre=2)
        np.testing.assert_allclose(moved[..., 4] - moved[..., 0], base[..., 4] - base[..., 0])


def test_bottom_up_keeps_the_leaves() -> None:
    y = np.arange(len(NODES), dtype=float)
    np.testing.assert_allclose((S @ bottom_up_projection(S) @ y)[3:], y[3:])


def test_mint_with_identity_covariance_is_the_least_squares_projection() -> None:
    """Known optimum: with W = I, MinT is OLS: the coherent vector closest to the base forecasts in L2."""
    rng = np.random.default_rng(1)
    y = rng.normal(size=len(NODES)) * 10
    mint = S @ mint_projection(S, np.eye(len(NODES))) @ y
    beta, *_ = np.linalg.lstsq(S, y, rcond=None)
    np.testing.assert_allclose(mint, S @ beta, atol=1e-8)
    # and with a diagonal W it is weighted least squares (a noisy node counts less)
    w = np.diag(rng.uniform(0.5, 4.0, size=len(NODES)))
    root = np.diag(1 / np.sqrt(np.diag(w)))
    beta_w, *_ = np.linalg.lstsq(root @ S, root @ y, rcond=None)
    np.testing.assert_allclose(S @ mint_projection(S, w) @ y, S @ beta_w, atol=1e-8)


def test_mint_leaves_a_coherent_forecast_unchanged() -> None:
    leaves = np.array([3.0, 4.0, 5.0, 6.0])
    cov = shrunk_covariance(np.random.default_rng(2).normal(size=(20, len(NODES))))
    np.testing.assert_allclose(S @ mint_projection(S, cov) @ (S @ leaves), S @ leaves, atol=1e-8)


def test_shrinkage_goes_to_the_diagonal_for_uncorrelated_noise_and_keeps_strong_correlation() -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(size=(15, 6))
    shrunk = shrunk_covariance(noise)
    full = np.cov(noise, rowvar=False)
    off = ~np.eye(6, dtype=bool)
    assert np.abs(shrunk[off]).sum() < 0.6 * np.abs(full[off]).sum()  # mostly shrunk away
    common = rng.normal(size=(200, 1))
    correlated = common + 0.05 * rng.normal(size=(200, 6))
    kept = shrunk_covariance(correlated)
    np.testing.assert_allclose(kept[off], np.cov(correlated, rowvar=False)[off], rtol=0.1)
    with pytest.raises(Exception, match="at least 2 residual vectors"):
        shrunk_covariance(noise[:1])
