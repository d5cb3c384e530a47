"""Which calendar days are working days: weekends and a documented holiday set.

The simulator uses this to keep activities and deal closes off days nobody works (docs/simulator.md).
The holiday set is the US federal holidays as observed (New Year's Day, MLK Day, Presidents' Day, Memorial
Day, Juneteenth, Independence Day, Labor Day, Columbus Day, Veterans Day, Thanksgiving, Christmas), taken
from pandas' `USFederalHolidayCalendar` rather than a hand-kept list, so observed-day rules (a holiday on a
Saturday is observed on the Friday) come from a maintained source. Day arithmetic uses numpy's business-day
functions (`np.is_busday`, `np.busday_offset`), which take the same holiday array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

HOLIDAY_CALENDAR = "US federal (pandas USFederalHolidayCalendar, observed dates)"


def holidays_between(start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Holiday dates (datetime64[D]) from `start` to `end` inclusive; a little margin either side so rolling
    a date across the boundary still sees the neighbouring holidays."""
    margin = pd.Timedelta(days=31)
    dates = USFederalHolidayCalendar().holidays(
        start=pd.Timestamp(start).tz_localize(None) - margin, end=pd.Timestamp(end).tz_localize(None) + margin
    )
    return dates.to_numpy().astype("datetime64[D]")


def calendar_dates(start: pd.Timestamp, day_offsets: np.ndarray) -> np.ndarray:
    """The UTC calendar date (datetime64[D]) of each moment `start + day_offsets` days.

    Converted exactly as the simulator stamps its timestamps (`pd.to_timedelta(..., unit="D")`), so the date
    seen here is the date of the stored `created_at` / `changed_at`."""
    moments = pd.Timestamp(start).tz_localize(None) + pd.to_timedelta(np.asarray(day_offsets, dtype=float), unit="D")
    return moments.to_numpy().astype("datetime64[D]")


def is_holiday(dates: np.ndarray, holidays: np.ndarray) -> np.ndarray:
    """True where the date is in the holiday set."""
    return np.isin(np.asarray(dates, dtype="datetime64[D]"), holidays)


def is_weekend(dates: np.ndarray) -> np.ndarray:
    """True on Saturdays and Sundays."""
    return ~np.is_busday(np.asarray(dates, dtype="datetime64[D]"))


def roll_to_business_day(
    day_offsets: np.ndarray, start: pd.Timestamp, holidays: np.ndarray, after: np.ndarray
) -> np.ndarray:
    """Move each moment on a weekend or holiday to the same time of day on the previous working day, or to the
    next working day where the previous one would not be later than `after` (e.g. when the deal entered its
    final stage). Moments already on a working day are returned unchanged."""
    offsets = np.asarray(day_offsets, dtype=float)
    dates = calendar_dates(start, offsets)
    back = np.busday_offset(dates, 0, roll="backward", holidays=holidays)
    forward = np.busday_offset(dates, 0, roll="forward", holidays=holidays)
    earlier = offsets - (dates - back).astype(np.int64)
    later = offsets + (forward - dates).astype(np.int64)
    return np.where(earlier > after, earlier, later)
