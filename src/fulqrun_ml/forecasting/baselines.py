"""Forecast baselines that sit in the same table as the network: seasonal naive, SES and Holt-Winters.

Each is local (fitted per series, per origin, on that series' whole history up to the origin) and returns
quantiles the same way, so coverage and pinball loss compare like with like: the point forecast is the
method's own (the seasonal-naive value, the smoothing forecast), the other quantiles add the empirical
quantiles of its in-sample errors, centred on their median and widened with the horizon. Exponential
smoothing comes from statsmodels (maintained, well tested) rather than being written here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from statsmodels.tools.sm_exceptions import ConvergenceWarning
from statsmodels.tsa.holtwinters import ExponentialSmoothing, SimpleExpSmoothing

from fulqrun_ml.errors import FulqrunMLError

# (history up to the origin [T], horizon, quantile levels) -> quantiles [H, Q]
LocalForecaster = Callable[[np.ndarray, int, Sequence[float]], np.ndarray]


def _quantiles_from_errors(
    point: np.ndarray, errors: np.ndarray, quantiles: Sequence[float], widen: np.ndarray
) -> np.ndarray:
    """point [H] + (error quantiles - their median) * widen [H] -> [H, Q], clamped at zero (revenue >= 0)."""
    errors = errors[np.isfinite(errors)]
    if len(errors) == 0:
        errors = np.zeros(1)
    spread = np.quantile(errors, quantiles) - np.median(errors)
    return np.maximum(point[:, None] + widen[:, None] * spread[None, :], 0.0)


def seasonal_naive(history: np.ndarray, horizon: int, quantiles: Sequence[float], season: int) -> np.ndarray:
    """y_{T+h} = y_{T+h-k*season} (k = seasons back to observed data); errors are the in-sample seasonal
    differences, widened by sqrt(k) for horizons reaching more than one season back."""
    if len(history) <= season:
        raise FulqrunMLError(f"seasonal naive needs more than season={season} periods, got {len(history)}")
    n = len(history)
    h = np.arange(horizon)
    k = h // season + 1
    point = history[n + h - k * season]
    errors = history[season:] - history[:-season]
    return _quantiles_from_errors(point.astype(np.float64), errors, quantiles, np.sqrt(k))


def _smoothing_quantiles(fit: object, history: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    point = np.asarray(fit.forecast(horizon), dtype=np.float64)  # type: ignore[attr-defined]
    alpha = float(fit.params.get("smoothing_level", 0.0) or 0.0)  # type: ignore[attr-defined]
    errors = history - np.asarray(fit.fittedvalues, dtype=np.float64)  # type: ignore[attr-defined]
    # Variance of an h-step SES forecast is sigma^2 (1 + (h-1) alpha^2) (Hyndman & Athanasopoulos, ch. 8.7).
    widen = np.sqrt(1.0 + np.arange(horizon) * alpha**2)
    return _quantiles_from_errors(point, errors, quantiles, widen)


def simple_exponential_smoothing(history: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    """SES (level only, smoothing level estimated by statsmodels)."""
    history = np.asarray(history, dtype=np.float64)
    if np.ptp(history) == 0:  # a constant (often all-zero) series: nothing to fit, forecast the constant
        return np.full((horizon, len(quantiles)), max(history[-1], 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = SimpleExpSmoothing(history, initialization_method="estimated").fit()
    return _smoothing_quantiles(fit, history, horizon, quantiles)


def holt_winters(history: np.ndarray, horizon: int, quantiles: Sequence[float], season: int) -> np.ndarray:
    """Additive-seasonal exponential smoothing without trend (bookings have a level and a quarterly shape);
    falls back to SES while there are fewer than two seasons of history."""
    history = np.asarray(history, dtype=np.float64)
    if len(history) < 2 * season or np.ptp(history) == 0:
        return simple_exponential_smoothing(history, horizon, quantiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        model = ExponentialSmoothing(
            history, trend=None, seasonal="add", seasonal_periods=season, initialization_method="estimated"
        )
        fit = model.fit()
    return _smoothing_quantiles(fit, history, horizon, quantiles)


def baseline_forecasters(season: int) -> dict[str, LocalForecaster]:
    """The baselines of the leaderboard, by the names its rows use."""
    return {
        "seasonal_naive": lambda h, n, q: seasonal_naive(h, n, q, season),
        "ses": simple_exponential_smoothing,
        "holt_winters": lambda h, n, q: holt_winters(h, n, q, season),
    }
