"""Market trends: change points in win-rate series and seasonal decomposition (STL) of bookings.

Change points: binary segmentation (Vostrikova 1981; the `ruptures` "Binseg" algorithm) with the binomial
log-likelihood as the cost, written here because `ruptures` is not a dependency. Each period contributes its
(wins, decided) counts, so a quiet month weighs less than a busy one. A split is kept when it raises the
log-likelihood by more than a penalty, and segments keep at least `min_size` periods; splitting recurses on both
sides. Two penalties: "bic" (default), log(total decided deals) for the extra rate and location; "null", the
95th percentile of the best split's gain on series with *no* change (a parametric bootstrap: the pooled rate,
the same monthly counts), i.e. a 5% false-alarm rate per test, more sensitive and less strict
(reports/market_intelligence.json measures both against the simulator's known onset).

Seasonality: STL (statsmodels, Cleveland et al. 1990) on a monthly series, with the seasonal strength
F_s = max(0, 1 - Var(remainder) / Var(seasonal + remainder)) of Wang, Smith and Hyndman (2006): 0 = no
seasonality, 1 = all non-trend variation is seasonal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.tsa.seasonal import STL

from fulqrun_ml.errors import FulqrunMLError


@dataclass(frozen=True)
class ChangePoint:
    """A detected shift: the first period of the new segment and the rates before / after it."""

    index: int
    rate_before: float
    rate_after: float
    gain: float


def _loglik(wins: float, n: float) -> float:
    if n <= 0:
        return 0.0
    p = wins / n
    return float(sum(k * np.log(q) for k, q in ((wins, p), (n - wins, 1.0 - p)) if k > 0))


def _best_split(wins: np.ndarray, decided: np.ndarray, lo: int, hi: int, min_size: int) -> tuple[int, float]:
    whole = _loglik(wins[lo:hi].sum(), decided[lo:hi].sum())
    best, best_gain = -1, 0.0
    for cut in range(lo + min_size, hi - min_size + 1):
        gain = (
            _loglik(wins[lo:cut].sum(), decided[lo:cut].sum()) + _loglik(wins[cut:hi].sum(), decided[cut:hi].sum())
        ) - whole
        if gain > best_gain:
            best, best_gain = cut, gain
    return best, best_gain


def null_penalty(decided: np.ndarray, rate: float, min_size: int, alpha: float = 0.05, draws: int = 400) -> float:
    """The (1 - alpha) quantile of the best split's gain when the rate never changes (seeded: reproducible)."""
    rng = np.random.default_rng(0)
    n = np.asarray(decided, dtype=int)
    gains = [_best_split(rng.binomial(n, rate).astype(float), n.astype(float), 0, len(n), min_size)[1]
             for _ in range(draws)]  # fmt: skip
    return float(np.quantile(gains, 1.0 - alpha))


def binomial_change_points(
    wins: np.ndarray, decided: np.ndarray, penalty: float | str = "bic", min_size: int = 3
) -> list[ChangePoint]:
    """Change points of a rate series given per-period wins and decided counts (binary segmentation).
    `penalty`: a number, "bic" or "null" (see the module docstring)."""
    wins, decided = np.asarray(wins, dtype=float), np.asarray(decided, dtype=float)
    if wins.shape != decided.shape or (wins > decided).any() or (wins < 0).any():
        raise FulqrunMLError("change points: wins must be between 0 and decided, period by period")
    if len(wins) < 2 * min_size:
        return []
    if penalty == "bic":
        penalty = float(np.log(max(decided.sum(), 2.0)))
    elif penalty == "null":
        penalty = null_penalty(decided, wins.sum() / max(decided.sum(), 1.0), min_size)
    elif isinstance(penalty, str):
        raise FulqrunMLError(f"change points: penalty must be a number, 'bic' or 'null', got {penalty!r}")
    found: list[ChangePoint] = []

    def split(lo: int, hi: int) -> None:
        if hi - lo < 2 * min_size:
            return
        best, best_gain = _best_split(wins, decided, lo, hi, min_size)
        if best < 0 or best_gain <= penalty:
            return
        before = wins[lo:best].sum() / max(decided[lo:best].sum(), 1.0)
        after = wins[best:hi].sum() / max(decided[best:hi].sum(), 1.0)
        found.append(ChangePoint(best, float(before), float(after), float(best_gain)))
        split(lo, best)
        split(best, hi)

    split(0, len(wins))
    return sorted(found, key=lambda c: c.index)


def monthly_counts(deals: pd.DataFrame, group: str, freq: str = "MS") -> dict[str, pd.DataFrame]:
    """Per value of `group`: a complete monthly series of wins and decided deals (months without deals = 0)."""
    months = deals["closed_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    span = pd.date_range(months.min(), months.max(), freq=freq)
    out = {}
    for name, rows in deals.assign(month=months).groupby(group):
        counts = rows.groupby("month")["won"].agg(["sum", "size"]).reindex(span, fill_value=0)
        out[str(name)] = counts.rename(columns={"sum": "wins", "size": "decided"})
    return out


def trend_change_points(
    deals: pd.DataFrame, group: str, min_size: int = 3, penalty: float | str = "bic"
) -> list[dict[str, object]]:
    """Change points of each group's monthly win rate, as report rows (month of the shift, rates around it)."""
    rows = []
    for name, series in monthly_counts(deals, group).items():
        for point in binomial_change_points(series["wins"].to_numpy(), series["decided"].to_numpy(), penalty, min_size):
            rows.append(
                {
                    group: name,
                    "month": series.index[point.index].strftime("%Y-%m"),
                    "rate_before": round(point.rate_before, 4),
                    "rate_after": round(point.rate_after, 4),
                    "log_likelihood_gain": round(point.gain, 2),
                }
            )
    return rows


def stl_summary(series: pd.Series, period: int = 3) -> dict[str, object]:
    """STL of a monthly series: seasonal strength, the seasonal profile by position in the cycle, trend ends."""
    if len(series) < 2 * period + 1:
        raise FulqrunMLError(f"STL needs at least {2 * period + 1} months, the series has {len(series)}")
    fit = STL(series.to_numpy(dtype=float), period=period, robust=True).fit()
    seasonal, remainder = fit.seasonal, fit.resid
    strength = max(0.0, 1.0 - float(np.var(remainder)) / max(float(np.var(seasonal + remainder)), 1e-12))
    position = np.arange(len(series)) % period
    offset = int(series.index[0].month - 1) % period if isinstance(series.index, pd.DatetimeIndex) else 0
    profile = {
        int((p + offset) % period) + 1: float(seasonal[position == p].mean()) for p in range(period)
    }  # 1 = first month of the cycle (of a quarter for period 3)
    return {
        "seasonal_strength": round(strength, 4),
        "seasonal_profile": dict(sorted(profile.items())),
        "peak_position": max(profile, key=profile.get),
        "trend_first": round(float(fit.trend[0]), 2),
        "trend_last": round(float(fit.trend[-1]), 2),
    }
