"""A ragged table (series that start late): the network's windows and the local baselines score the same cells."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.forecasting.backtest import local_forecasts
from fulqrun_ml.forecasting.baselines import baseline_forecasters
from fulqrun_ml.forecasting.windows import SeriesPanel, make_windows, observed_cells


def ragged_panel() -> SeriesPanel:
    values = np.arange(60, dtype=np.float32).reshape(2, 30) + 1
    values[1, :12] = np.nan  # series 2 starts at period 12
    periods = pd.date_range("2024-01-01", periods=30, freq="W-MON")
    return SeriesPanel(["a", "b"], periods, periods + pd.Timedelta(days=6), values, np.zeros((2, 30, 3)), lookback=6)


def test_windows_need_an_observed_lookback_and_baselines_follow_the_same_rows() -> None:
    panel = ragged_panel()
    origins = np.arange(5, 25)
    windows = make_windows(panel, origins, lookback=6, horizon=3)
    assert np.isfinite(windows["history"]).all()
    b_origins = windows["origin"][windows["series"] == 2]
    assert b_origins.min() == 17  # periods 12..17 are its first full lookback
    o, g = observed_cells(panel, origins, 3)
    np.testing.assert_array_equal(o, windows["origin"])
    np.testing.assert_array_equal(g + 1, windows["series"])
    naive = local_forecasts(panel, origins, 3, [0.1, 0.5, 0.9], baseline_forecasters(4)["seasonal_naive"])
    assert naive.shape == (len(o), 3, 3) and np.isfinite(naive).all()
    # the seasonal-naive median of each row is the value one season before the target: row order matches
    np.testing.assert_allclose(naive[:, 0, 1], panel.values[g, o + 1 - 4])
