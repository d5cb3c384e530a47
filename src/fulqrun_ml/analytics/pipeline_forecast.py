"""Pipeline-based bookings forecast: open pipeline x win probability x P(close in period), plus deals not yet created.

Why a forecast of its own: a time series of past bookings cannot see that this quarter's pipeline is thin or fat;
the open deals can. Sales leaders read it as a range ("commit" = a low quantile, "best case" = a high one), and
here that range is a simulated distribution, measured on a backtest, not a +-10% rule of thumb.

At a forecast origin t (the end of the last observed period), for each deal open at t:
- P(win) from a logistic model on the deal-win FeatureSpec (`features/deal_features.py`, the spine's features
  and its linear baseline `evaluation/logistic_baseline.py`), trained on snapshots *before* t of deals whose
  outcome was known *at* t (closed at or before t);
- P(close in period k | won, stage) from the survival curve of the close, with won and lost as competing events
  (`pipeline_timing.py`: why not the plain Kaplan-Meier curve), fitted on earlier snapshots of the origin's
  phase with the deals still open at t censored at t.

Bookings are simulated: each deal wins with its probability (Bernoulli) and closes in a period drawn from its
timing distribution; deals not yet created at t add one bootstrap draw of what deals created after earlier
origins of the same seasonal phase booked in their first H periods (the historical create-to-close rate).
Nothing here reads an outcome after t: `tests/unit/test_pipeline_forecast.py` flips every outcome after t and
checks the forecast does not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.analytics.pipeline_timing import WonTimingCurves
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.evaluation.logistic_baseline import LinearFit, fit_logistic
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features

CLOSED = ("closed_won", "closed_lost")
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class PipelineForecastSettings:
    """horizon: periods ahead; train_periods: how many earlier snapshots train the win model at an origin;
    timing_snapshots: how many earlier snapshots *of the origin's phase* fit the close-timing curves (a deal open
    at a quarter's end closes on another clock than one open mid-quarter: the quarter-end pull);
    new_deal_origins: how many earlier same-phase origins the not-yet-created component bootstraps from;
    season: the phase (3 = month within the quarter for monthly periods); draws: Monte-Carlo samples."""

    horizon: int = 3
    train_periods: int = 24
    timing_snapshots: int = 12
    new_deal_origins: int = 8
    season: int = 3
    draws: int = 4000
    quantiles: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class DealSnapshots:
    """Every deal open at each snapshot time (the period ends), with its deal-win features at that time and its
    eventual outcome (close time NaT while still open at extraction). Features read only rows <= as_of."""

    rows: pd.DataFrame  # opportunity_id, as_of, stage_index, features..., value, closed_at, won
    period_ends: pd.DatetimeIndex  # snapshot times, one per period, in order
    freq: str = "M"


def _pandas_freq(freq: str) -> str:
    pandas_freq = {"M": "M", "W": "W-SUN"}.get(freq)
    if pandas_freq is None:
        raise FulqrunMLError(f"field 'freq': {freq!r} must be 'M' or 'W'")
    return pandas_freq


def next_period_ends(origin: pd.Timestamp, freq: str, horizon: int) -> pd.DatetimeIndex:
    """The origin's period end and the ends of the `horizon` periods after it (they may lie in the future)."""
    period = origin.tz_convert("UTC").tz_localize(None).to_period(_pandas_freq(freq))
    return pd.DatetimeIndex([(period + k).end_time for k in range(horizon + 1)]).tz_localize("UTC")


def period_ends(tables: CRMTables, freq: str = "M") -> pd.DatetimeIndex:
    """The last instant of every complete period (calendar month or Monday-start week) before extraction,
    the same grid `data.task_snapshots.revenue_series` books revenue on."""
    pandas_freq = _pandas_freq(freq)
    first = tables.opportunities["created_at"].min().tz_localize(None).to_period(pandas_freq)
    last = tables.extracted_at.tz_localize(None).to_period(pandas_freq) - 1
    periods = pd.period_range(first, last, freq=pandas_freq)
    return pd.DatetimeIndex(periods.end_time).tz_localize("UTC")


def closes(tables: CRMTables) -> pd.DataFrame:
    """Per deal ever closed: closed_at (its won/lost stage change), won, value and created_at."""
    history = tables.stage_history[tables.stage_history["to_stage"].isin(CLOSED)]
    last = history.sort_values("changed_at", kind="stable").drop_duplicates("opportunity_id", keep="last")
    opps = tables.opportunities.set_index("id").reindex(last["opportunity_id"])
    return pd.DataFrame(
        {
            "opportunity_id": last["opportunity_id"].to_numpy(),
            "closed_at": pd.to_datetime(last["changed_at"], utc=True).to_numpy(),
            "won": (last["to_stage"] == "closed_won").to_numpy(),
            "value": pd.to_numeric(opps["value"], errors="coerce").to_numpy(dtype=float),
            "created_at": pd.to_datetime(opps["created_at"], utc=True).to_numpy(),
        }
    )


