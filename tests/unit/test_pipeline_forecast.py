"""Pipeline-based bookings forecast: point-in-time models, the won-close timing curve, the Monte-Carlo bookings."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.analytics.commands import main as analytics_main
from fulqrun_ml.analytics.pipeline_forecast import (
    PipelineForecastSettings,
    build_deal_snapshots,
    closes,
    forecast_at,
    period_ends,
    simulate_bookings,
)
from fulqrun_ml.analytics.pipeline_timing import won_cumulative_incidence
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.errors import FulqrunMLError

SETTINGS = PipelineForecastSettings(train_periods=9, timing_snapshots=3, new_deal_origins=3, draws=400)


@pytest.fixture(scope="module")
def tables() -> CRMTables:
    return simulate_crm(n_opportunities=1500, n_reps=8, n_companies=200, days=640, seed=5).tables


def _flip_outcomes_after(tables: CRMTables, origin: pd.Timestamp) -> CRMTables:
    """The same CRM with every won/lost close after `origin` turned into its opposite."""
    history = tables.stage_history.copy()
    later = history["changed_at"] > origin
    swap = {"closed_won": "closed_lost", "closed_lost": "closed_won"}
    history.loc[later, "to_stage"] = history.loc[later, "to_stage"].map(lambda s: swap.get(s, s))
    return dataclasses.replace(tables, stage_history=history)


def test_origin_models_read_no_outcome_after_the_origin(tables):
    """P(win), the close timing and the new-deal component at origin t see only closes at or before t: flipping
    every later outcome leaves the forecast unchanged (it moves it when training reads labels from after t)."""
    ends = period_ends(tables)
    index = len(ends) - 5
    origin = ends[index]
    flipped = _flip_outcomes_after(tables, origin)
    assert (flipped.stage_history["to_stage"] != tables.stage_history["to_stage"]).sum() > 100
    before = forecast_at(build_deal_snapshots(tables, ends), closes(tables), index, SETTINGS, seed=0)
    after = forecast_at(build_deal_snapshots(flipped, ends), closes(flipped), index, SETTINGS, seed=0)
    assert before.open_deals > 50 and before.win_train_rows > 200
    np.testing.assert_array_equal(before.quantiles, after.quantiles)
    np.testing.assert_array_equal(before.expected_pipeline, after.expected_pipeline)
    # and the forecast is about the right size: the realised bookings of the 3 months lie within 2x of the median
    won = closes(tables).query("won")
    which = np.searchsorted(ends[index : index + 4].to_numpy(), won["closed_at"].to_numpy(), side="left")
    realised = np.bincount(
        which[(which >= 1) & (which <= 3)] - 1,
        weights=won["value"].to_numpy()[(which >= 1) & (which <= 3)],
        minlength=3,
    )
    ratio = realised.sum() / before.quantiles[:, 2].sum()
    assert 0.5 < ratio < 2.0


def test_won_cumulative_incidence_without_censoring_is_the_won_share():
    durations = np.array([5.0, 10.0, 10.0, 20.0, 40.0])
    won = np.array([True, False, True, True, False])
    cif = won_cumulative_incidence(durations, np.ones(5, dtype=bool), won, np.array([0.0, 10.0, 30.0, 100.0]))
    np.testing.assert_allclose(cif, [0.0, 2 / 5, 3 / 5, 3 / 5])


def test_won_cumulative_incidence_censored_rows_leave_the_risk_set():
    """A deal censored at day 1 is at risk only before it: the two later closes (one won) each carry half."""
    cif = won_cumulative_incidence(
        np.array([1.0, 5.0, 9.0]), np.array([False, True, True]), np.array([False, True, False]), np.array([100.0])
    )
    np.testing.assert_allclose(cif, [0.5])


def test_simulated_bookings_match_their_expectation():
    p_win = np.array([1.0, 0.5, 0.2])
    p_period = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])  # H = 2, then "later"
    values = np.array([100.0, 40.0, 1000.0])
    draws = simulate_bookings(p_win, p_period, values, np.zeros((0, 2)), draws=40000, seed=1)
    expected = (p_win[:, None] * p_period[:, :2] * values[:, None]).sum(axis=0)
    np.testing.assert_allclose(draws.mean(axis=0), expected, rtol=0.03)
    assert draws[:, 0].min() == 100.0  # the sure deal is always booked in period 1
    new = np.array([[1.0, 2.0], [3.0, 4.0]])
    with_new = simulate_bookings(p_win, p_period, values, new, draws=40000, seed=1)
    np.testing.assert_allclose(with_new.mean(axis=0) - draws.mean(axis=0), new.mean(axis=0), atol=0.05)


def test_bad_settings_get_clear_errors(tables):
    with pytest.raises(FulqrunMLError, match="field 'freq'"):
        period_ends(tables, "Q")
    ends = period_ends(tables)
    with pytest.raises(FulqrunMLError, match="outside the 4 complete periods"):
        forecast_at(build_deal_snapshots(tables, ends[-4:]), closes(tables), 4, SETTINGS, seed=0)
    with pytest.raises(FulqrunMLError, match="too few deals closed"):
        forecast_at(build_deal_snapshots(tables, ends[:3]), closes(tables), 0, SETTINGS, seed=0)


def test_cli_forecasts_from_an_export_directory_with_clear_errors(tables, tmp_path):
    """`analytics forecast-pipeline --crm DIR`: periods after the origin with monotone commit..best-case, the
    two components adding up to about the median; bad settings and dates get one-line errors, no file."""
    write_crm_directory(tables, tmp_path / "crm")
    out = tmp_path / "forecast.json"
    small = ["train_periods=9", "timing_snapshots=3", "new_deal_origins=3", "draws=400"]
    args = ["forecast-pipeline", "--crm", str(tmp_path / "crm"), "--set", *small]
    assert analytics_main([*args, "--as-of", "2025-06-15", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["origin"].startswith("2025-05-31") and report["open_deals"] > 50
    assert [p["period_start"] for p in report["periods"]] == ["2025-06-01", "2025-07-01", "2025-08-01"]
    keys = ("commit_p10", "p25", "most_likely_p50", "p75", "best_case_p90")
    for period in report["periods"]:
        values = [period[k] for k in keys]
        assert values == sorted(values) and values[0] > 0
        expected = period["expected_from_open_pipeline"] + period["expected_from_new_deals"]
        assert 0.7 < expected / period["most_likely_p50"] < 1.3
    bad = tmp_path / "bad.json"
    with pytest.raises(FulqrunMLError, match=r"config field\(s\) \['horizon'\]"):
        analytics_main([*args, "horizon=0", "--out", str(bad)])
    with pytest.raises(FulqrunMLError, match="--as-of: not a date"):
        analytics_main([*args, "--as-of", "someday", "--out", str(bad)])
    with pytest.raises(FulqrunMLError, match="no complete M period"):
        analytics_main([*args, "--as-of", "2000-01-01", "--out", str(bad)])
    assert not bad.exists()
