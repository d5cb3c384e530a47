"""Blend the pipeline forecast with a time-series forecast, and calibrate intervals, from earlier origins only.

Why rolling: a blend weight or an interval width fitted on the backtest it is scored on would flatter it. At each
origin j the weight and the conformal (CQR) offset are fitted on the cells (origin i, step k) whose target was
observed by origin j (i + k <= j): the origins before the backtest (the forecaster's calibration period) and the
earlier backtest origins. `tests/unit/test_pipeline_blend.py` checks that changing a later target never moves an
earlier origin's blend.

The blend is quantile averaging (Vincentisation): w * q_pipeline + (1 - w) * q_series per quantile; w minimises the
absolute error of the median on the observed cells over a fixed grid. CQR widens (or narrows) the interval pair by
the 80% quantile of max(lo - y, y - hi) / median over the observed cells, the score scaled by the forecast's
own size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

WEIGHT_GRID = np.linspace(0.0, 1.0, 21)
PRIOR_WEIGHT = 0.5  # no observed cell yet: an equal blend


def observed_before(origins: np.ndarray, horizon: int, origin: int) -> np.ndarray:
    """[N, H] mask: cells (origins[n], step k + 1) whose target period is <= `origin` (known at that origin)."""
    return (np.asarray(origins)[:, None] + np.arange(1, horizon + 1)[None, :]) <= origin


def fit_weight(pipeline_median: np.ndarray, series_median: np.ndarray, y: np.ndarray) -> float:
    """The grid weight of the pipeline forecast minimising sum |y - blend| (ties: the smaller weight)."""
    ok = np.isfinite(y)
    if not ok.any():
        return PRIOR_WEIGHT
    errors = [np.abs(y[ok] - (w * pipeline_median[ok] + (1 - w) * series_median[ok])).sum() for w in WEIGHT_GRID]
    return float(WEIGHT_GRID[int(np.argmin(errors))])


def conformal_offset(lo: np.ndarray, hi: np.ndarray, median: np.ndarray, y: np.ndarray, level: float) -> float:
    """The `level` quantile (interpolated) of the scaled CQR score; 0 with no observed cell.

    Not the finite-sample corrected rank ceil((n + 1) level) / n of split conformal: that guarantees *at least*
    `level` and, with the 12-40 cells a monthly backtest has, over-covers by 5-8 points (11/13 = 85% expected at
    n = 12); the goal here is a band around 80%, so the plain quantile is the unbiased choice."""
    ok = np.isfinite(y)
    if not ok.any():
        return 0.0
    scale = np.maximum(np.abs(median[ok]), 1e-9)
    scores = np.maximum(lo[ok] - y[ok], y[ok] - hi[ok]) / scale
    return float(np.quantile(scores, level))


def apply_offset(q: np.ndarray, offset: float, pair: tuple[int, int], centre: int) -> np.ndarray:
    """Move the interval pair of q [..., Q] out by offset * median, keep the quantiles monotone and >= 0."""
    out = q.copy()
    lo, hi = pair
    scale = np.abs(q[..., centre])
    out[..., lo] = q[..., lo] - offset * scale
    out[..., hi] = q[..., hi] + offset * scale
    out = np.sort(out, axis=-1)
    return np.maximum(out, 0.0)


def rolling_blend(
    origins: np.ndarray,
    pipeline_q: np.ndarray,
    series_q: np.ndarray,
    target: np.ndarray,
    score_origins: Sequence[int],
    quantiles: Sequence[float],
    pair: tuple[int, int],
    level: float,
) -> dict[str, np.ndarray]:
    """For each origin in `score_origins`: the blend (weight + CQR from cells observed by then), the pipeline
    forecast with its own CQR, and the weights used. Inputs: one row per origin, [N, H, Q] quantiles and [N, H]
    targets over every origin (earlier ones included)."""
    centre = min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))
    horizon = target.shape[1]
    blend, pipeline_cqr, weights, offsets = [], [], [], []
    for origin in score_origins:
        seen = observed_before(origins, horizon, int(origin))
        y = np.where(seen, target, np.nan)
        w = fit_weight(pipeline_q[..., centre], series_q[..., centre], y)
        mixed = np.sort(w * pipeline_q + (1 - w) * series_q, axis=-1)
        offset = conformal_offset(mixed[..., pair[0]], mixed[..., pair[1]], mixed[..., centre], y, level)
        row = int(np.flatnonzero(origins == origin)[0])
        blend.append(apply_offset(mixed[row], offset, pair, centre))
        p_off = conformal_offset(pipeline_q[..., pair[0]], pipeline_q[..., pair[1]], pipeline_q[..., centre], y, level)
        pipeline_cqr.append(apply_offset(pipeline_q[row], p_off, pair, centre))
        weights.append(w)
        offsets.append(offset)
    return {
        "blend": np.stack(blend),
        "pipeline_cqr": np.stack(pipeline_cqr),
        "weight": np.asarray(weights),
        "offset": np.asarray(offsets),
    }
