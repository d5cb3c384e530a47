"""The pipeline-based revenue forecast behind the Forecast page: expected bookings per month with intervals.

Why this model: each open deal either closes won (with its probability, the served model's where it scored
the deal, else the rep's) or not, independently, so a month's bookings are a sum of Bernoulli x value. Its mean
is sum(p v) and its variance sum(p (1-p) v^2); with dozens of deals a normal approximation gives the
interval bands. Deals whose close date has passed count in the current month (they slipped but are open).
Commit = deals at p >= 0.7, best case = every open deal. A win-rate multiplier (scenario) scales p, capped at 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

BANDS = (0.1, 0.25, 0.5, 0.75, 0.9)
COMMIT_PROBABILITY = 0.7


def pipeline_forecast(open_deals: pd.DataFrame, as_of: pd.Timestamp, months: int = 3, multiplier: float = 1.0):
    """One row per month from `as_of`'s month: expected, quantile bands, commit and best case."""
    start = pd.Timestamp(as_of).tz_localize(None).to_period("M")
    periods = [start + k for k in range(months)]
    frame = open_deals[["value", "probability", "close_date"]].copy()
    frame["p"] = np.clip(frame["probability"].astype(float) * float(multiplier), 0.0, 1.0)
    close = pd.to_datetime(frame["close_date"], utc=True).dt.tz_localize(None).dt.to_period("M")
    frame["period"] = close.where(close >= start, start)
    rows = []
    for period in periods:
        month = frame[frame["period"] == period]
        v, p = month["value"].to_numpy(float), month["p"].to_numpy(float)
        mean, sd = float((p * v).sum()), float(np.sqrt((p * (1 - p) * v**2).sum()))
        row = {"month": period.to_timestamp(), "deals": len(month), "expected": mean}
        for q in BANDS:
            row[f"p{int(q * 100)}"] = max(0.0, mean + float(norm.ppf(q)) * sd)
        row["commit"] = float(v[p >= COMMIT_PROBABILITY].sum())
        row["best_case"] = float(v.sum())
        rows.append(row)
    return pd.DataFrame(rows)
