"""Conformalized quantile regression (CQR, Romano et al. 2019) for multi-horizon forecasts.

Why CQR and not plain split conformal on residuals: the network already gives input-dependent intervals
(wide for a volatile rep, narrow for a whole org); CQR keeps that shape and only shifts each interval's
ends by one number per horizon step, chosen on a calibration period so that the share of calibration
targets inside reaches the nominal level. Scores are divided by each window's scale (the forecaster's
mean absolute lookback), so one offset serves series of every size; the served graph multiplies back.

Each symmetric quantile pair (q, 1 - q) is calibrated at its own level 1 - 2q; the centre is untouched.
Offsets are stored as an [H, Q] array (negative for lower ends): `ConformalForecaster` adds
`offsets * scale` inside the ONNX graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fulqrun_ml.errors import FulqrunMLError


def widest(offsets: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """Elementwise widest of several [K, H, Q] offset tables: for series no level calibrated (unseen)."""
    below = np.asarray(quantiles) < 0.5
    return np.where(below, offsets.min(axis=0), offsets.max(axis=0))


def symmetric_pairs(quantiles: Sequence[float]) -> list[tuple[int, int]]:
    """Index pairs (lower, upper) with q_lower + q_upper = 1, outermost first."""
    qs = list(quantiles)
    pairs = []
    for i, q in enumerate(qs):
        for j in range(len(qs) - 1, i, -1):
            if math.isclose(q + qs[j], 1.0, abs_tol=1e-9):
                pairs.append((i, j))
    return pairs


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level) / n empirical quantile: finite-sample valid under exchangeability."""
    scores = np.sort(scores[np.isfinite(scores)])
    n = len(scores)
    if n == 0:
        raise FulqrunMLError("conformal calibration has no finite calibration targets")
    rank = math.ceil((n + 1) * level)
    return float(scores[min(rank, n) - 1])


def fit_cqr_offsets(
    target: np.ndarray,
    predicted: np.ndarray,
    scale: np.ndarray,
    quantiles: Sequence[float],
    per_horizon: bool = True,
) -> np.ndarray:
    """target [N, H], predicted quantiles [N, H, Q], window scale [N] -> offsets [H, Q] in scale units.

    `per_horizon=False` pools the scores of all horizon steps into one offset per quantile pair: with few
    calibration windows (an organization has one series) H separate conformal quantiles are too noisy."""
    if predicted.shape[:2] != target.shape or predicted.shape[2] != len(quantiles):
        raise FulqrunMLError(f"shape mismatch: target {target.shape}, quantiles {predicted.shape}")
    y = target / scale[:, None]
    q = predicted / scale[:, None, None]
    offsets = np.zeros(predicted.shape[1:], dtype=np.float64)
    for lo, hi in symmetric_pairs(quantiles):
        level = quantiles[hi] - quantiles[lo]
        score = np.maximum(q[..., lo] - y, y - q[..., hi])  # > 0 outside the interval, < 0 inside
        for h in range(y.shape[1]):
            d = conformal_quantile(score[:, h] if per_horizon else score.ravel(), level)
            offsets[h, lo], offsets[h, hi] = -d, d
    return offsets


def apply_offsets(predicted: np.ndarray, offsets: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """NumPy twin of `ConformalForecaster`: add offsets * scale, restore monotonicity, clamp at zero.
    `offsets` is [H, Q] (every row) or [N, H, Q] (one table per row)."""
    adjusted = predicted + (offsets if offsets.ndim == 3 else offsets[None]) * scale[:, None, None]
    return np.maximum(np.maximum.accumulate(adjusted, axis=-1), 0.0)
