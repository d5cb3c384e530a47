"""Rolling-origin backtest: every test origin forecasts its next H periods from data up to the origin only.

The network is trained once (on windows whose targets end before validation) and rolled forward over the
test period, reading the newly observed periods as its lookback, as it would be used in production; the
local baselines are refitted at every origin on the series' full history up to it. All forecasters are
scored on the same (origin, series, horizon) cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.baselines import LocalForecaster
from fulqrun_ml.forecasting.metrics import forecast_report, seasonal_naive_scale
from fulqrun_ml.forecasting.windows import SeriesPanel, observed_cells


def local_forecasts(
    panel: SeriesPanel, origins: np.ndarray, horizon: int, quantiles: Sequence[float], forecaster: LocalForecaster
) -> np.ndarray:
    """[N, H, Q] in `make_windows` row order (`observed_cells`: origin-major, then series), each from the
    observed part of values[g, :origin + 1] (a series that starts late has NaN before its first period)."""
    rows = []
    for o, g in zip(*observed_cells(panel, origins, horizon), strict=True):
        history = panel.values[g, : int(o) + 1].astype(np.float64)
        rows.append(forecaster(history[np.isfinite(history)], horizon, quantiles))
    return np.stack(rows).astype(np.float64)


def interval_indices(quantiles: Sequence[float], level: float) -> tuple[int, int]:
    """Indices of the quantile pair (q, 1 - q) with 1 - 2q = level, e.g. 0.1 and 0.9 for an 80% interval."""
    for i, lo in enumerate(quantiles):
        for j, hi in enumerate(quantiles):
            if j > i and np.isclose(hi - lo, level) and np.isclose(lo + hi, 1.0):
                return i, j
    raise FulqrunMLError(f"field 'interval': no quantile pair in {list(quantiles)} spans a {level:.0%} interval")


def backtest_report(
    panel: SeriesPanel,
    windows: dict[str, np.ndarray],
    forecasts: dict[str, np.ndarray],
    quantiles: Sequence[float],
    season: int,
    test_start: int,
    interval: float,
    rows: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of every forecaster on the test windows (or the boolean `rows` of them, e.g. one level);
    MASE is scaled by each series' in-sample (before the test period) seasonal-naive error."""
    keep = np.ones(len(windows["target"]), dtype=bool) if rows is None else rows
    scale = seasonal_naive_scale(panel.values.astype(np.float64), season, test_start)[windows["series"][keep] - 1]
    pair = interval_indices(quantiles, interval)
    target = windows["target"][keep].astype(np.float64)
    return {name: forecast_report(target, q[keep], quantiles, scale, pair) for name, q in forecasts.items()}
