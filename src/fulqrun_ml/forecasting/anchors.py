"""The statistical anchors of issue 16: AutoETS, AutoARIMA and Theta, on the same backtest cells as the network.

statsforecast 2.0.1 installs with our pins (pip --dry-run with numpy 1.26.4 / pandas 3.0.6 / scipy / torch held;
it adds numba, fugue, coreforecast) but is not a project dependency, so these anchors use statsmodels, already
pinned: holtwinters ExponentialSmoothing with the trend chosen by AICc (AutoETS), ARIMA with
d from a KPSS test and (p, q) by AICc (AutoARIMA), and ThetaModel (Theta).

Protocol: like the network (trained once, then rolled forward reading new periods), AutoETS and AutoARIMA choose
their form and estimate their parameters once per series on the data up to the first test origin, then forecast
every origin from the data up to it with those parameters (state updated by filtering); so does Theta.
Seasonality (with two cycles of history) is handled for all three the way Theta does it: classical
decomposition on the history up to the first origin, the non-seasonal model on the adjusted series, the
forecast re-seasonalised (statsforecast's AutoETS would drop a 52-week season altogether). Quantiles are each
model's own Gaussian intervals (ARIMA, Theta) or its in-sample errors widened with the horizon (ETS, as
`baselines` does), clamped at zero.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.signal import lfilter
from scipy.stats import norm
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.forecasting.theta import ThetaModel
from statsmodels.tsa.holtwinters import ExponentialSmoothing
from statsmodels.tsa.seasonal import seasonal_decompose
from statsmodels.tsa.stattools import kpss

from fulqrun_ml.forecasting.baselines import _smoothing_quantiles
from fulqrun_ml.forecasting.windows import SeriesPanel, observed_cells

ANCHORS = ("auto_ets", "auto_arima", "theta")
ARIMA_PQ = ((0, 1), (1, 0), (1, 1))


@dataclass(frozen=True)
class Seasonality:
    """Seasonal indices of one cycle, aligned to absolute period index t (index[t % season])."""

    index: np.ndarray
    multiplicative: bool

    def adjust(self, y: np.ndarray, start: int = 0) -> np.ndarray:
        s = self.index[(start + np.arange(len(y))) % len(self.index)]
        return y / s if self.multiplicative else y - s

    def restore(self, q: np.ndarray, start: int) -> np.ndarray:
        s = self.index[(start + np.arange(q.shape[0])) % len(self.index)][:, None]
        return q * s if self.multiplicative else q + s


def fit_seasonality(history: np.ndarray, season: int) -> Seasonality | None:
    """Classical decomposition's seasonal indices, or None with fewer than two cycles (or no cycle)."""
    if season <= 1 or len(history) < 2 * season or np.ptp(history) == 0:
        return None
    multiplicative = bool((history > 0).all())
    result = seasonal_decompose(history, model="multiplicative" if multiplicative else "additive", period=season)
    seasonal = np.asarray(result.seasonal, dtype=np.float64)
    index = np.empty(season)
    for k in range(season):  # the history starts at t = 0, so position k of the cycle is seasonal[k]
        index[k] = seasonal[k]
    return Seasonality(index, multiplicative)


