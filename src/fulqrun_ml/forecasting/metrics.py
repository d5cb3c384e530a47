"""Forecast accuracy on pooled (origin, series, horizon) cells: WAPE, MASE, scaled pinball, interval coverage.

Scale-free on purpose, so one table compares org-, region- and rep-level series and weekly with monthly:
WAPE and the pinball loss are divided by total absolute revenue (the pinball is then GluonTS' weighted
quantile loss / 2), MASE by each series' in-sample seasonal-naive error (Hyndman & Koehler, 2006).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fulqrun_ml.errors import FulqrunMLError


def _valid(y: np.ndarray) -> np.ndarray:
    return np.isfinite(y)


def wape(y: np.ndarray, point: np.ndarray) -> float:
    """Sum |y - point| / sum |y| over all finite cells."""
    ok = _valid(y)
    denominator = np.abs(y[ok]).sum()
    if denominator == 0:
        raise FulqrunMLError("WAPE is undefined: the evaluated periods booked no revenue")
    return float(np.abs(y[ok] - point[ok]).sum() / denominator)


def pinball(y: np.ndarray, q: np.ndarray, quantiles: Sequence[float]) -> float:
    """Mean pinball loss over quantiles and cells, divided by mean |y| (scale-free). y [...], q [..., Q]."""
    levels = np.asarray(quantiles, dtype=np.float64)
    ok = _valid(y)
    diff = y[ok][:, None] - q[ok]
    loss = np.maximum(levels * diff, (levels - 1.0) * diff)
    return float(loss.mean() / max(np.abs(y[ok]).mean(), 1e-12))


def mase(y: np.ndarray, point: np.ndarray, series_scale: np.ndarray) -> float:
    """Mean of |y - point| / scale of the row's series (series_scale [N] for y [N, ...]); series with a
    zero in-sample scale are skipped."""
    scale = np.broadcast_to(np.reshape(series_scale, (-1,) + (1,) * (y.ndim - 1)), y.shape)
    ok = _valid(y) & (scale > 0)
    if not ok.any():
        raise FulqrunMLError("MASE is undefined: every series has zero in-sample seasonal-naive error")
    return float((np.abs(y - point)[ok] / scale[ok]).mean())


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of cells with lower <= y <= upper."""
    ok = _valid(y)
    return float(((y[ok] >= lower[ok]) & (y[ok] <= upper[ok])).mean())


def seasonal_naive_scale(values: np.ndarray, season: int, end: int) -> np.ndarray:
    """Per series [G]: mean |y_t - y_{t-season}| over periods before `end` (MASE's in-sample denominator)."""
    history = values[:, :end]
    if history.shape[1] <= season:
        raise FulqrunMLError(f"MASE needs more than season={season} periods before the test period")
    diff = np.abs(history[:, season:] - history[:, :-season])
    # nanmean: a user table's series may start late (NaN before); a series with no pair at all gets NaN (skipped).
    counts = np.isfinite(diff).sum(axis=1)
    return np.where(counts > 0, np.nansum(diff, axis=1) / np.maximum(counts, 1), np.nan)


def forecast_report(
    y: np.ndarray,
    q: np.ndarray,
    quantiles: Sequence[float],
    series_scale: np.ndarray,
    interval: tuple[int, int],
) -> dict[str, float]:
    """All metrics of one forecaster on [N, H] targets and [N, H, Q] quantiles; `series_scale` [N] is the
    MASE scale of each row's series; `interval` indexes the quantiles bounding the reported interval."""
    centre = min(range(len(quantiles)), key=lambda i: abs(quantiles[i] - 0.5))
    point = q[..., centre]
    lo, hi = interval
    ok = _valid(y)
    scale = max(np.abs(y[ok]).mean(), 1e-12)
    return {
        "wape": wape(y, point),
        "mase": mase(y, point, series_scale),
        "pinball": pinball(y, q, quantiles),
        "coverage": coverage(y, q[..., lo], q[..., hi]),
        "interval_width": float((q[..., hi] - q[..., lo])[ok].mean() / scale),
        "cells": int(ok.sum()),
    }
