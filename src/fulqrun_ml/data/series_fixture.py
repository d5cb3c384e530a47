"""A synthetic public-style series table (weekly sales by region x store) with a known truth, seeded.

Generated here rather than downloaded (M5 / Walmart-style data cannot ship with the repository, and a
generator gives the ground truth every claim is checked against). The story, with its effect sizes
(docs/simulator.md, "Series fixture"):

  mean_{s,t} = base_s * (1 + trend_s * years_t) * (1 + amp_s * sin(2 pi doy_t / 365.25 + phase_r))
                * (1 + HOLIDAY_LIFT * holiday_t) * (1 + PROMO_LIFT * promo_{s,t}) * TYPE_LEVEL[type_s]
  sales_{s,t} = max(mean_{s,t} * (1 + NOISE_CV * z_{s,t}), 0),   z ~ N(0, 1) iid

- `holiday` (known future, the same for every store): weeks holding 4 July, late November (Thanksgiving /
  Black Friday) and Christmas Eve;
- `promo` (known future, per store): a planned promotion week, each week with probability PROMO_RATE;
- `store_type` (static categorical A / B / C): a level multiplier.
The truth returned alongside is mean_{s,t}: the oracle's point forecast, whose WAPE is the noise floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HOLIDAY_LIFT = 0.5
PROMO_LIFT = 0.3
PROMO_RATE = 0.08
NOISE_CV = 0.12
TYPE_LEVEL = {"A": 1.3, "B": 1.0, "C": 0.7}


@dataclass(frozen=True)
class SeriesFixture:
    """The table a user would hand over (with `future_weeks` rows of known covariates and no target at the end)
    and the truth: the expected sales of every row (NaN on future rows)."""

    table: pd.DataFrame
    truth: pd.Series


def holiday_weeks(week_start: pd.DatetimeIndex) -> np.ndarray:
    """1.0 for weeks (Monday start) holding 4 July, 24-28 November or 24 December."""
    flags = np.zeros(len(week_start))
    for i, start in enumerate(week_start):
        days = pd.date_range(start, periods=7, freq="D")
        hit = ((days.month == 7) & (days.day == 4)) | ((days.month == 11) & (days.day >= 24) & (days.day <= 28))
        hit |= (days.month == 12) & (days.day == 24)
        flags[i] = float(hit.any())
    return flags


def make_series_fixture(
    n_regions: int = 3,
    stores_per_region: int = 5,
    weeks: int = 156,
    future_weeks: int = 4,
    start: str = "2023-01-02",
    seed: int = 0,
) -> SeriesFixture:
    """Weekly sales of n_regions x stores_per_region stores over `weeks` weeks, long format."""
    rng = np.random.default_rng(seed)
    total_weeks = weeks + future_weeks
    week_start = pd.date_range(start, periods=total_weeks, freq="W-MON")
    years = np.arange(total_weeks) / 52.0
    doy = week_start.dayofyear.to_numpy()
    holiday = holiday_weeks(week_start)
    rows, truth = [], []
    for r in range(n_regions):
        phase = rng.uniform(-0.6, 0.6)
        for s in range(stores_per_region):
            store_type = str(rng.choice(list(TYPE_LEVEL)))
            base = rng.lognormal(np.log(2000.0), 0.5)
            trend = rng.uniform(-0.05, 0.15)
            amp = rng.uniform(0.15, 0.4)
            promo = (rng.uniform(size=total_weeks) < PROMO_RATE).astype(float)
            mean = (
                base
                * (1 + trend * years)
                * (1 + amp * np.sin(2 * np.pi * doy / 365.25 + phase))
                * (1 + HOLIDAY_LIFT * holiday)
                * (1 + PROMO_LIFT * promo)
                * TYPE_LEVEL[store_type]
            )
            sales = np.maximum(mean * (1 + NOISE_CV * rng.standard_normal(total_weeks)), 0.0)
            sales[weeks:] = np.nan  # future rows: known covariates, no target yet
            mean = np.where(np.arange(total_weeks) < weeks, mean, np.nan)
            rows.append(
                pd.DataFrame(
                    {
                        "region": f"R{r + 1}",
                        "store": f"S{r + 1}{s + 1:02d}",
                        "week": week_start,
                        "sales": sales.round(2),
                        "holiday": holiday,
                        "promo": promo,
                        "store_type": store_type,
                    }
                )
            )
            truth.append(mean)
    table = pd.concat(rows, ignore_index=True)
    return SeriesFixture(table, pd.Series(np.concatenate(truth), index=table.index, name="expected_sales"))