def _gaussian(point: np.ndarray, sd: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    return point[:, None] + np.asarray(sd)[:, None] * norm.ppf(np.asarray(quantiles))[None, :]


def _fit_ets(y: np.ndarray) -> Any:
    """Holt(-Winters) without seasonality, trend none / additive / damped, by AICc."""
    best = None
    for trend, damped in ((None, False), ("add", False), ("add", True)):
        if trend is not None and len(y) < 10:
            continue
        fit = ExponentialSmoothing(y, trend=trend, damped_trend=damped, initialization_method="estimated").fit()
        if best is None or fit.aicc < best[0]:
            best = (fit.aicc, trend, damped, fit)
    assert best is not None
    return best


def _ets_at(y: np.ndarray, chosen: tuple, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    """The chosen ETS with its first-origin parameters, filtered over y (no re-estimation)."""
    _, trend, damped, fit = chosen
    params = {k: fit.params[k] for k in ("smoothing_level", "smoothing_trend", "damping_trend") if k in fit.params}
    params = {k: v for k, v in params.items() if v is not None and np.isfinite(v)}
    model = ExponentialSmoothing(
        y,
        trend=trend,
        damped_trend=damped,
        initialization_method="known",
        initial_level=fit.params["initial_level"],
        initial_trend=fit.params.get("initial_trend") if trend else None,
    )
    refit = model.fit(optimized=False, **params)
    return _smoothing_quantiles(refit, y, horizon, quantiles)


def _fit_arima(y: np.ndarray) -> Any:
    """d in {0, 1} by KPSS (level stationarity at 5%), then (p, q) by AICc; drift / constant included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = int(kpss(y, regression="c", nlags="auto")[1] < 0.05) if np.ptp(y) > 0 else 0
    best = None
    for p, q in ARIMA_PQ:
        # innovations MLE: the same likelihood as the default state-space fit, ~15x faster on these lengths
        fit = ARIMA(y, order=(p, d, q), trend="t" if d else "c").fit(method="innovations_mle")
        if best is None or fit.aicc < best.aicc:
            best = fit
    return best


def _arima_at(fit: Any, y: np.ndarray, horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    applied = fit.apply(y)
    forecast = applied.get_forecast(horizon)
    return _gaussian(np.asarray(forecast.predicted_mean), np.asarray(forecast.se_mean), quantiles)


def _fit_theta(y: np.ndarray) -> dict[str, float]:
    """ThetaModel (theta = 2) on the data up to the first origin: its SES alpha, drift b0 and one-step sd."""
    fit = ThetaModel(y, period=1, deseasonalize=False).fit()
    band = np.asarray(fit.prediction_intervals(1, alpha=0.2), dtype=np.float64)
    alpha = float(np.clip(fit.params["alpha"], 1e-6, 1.0))
    return {
        "alpha": alpha,
        "b0": float(fit.params["b0"]),
        "sd1": float((band[0, 1] - band[0, 0]) / (2 * norm.ppf(0.9))),
    }


def _theta_at(y: np.ndarray, fitted: dict[str, float], horizon: int, quantiles: Sequence[float]) -> np.ndarray:
    """Theta's forecast with the first-origin parameters: statsmodels' ThetaModel cannot re-filter with fixed
    parameters and refitting it at every origin dominated the backtest's time, so its closed form (Hyndman &
    Billah 2003, as ThetaModelResults.forecast_components writes it) is evaluated here on the data up to the origin:
    0.5 * b0 * (h - 1 + 1/alpha - (1 - alpha)^T / alpha) + the SES level;
    variance sd1^2 (1 + (h - 1)(1 + (alpha - 1)^2))."""
    alpha, b0 = fitted["alpha"], fitted["b0"]
    level = lfilter([alpha], [1.0, alpha - 1.0], y, zi=[(1 - alpha) * y[0]])[0][-1]  # l_t = a y_t + (1 - a) l_{t-1}
    h = np.arange(1, horizon + 1, dtype=np.float64)
    point = 0.5 * b0 * (h - 1 + 1 / alpha - (1 - alpha) ** len(y) / alpha) + level
    sd = fitted["sd1"] * np.sqrt(1 + (h - 1) * (1 + (alpha - 1) ** 2))  # as ThetaModelResults.prediction_intervals
    return _gaussian(point, sd, quantiles)


def anchor_forecasts(
    panel: SeriesPanel, origins: np.ndarray, horizon: int, quantiles: Sequence[float], season: int
) -> dict[str, np.ndarray]:
    """{anchor: [N, H, Q]} in `make_windows` row order (observed_cells), under the protocol above."""
    o_rows, g_rows = observed_cells(panel, origins, horizon)
    out = {name: np.zeros((len(o_rows), horizon, len(quantiles))) for name in ANCHORS}
    first_origin = int(np.min(origins))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in np.unique(g_rows):
            values = panel.values[g].astype(np.float64)
            start = int(np.argmax(np.isfinite(values)))  # first observed period of this series
            fitted = _fit_series(values[start : first_origin + 1], season)
            for row in np.flatnonzero(g_rows == g):
                history = values[start : int(o_rows[row]) + 1]
                history = np.nan_to_num(history)  # after the last observation nothing is forecast from
                for name, q in _forecast_series(fitted, history, horizon, quantiles).items():
                    out[name][row] = q
    return out


def _fit_series(history: np.ndarray, season: int) -> dict[str, Any]:
    seasonality = fit_seasonality(history, season)
    adjusted = seasonality.adjust(history) if seasonality else history
    return {
        "seasonality": seasonality,
        "ets": _fit_ets(adjusted),
        "arima": _fit_arima(adjusted),
        "theta": _fit_theta(adjusted),
    }


def _forecast_series(
    fitted: dict[str, Any], history: np.ndarray, horizon: int, quantiles: Sequence[float]
) -> dict[str, np.ndarray]:
    seasonality: Seasonality | None = fitted["seasonality"]
    adjusted = seasonality.adjust(history) if seasonality else history
    raw = {
        "auto_ets": _ets_at(adjusted, fitted["ets"], horizon, quantiles),
        "auto_arima": _arima_at(fitted["arima"], adjusted, horizon, quantiles),
        "theta": _theta_at(adjusted, fitted["theta"], horizon, quantiles),
    }
    result = {}
    for name, q in raw.items():
        q = seasonality.restore(q, len(history)) if seasonality else q
        result[name] = np.maximum(np.sort(q, axis=-1), 0.0)
    return result
