"""Competitive and market intelligence: the competition scenario's truth (win rates, loss causes), exports without
the optional columns, change points on planted shifts, STL on a planted seasonal profile, and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.analytics.commands import main as analytics_main
from fulqrun_ml.analytics.market import competitor_differences, decided_deals, win_rates
from fulqrun_ml.analytics.market_report import market_report
from fulqrun_ml.analytics.trends import binomial_change_points, stl_summary
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_competition import LOSS_REASONS, CompetitionScenario
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.errors import FulqrunMLError

REGIONS = {"north_america": ["US", "CA"], "emea": ["GB", "DE", "FR"], "apac": ["AU", "JP", "SG"], "latam": ["BR", "MX"]}
SIM = {"n_opportunities": 2500, "n_reps": 10, "n_companies": 300, "days": 600, "seed": 5}


@pytest.fixture(scope="module")
def market():
    scenario = CompetitionScenario()
    crm = simulate_crm(**SIM, competition=scenario)
    return validate_crm(crm.tables).tables, crm.latent, scenario


def test_competition_leaves_the_main_stream_alone():
    """With zero effects the scenario must not change a single outcome: it draws from its own generator."""
    small = {"n_opportunities": 300, "n_reps": 6, "n_companies": 60, "days": 300, "seed": 1}
    neutral = CompetitionScenario(effect=(0.0, 0.0, 0.0, 0.0), entrant_effect=0.0)
    plain, competed = simulate_crm(**small), simulate_crm(**small, competition=neutral)
    np.testing.assert_array_equal(plain.latent["won"], competed.latent["won"])
    pd.testing.assert_frame_equal(plain.tables.stage_history, competed.tables.stage_history)
    assert set(plain.tables.opportunities["competitor"]) == {"unknown"}


def test_win_rate_intervals_contain_the_simulators_truth(market):
    tables, latent, scenario = market
    deals = decided_deals(tables)
    truth = latent.set_index("opportunity_id")["true_win_probability"].reindex(deals["id"]).to_numpy()
    rates = win_rates(deals, ["competitor"]).set_index("competitor")
    expected = pd.Series(truth).groupby(deals["competitor"].to_numpy()).mean()
    assert ((rates["low"] <= expected) & (expected <= rates["high"])).all()
    diffs = competitor_differences(deals).set_index("competitor")
    assert diffs.loc["apex", "high"] < 0  # the strongest competitor (true effect -0.6) is found to hurt
    lost = deals[~deals["won"]]
    cause = latent.set_index("opportunity_id")["loss_cause"].reindex(lost["id"])
    agreement = float((cause.to_numpy() == lost["loss_reason"].to_numpy()).mean())
    assert agreement == pytest.approx(1 - scenario.misreport * (len(LOSS_REASONS) - 1) / len(LOSS_REASONS), abs=0.05)


def test_change_points_find_a_planted_shift_and_nothing_in_noise():
    rng = np.random.default_rng(0)
    decided = np.full(24, 60)
    rate = np.where(np.arange(24) < 12, 0.45, 0.25)
    points = binomial_change_points(rng.binomial(decided, rate), decided)
    assert [p.index for p in points] == [12] or (len(points) == 1 and abs(points[0].index - 12) <= 1)
    assert points[0].rate_before > points[0].rate_after
    flat = [binomial_change_points(rng.binomial(decided, 0.4), decided) for _ in range(20)]
    assert sum(len(f) for f in flat) <= 2  # BIC penalty: rare false alarms on pure noise
    sensitive = binomial_change_points(rng.binomial(decided, rate), decided, penalty="null")
    assert any(abs(p.index - 12) <= 1 for p in sensitive)
    with pytest.raises(FulqrunMLError, match="penalty must be"):
        binomial_change_points(decided // 2, decided, penalty="aic")
    with pytest.raises(FulqrunMLError, match="between 0 and decided"):
        binomial_change_points(np.array([5, 3]), np.array([4, 3]))


def test_stl_finds_a_quarter_end_peak():
    months = pd.date_range("2023-01-01", periods=36, freq="MS")
    profile = np.tile([-1.0, 0.0, 1.0], 12)
    series = pd.Series(100 + np.linspace(0, 5, 36) + 10 * profile + np.random.default_rng(1).normal(0, 1, 36), months)
    summary = stl_summary(series, period=3)
    assert summary["peak_position"] == 3 and summary["seasonal_strength"] > 0.8
    with pytest.raises(FulqrunMLError, match="at least 7 months"):
        stl_summary(series.iloc[:5], period=3)


def test_report_from_an_export_without_the_optional_columns(market, tmp_path):
    tables, _, _ = market
    bare = dataclasses.replace(tables, opportunities=tables.opportunities.drop(columns=["competitor", "loss_reason"]))
    write_crm_directory(bare, tmp_path / "crm")
    loaded = DirectorySource(tmp_path / "crm")()
    assert set(loaded.opportunities["competitor"]) == {"unknown"}
    report = market_report(loaded, REGIONS)
    assert report["competitive"]["recorded_share"] == 0.0 and "no competitor recorded" in report["competitive"]["note"]
    assert {t["country"] for t in report["territories"]["country"]} <= {c for cs in REGIONS.values() for c in cs}
    assert report["seasonality_stl"]["organization"]["peak_position"] == 3  # the simulator's quarter-end push


def test_cli_writes_the_competitive_report(market, tmp_path):
    tables, _, _ = market
    write_crm_directory(tables, tmp_path / "crm")
    out = tmp_path / "market.json"
    assert analytics_main(["competitive", "--crm", str(tmp_path / "crm"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {r["competitor"] for r in report["competitive"]["win_rates"]} == {"none", "apex", "brightline", "corvid"}
    assert set(report["change_points"]) >= {"account_region", "industry", "competitor"}
    with pytest.raises(FulqrunMLError, match="no analytics config"):
        analytics_main(["competitive", "--crm", str(tmp_path / "crm"), "--config", "nope"])
