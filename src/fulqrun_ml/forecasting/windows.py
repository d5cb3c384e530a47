"""Revenue series -> a dense panel -> forecast windows, with time cut-offs that no window crosses.

A window is (series g, origin o): the lookback is periods o-L+1..o (known at the end of period o), the
target periods o+1..o+H. Splits are by origin *and* target: a training window's targets all end before the
validation period starts, a calibration window's before the test period starts, so no window used to fit
or calibrate anything reads a period it is later judged on (`split_origins`; tested by truncation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

CALENDAR_FEATURES = ("year_sin", "year_cos", "quarter_end", "quarter_position")
SERIES_COLUMNS = ("group", "period_start", "period_end", "revenue")


def calendar_features(period_start: pd.Series, period_end: pd.Series) -> np.ndarray:
    """[T, 4] covariates of each period, computable for any future period from its dates alone.

    - year_sin / year_cos: where the period's midpoint falls in the year (annual seasonality)
    - quarter_end: 1 if the period contains a quarter's last day (the quarter-end push lands there)
    - quarter_position: the midpoint's position in its quarter, 0..1 (early-quarter dip, late-quarter rush)
    Works for weekly and monthly periods alike, so one model definition serves both frequencies."""
    start = pd.DatetimeIndex(period_start).tz_localize(None)
    end = pd.DatetimeIndex(period_end).tz_localize(None)
    mid = start + (end - start) / 2
    year_phase = 2 * np.pi * (mid.dayofyear.to_numpy() - 1) / 365.25
    quarter_start = mid.to_period("Q").start_time
    quarter_len = (mid.to_period("Q").end_time - quarter_start).total_seconds()
    position = ((mid - quarter_start).total_seconds() / quarter_len).to_numpy()
    contains_end = (start.to_period("Q") != (end + pd.Timedelta(days=1)).to_period("Q")).astype(np.float64)
    return np.stack([np.sin(year_phase), np.cos(year_phase), contains_end, position], axis=1).astype(np.float32)


@dataclass(frozen=True)
class SeriesPanel:
    """Every group's revenue on one period grid: values [G, T], calendar [T, C] (or [G, T, C] per series)."""

    groups: list[str]
    period_start: pd.DatetimeIndex
    period_end: pd.DatetimeIndex
    values: np.ndarray
    calendar: np.ndarray
    # A user table's series start and end at different periods (NaN = not observed). With `lookback` set, only
    # (origin, series) cells whose lookback is fully observed and with an observed target exist, for the network
    # and the local baselines alike (`observed_cells`); None: every period is observed (the CRM panel).
    lookback: int | None = None

    @property
    def n_periods(self) -> int:
        return self.values.shape[1]


def panel_from_series(series: pd.DataFrame, warmup_periods: int = 0) -> SeriesPanel:
    """Pivot `revenue_series` output into a panel; the first `warmup_periods` are dropped (a CRM's first
    periods under-count bookings, because deals opened before its start are missing)."""
    missing = [c for c in SERIES_COLUMNS if c not in series.columns]
    if missing:
        raise FulqrunMLError(f"revenue series is missing column(s) {missing}")
    revenue = pd.to_numeric(series["revenue"], errors="coerce")
    if revenue.isna().any() or not np.isfinite(revenue.to_numpy()).all():
        raise FulqrunMLError("field 'revenue': contains missing, non-numeric or infinite values")
    wide = series.assign(revenue=revenue).pivot_table(
        index="group", columns="period_start", values="revenue", aggfunc="sum", fill_value=0.0
    )
    ends = series.groupby("period_start")["period_end"].first().reindex(wide.columns)
    wide, ends = wide.iloc[:, warmup_periods:], ends.iloc[warmup_periods:]
    if wide.shape[1] == 0:
        raise FulqrunMLError(f"warmup_periods={warmup_periods} leaves no periods of revenue series")
    start_index = pd.DatetimeIndex(wide.columns)
    end_index = pd.DatetimeIndex(ends.to_numpy())
    return SeriesPanel(
        groups=[str(g) for g in wide.index],
        period_start=start_index,
        period_end=end_index,
        values=wide.to_numpy(dtype=np.float32),
        calendar=calendar_features(start_index.to_series(), end_index.to_series()),
    )