def build_deal_snapshots(tables: CRMTables, ends: pd.DatetimeIndex, freq: str = "M") -> DealSnapshots:
    """Open deals at every period end, their features then (one point-in-time definition shared with the deal-win
    task) and their outcome from stage history (used only where it is known at the origin, see `training_rows`)."""
    index = pd.concat([open_deals_as_of(tables, e) for e in ends], ignore_index=True)
    if index.empty:
        raise FulqrunMLError("opportunities: no deal is open at any period end; nothing to forecast from")
    features = compute_deal_features(tables, index[["opportunity_id", "as_of"]])
    outcome = closes(tables).set_index("opportunity_id")
    rows = features.assign(
        stage_index=index["stage_index"].to_numpy(),
        closed_at=pd.to_datetime(outcome["closed_at"].reindex(index["opportunity_id"]).to_numpy(), utc=True),
        won=outcome["won"].reindex(index["opportunity_id"]).fillna(False).to_numpy(dtype=bool),
    )
    return DealSnapshots(rows.reset_index(drop=True), ends, freq)


def training_rows(snapshots: DealSnapshots, origin: pd.Timestamp, train_periods: int) -> pd.DataFrame:
    """Snapshots of the `train_periods` period ends before `origin`, each with what was known *at* origin:
    `closed_by_origin` (outcome known), `duration_days` (to the close, or censored at origin) and `label`
    (closed by origin, the Kaplan-Meier event). The win model reads only rows with `closed_by_origin`."""
    earlier = snapshots.period_ends[snapshots.period_ends < origin][-train_periods:]
    rows = snapshots.rows[snapshots.rows["as_of"].isin(earlier)]
    closed = rows["closed_at"].notna().to_numpy() & (rows["closed_at"] <= origin).to_numpy()
    end = rows["closed_at"].where(closed, origin)
    return rows.assign(
        closed_by_origin=closed,
        duration_days=((end - rows["as_of"]) / DAY).to_numpy(dtype=float),
        label=closed.astype(float),
        won=rows["won"].to_numpy() & closed,
    )


@dataclass
class OriginModels:
    """The models as they stood at one origin: encoders + win model, close-timing curves on the period grid."""

    encoders: object
    win: LinearFit
    timing: WonTimingCurves
    train_rows: int

    def win_probability(self, rows: pd.DataFrame) -> np.ndarray:
        arrays = self.encoders.encode(rows[DEAL_WIN_FEATURES.names])  # type: ignore[attr-defined]
        return self.win.predict(arrays)

    def close_period_probabilities(self, rows: pd.DataFrame) -> np.ndarray:
        """[N, H + 1]: P(close in period 1..H | won), then P(later | won)."""
        return self.timing.predict(rows["stage_index"].to_numpy())


def fit_origin_models(train: pd.DataFrame, timing: pd.DataFrame, edges_days: np.ndarray) -> OriginModels:
    """Win model on the `train` rows closed by the origin; per-stage won-close timing on the `timing` rows (open
    ones censored at the origin)."""
    known = train[train["closed_by_origin"]]
    if known.empty or known["won"].nunique() < 2:
        raise FulqrunMLError("opportunities: too few deals closed (won and lost) before the origin to fit P(win)")
    encoders = DEAL_WIN_FEATURES.fit(known[DEAL_WIN_FEATURES.names])
    arrays = encoders.encode(known[DEAL_WIN_FEATURES.names])
    win = fit_logistic({**arrays, "target": known["won"].to_numpy(dtype=float)})
    return OriginModels(encoders, win, WonTimingCurves.fit(timing, edges_days), len(known))


def new_deal_bookings(
    closed: pd.DataFrame, ends: pd.DatetimeIndex, origin_index: int, settings: PipelineForecastSettings
) -> np.ndarray:
    """[M, H]: for earlier origins s of the same phase whose H periods were over by the origin, the bookings in
    s's periods 1..H from deals created after s (known at the origin: every such close is <= the origin)."""
    h = settings.horizon
    candidates = [
        s for s in range(origin_index - h, -1, -1) if (origin_index - s) % settings.season == 0 and s + h < len(ends)
    ][: settings.new_deal_origins]
    won = closed[closed["won"]]
    out = []
    for s in candidates:
        edges = ends[s : s + h + 1]
        late = won[won["created_at"] > edges[0]]
        which = np.searchsorted(edges.to_numpy(), late["closed_at"].to_numpy(), side="left")
        inside = (which >= 1) & (which <= h)
        out.append(np.bincount(which[inside] - 1, weights=late["value"].to_numpy()[inside], minlength=h))
    return np.asarray(out, dtype=float).reshape(-1, h)


