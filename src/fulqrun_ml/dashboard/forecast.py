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


def moments(open_deals: pd.DataFrame, as_of: pd.Timestamp, multiplier: float = 1.0) -> pd.DataFrame:
    """Per month: deals, sum(p v), sum(p (1-p) v^2), commit, best case; the pandas twin of
    `ScopedWarehouse.forecast_moments` (which the pages use; a test holds the two equal)."""
    start = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None).to_period("M")
    frame = open_deals[["value", "probability", "close_date"]].copy()
    frame["p"] = np.clip(frame["probability"].astype(float) * float(multiplier), 0.0, 1.0)
    close = pd.to_datetime(frame["close_date"], utc=True).dt.tz_localize(None).dt.to_period("M")
    frame["month"] = close.where(close >= start, start).dt.to_timestamp()
    frame["pv"] = frame["p"] * frame["value"]
    frame["var"] = frame["p"] * (1 - frame["p"]) * frame["value"] ** 2
    frame["commit_value"] = frame["value"].where(frame["p"] >= COMMIT_PROBABILITY, 0.0)
    grouped = frame.groupby("month", as_index=False).agg(
        deals=("value", "size"), expected=("pv", "sum"), variance=("var", "sum"), commit=("commit_value", "sum"),
        best_case=("value", "sum"),
    )  # fmt: skip
    return grouped


def bands(month_moments: pd.DataFrame, as_of: pd.Timestamp, months: int = 3) -> pd.DataFrame:
    """One row per month from `as_of`'s month: expected, quantile bands (normal approximation), commit, best."""
    start = pd.Timestamp(as_of).tz_convert("UTC").tz_localize(None).to_period("M")
    table = month_moments.assign(month=pd.to_datetime(month_moments["month"]).dt.to_period("M")).set_index("month")
    rows = []
    for k in range(months):
        period = start + k
        m = table.loc[period] if period in table.index else None
        mean = float(m["expected"]) if m is not None else 0.0
        sd = float(np.sqrt(m["variance"])) if m is not None else 0.0
        row = {"month": period.to_timestamp(), "deals": int(m["deals"]) if m is not None else 0, "expected": mean}
        for q in BANDS:
            row[f"p{int(q * 100)}"] = max(0.0, mean + float(norm.ppf(q)) * sd)
        row["commit"] = float(m["commit"]) if m is not None else 0.0
        row["best_case"] = float(m["best_case"]) if m is not None else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def pipeline_forecast(open_deals: pd.DataFrame, as_of: pd.Timestamp, months: int = 3, multiplier: float = 1.0):
    """The forecast from a frame of open deals (value, probability, close_date)."""
    return bands(moments(open_deals, as_of, multiplier), as_of, months)
