"""Forecast windows never read the future: cut-offs, a truncation test, calendar covariates, bad input."""

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.task_snapshots import revenue_series
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.windows import calendar_features, make_windows, panel_from_series, split_origins

LOOKBACK, HORIZON, VAL, CAL, TEST = 8, 3, 6, 6, 10


@pytest.fixture(scope="module")
def weekly(tiny_crm) -> pd.DataFrame:
    return revenue_series(tiny_crm.tables, freq="W", by="region")


def windows_of(series: pd.DataFrame) -> tuple[dict, dict]:
    panel = panel_from_series(series, warmup_periods=4)
    origins = split_origins(panel.n_periods, LOOKBACK, HORIZON, VAL, CAL, TEST)
    return panel, {s: make_windows(panel, o, LOOKBACK, HORIZON) for s, o in origins.items()}


def test_splits_are_ordered_and_targets_stay_before_the_next_period(weekly):
    panel, _ = windows_of(weekly)
    origins = split_origins(panel.n_periods, LOOKBACK, HORIZON, VAL, CAL, TEST)
    test_start = panel.n_periods - TEST
    cal_start, val_start = test_start - CAL, test_start - CAL - VAL
    assert origins["train"].max() + HORIZON < val_start
    assert origins["val"].min() == val_start - 1 and origins["val"].max() + HORIZON < cal_start
    assert origins["calibration"].max() + HORIZON < test_start
    assert origins["test"].min() == test_start - 1 and origins["test"].max() + HORIZON == panel.n_periods - 1


@pytest.mark.parametrize(("split", "cut_offset"), [("train", VAL + CAL + TEST), ("calibration", TEST)])
def test_changing_data_after_the_cut_off_changes_no_window(weekly, split, cut_offset):
    """Truncation test: rewrite every period from the split's cut-off on; its windows stay byte-identical."""
    panel, before = windows_of(weekly)
    cut = panel.period_start[panel.n_periods - cut_offset]
    altered = weekly.copy()
    late = altered["period_start"] >= cut
    altered.loc[late, "revenue"] = altered.loc[late, "revenue"] * 7 + 1234.0
    _, after = windows_of(altered)
    for key in ("history", "calendar", "series", "target", "origin"):
        np.testing.assert_array_equal(before[split][key], after[split][key], err_msg=key)
    # ...while the test windows, which do read those periods, change (the test can fail).
    assert not np.array_equal(before["test"]["target"], after["test"]["target"])


def test_window_contents_line_up_with_the_panel(weekly):
    panel, windows = windows_of(weekly)
    w = windows["test"]
    row = 5
    g, o = w["series"][row] - 1, w["origin"][row]
    np.testing.assert_array_equal(w["history"][row], panel.values[g, o - LOOKBACK + 1 : o + 1])
    np.testing.assert_array_equal(w["target"][row], panel.values[g, o + 1 : o + 1 + HORIZON])
    np.testing.assert_array_equal(w["calendar"][row], panel.calendar[o + 1 : o + 1 + HORIZON])


def test_calendar_marks_quarter_ends():
    months = pd.period_range("2025-01", "2025-12", freq="M")
    cal = calendar_features(months.start_time.to_series(), months.end_time.to_series())
    assert cal[:, 2].tolist() == [0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1]
    weeks = pd.period_range("2025-03-17", periods=4, freq="W-SUN")  # the week of Mon 31 March holds no Q end
    cal_w = calendar_features(weeks.start_time.to_series(), weeks.end_time.to_series())
    assert cal_w[:, 2].tolist() == [0, 0, 1, 0]  # 24-30 March ends Sunday 30th; 31st is in the next week
    assert np.all((cal[:, 3] >= 0) & (cal[:, 3] <= 1))


def test_too_short_data_names_the_setting():
    with pytest.raises(FulqrunMLError, match="test_periods"):
        split_origins(40, LOOKBACK, HORIZON, VAL, CAL, 40)


def test_bad_revenue_names_the_field(weekly):
    bad = weekly.copy()
    bad.loc[3, "revenue"] = np.nan
    with pytest.raises(FulqrunMLError, match="field 'revenue'"):
        panel_from_series(bad)


@pytest.mark.parametrize("freq", ["W", "M"])
def test_future_calendar_continues_the_panel(tiny_crm, freq):
    """The calendar a client computes for the next periods equals the panel's for periods it already holds."""
    from fulqrun_ml.forecasting.windows import future_calendar

    panel = panel_from_series(revenue_series(tiny_crm.tables, freq=freq, by="organization"))
    origin = panel.n_periods - 4
    np.testing.assert_array_equal(
        future_calendar(panel.period_start[origin], freq, 3), panel.calendar[origin + 1 : origin + 4]
    )
    with pytest.raises(FulqrunMLError, match="field 'freq'"):
        future_calendar(panel.period_start[0], "D", 3)