def simulate_bookings(
    p_win: np.ndarray, p_period: np.ndarray, values: np.ndarray, new_deals: np.ndarray, draws: int, seed: int
) -> np.ndarray:
    """[draws, H] bookings: each open deal wins ~ Bernoulli(p_win) and closes in a period drawn from its row of
    p_period [N, H + 1] (the last column: after the horizon); plus one bootstrap row of `new_deals` [M, H]."""
    rng = np.random.default_rng(seed)
    n, h = p_period.shape[0], p_period.shape[1] - 1
    total = np.zeros((draws, h))
    if n:
        cdf = np.cumsum(p_period, axis=1)
        cdf[:, -1] = 1.0
        for start in range(0, draws, 500):  # chunks keep the [draws, N] arrays small
            d = min(500, draws - start)
            won = rng.random((d, n)) < p_win[None, :]
            period = (rng.random((d, n, 1)) > cdf[None, :, :-1]).sum(axis=2)
            keep = won & (period < h)
            flat = (np.arange(d)[:, None] * h + period)[keep]
            amount = np.broadcast_to(values[None, :], (d, n))[keep]
            total[start : start + d] = np.bincount(flat, weights=amount, minlength=d * h).reshape(d, h)
    if len(new_deals):
        total += new_deals[rng.integers(0, len(new_deals), size=draws)]
    return total


@dataclass(frozen=True)
class PipelineForecast:
    """One origin's forecast: quantiles [H, Q], expected bookings per component [H], the simulated mean absolute
    deviation from the median [H] (the error a forecaster would make if this distribution were the truth: the
    pipeline's own noise floor), and the model sizes."""

    origin: pd.Timestamp
    quantiles: np.ndarray
    expected_pipeline: np.ndarray
    expected_new: np.ndarray
    expected_abs_error: np.ndarray
    open_deals: int
    win_train_rows: int


def forecast_at(
    snapshots: DealSnapshots, closed: pd.DataFrame, origin_index: int, settings: PipelineForecastSettings, seed: int
) -> PipelineForecast:
    """The pipeline forecast from the period end `snapshots.period_ends[origin_index]` for the next H periods."""
    ends = snapshots.period_ends
    if not 0 <= origin_index < len(ends):
        raise FulqrunMLError(f"origin {origin_index}: outside the {len(ends)} complete periods of the CRM")
    origin = ends[origin_index]
    horizon_ends = next_period_ends(origin, snapshots.freq, settings.horizon)
    edges_days = ((horizon_ends - origin) / DAY).to_numpy(dtype=float)
    phase = ends[origin_index - settings.season :: -settings.season][: settings.timing_snapshots]
    timing = training_rows(snapshots, origin, settings.season * settings.timing_snapshots)
    models = fit_origin_models(
        training_rows(snapshots, origin, settings.train_periods), timing[timing["as_of"].isin(phase)], edges_days
    )
    open_now = snapshots.rows[snapshots.rows["as_of"] == origin]
    p_win = models.win_probability(open_now) if len(open_now) else np.zeros(0)
    p_period = models.close_period_probabilities(open_now) if len(open_now) else np.zeros((0, settings.horizon + 1))
    values = np.nan_to_num(open_now["value"].to_numpy(dtype=float))
    known_closed = closed[closed["closed_at"] <= origin]
    new = new_deal_bookings(known_closed, ends, origin_index, settings)
    draws = simulate_bookings(p_win, p_period, values, new, settings.draws, seed)
    return PipelineForecast(
        origin=origin,
        quantiles=np.quantile(draws, settings.quantiles, axis=0).T,
        expected_abs_error=np.abs(draws - np.median(draws, axis=0)).mean(axis=0),
        expected_pipeline=(p_win[:, None] * p_period[:, :-1] * values[:, None]).sum(axis=0),
        expected_new=new.mean(axis=0) if len(new) else np.zeros(settings.horizon),
        open_deals=len(open_now),
        win_train_rows=models.train_rows,
    )


def pipeline_forecasts(
    tables: CRMTables, origin_indices: Sequence[int], settings: PipelineForecastSettings, freq: str = "M", seed: int = 0
) -> list[PipelineForecast]:
    """Forecasts from each origin (index into `period_ends(tables, freq)`), every one point-in-time."""
    ends = period_ends(tables, freq)
    snapshots = build_deal_snapshots(tables, ends, freq)
    closed = closes(tables)
    return [forecast_at(snapshots, closed, int(i), settings, seed + int(i)) for i in origin_indices]