def split_origins(
    n_periods: int, lookback: int, horizon: int, val_periods: int, calibration_periods: int, test_periods: int
) -> dict[str, np.ndarray]:
    """Origins (index of the last observed period) of each split, by the time of every target period:

    train: targets before the validation period; val: targets inside it (early stopping); calibration:
    targets inside the calibration period (conformal offsets); test: rolling origins whose targets lie in
    the last `test_periods` periods (the backtest). Raises naming the setting that leaves a split empty."""
    test_start = n_periods - test_periods
    cal_start = test_start - calibration_periods
    val_start = cal_start - val_periods
    bounds = {
        "train": (lookback - 1, val_start - horizon - 1),
        "val": (val_start - 1, cal_start - horizon - 1),
        "calibration": (cal_start - 1, test_start - horizon - 1),
        "test": (test_start - 1, n_periods - horizon - 1),
    }
    setting = {
        "train": "lookback / val_periods",
        "val": "val_periods",
        "calibration": "calibration_periods",
        "test": "test_periods",
    }
    origins = {}
    for split, (first, last) in bounds.items():
        first = max(first, lookback - 1)
        if last < first:
            raise FulqrunMLError(
                f"no {split} windows: {n_periods} periods with lookback={lookback}, horizon={horizon}, "
                f"val_periods={val_periods}, calibration_periods={calibration_periods}, test_periods={test_periods}"
                f" (increase the data's length or reduce {setting[split]} / horizon)"
            )
        origins[split] = np.arange(first, last + 1)
    return origins


def observed_cells(panel: SeriesPanel, origins: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(origin [N], series index [N]) of every window, origin-major: all (origin, series) pairs, or with
    `panel.lookback` set only those whose lookback is observed and with at least one observed target."""
    origins = np.asarray(origins, dtype=np.int64)
    n_groups = len(panel.groups)
    o = np.repeat(origins, n_groups)
    g = np.tile(np.arange(n_groups), len(origins))
    if panel.lookback is None:
        return o, g
    finite = np.isfinite(panel.values)
    seen = np.concatenate([np.zeros((n_groups, 1)), np.cumsum(finite, axis=1)], axis=1)  # seen[:, t] = count < t
    full = seen[g, o + 1] - seen[g, np.maximum(o + 1 - panel.lookback, 0)] == panel.lookback
    last = np.minimum(o + horizon, panel.n_periods - 1)
    future = seen[g, last + 1] - seen[g, np.minimum(o + 1, panel.n_periods)] > 0
    keep = full & future
    return o[keep], g[keep]


def make_windows(panel: SeriesPanel, origins: np.ndarray, lookback: int, horizon: int) -> dict[str, np.ndarray]:
    """Arrays for every (origin, series) of `observed_cells`: history [N, L], calendar [N, H, C], series [N]
    (1-based index), target [N, H] (NaN where the horizon runs past the panel or the series), origin [N]."""
    origins = np.asarray(origins, dtype=np.int64)
    if len(origins) and (origins.min() < lookback - 1 or origins.max() >= panel.n_periods):
        raise FulqrunMLError(f"window origins must lie in [{lookback - 1}, {panel.n_periods - 1}]")
    o, g = observed_cells(panel, origins, horizon)
    past = o[:, None] + np.arange(-lookback + 1, 1)[None, :]
    future = o[:, None] + np.arange(1, horizon + 1)[None, :]
    inside = future < panel.n_periods
    clipped = np.minimum(future, panel.n_periods - 1)
    target = np.where(inside, panel.values[g[:, None], clipped], np.nan).astype(np.float32)
    # [T, C]: covariates shared by every series (the CRM calendar); [G, T, C]: per series (a user table's
    # promotions, its static categoricals), indexed by the window's series as well.
    calendar = panel.calendar[clipped] if panel.calendar.ndim == 2 else panel.calendar[g[:, None], clipped]
    return {
        "history": panel.values[g[:, None], past].astype(np.float32),
        "calendar": calendar.astype(np.float32),
        "series": (g + 1).astype(np.int64),
        "target": target,
        "origin": o,
    }


def future_calendar(last_period_start: pd.Timestamp, freq: str, horizon: int) -> np.ndarray:
    """[H, C] calendar covariates of the H periods after the one starting at `last_period_start`: what a
    client sends as the `calendar` input to forecast from today (the periods are not in any panel yet)."""
    pandas_freq = {"W": "W-SUN", "M": "M"}.get(freq)
    if pandas_freq is None:
        raise FulqrunMLError(f"field 'freq': {freq!r} is not one of ('W', 'M')")
    last = pd.Timestamp(last_period_start).tz_localize(None).to_period(pandas_freq)
    periods = pd.period_range(last + 1, periods=horizon, freq=pandas_freq)
    return calendar_features(periods.start_time.to_series(), periods.end_time.to_series())
