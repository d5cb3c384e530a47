"""Pipeline analytics: point-in-time (a CRM truncated at as_of with scrambled current rows gives the same
numbers), the simulator's opportunity_history story, the health backtest never trains on the period it scores,
exports without history, any source (directory round trip), quota errors and the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.analytics.commands import main as analytics_main
from fulqrun_ml.analytics.health import FEATURES, HealthScore, backtest, period_table
from fulqrun_ml.analytics.pipeline_metrics import furthest_stage, pipeline_metrics, read_quota, run_rate_quota
from fulqrun_ml.analytics.pipeline_report import pipeline_report
from fulqrun_ml.analytics.pipeline_state import pipeline_state
from fulqrun_ml.data.contract import CRMTables, empty_history
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_competition import CompetitionScenario
from fulqrun_ml.data.simulator_slippage import SlippageStory
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.errors import DataContractError, FulqrunMLError

AS_OF = pd.Timestamp("2024-10-01", tz="UTC")
PERIOD_END = pd.Timestamp("2025-01-01", tz="UTC")


@pytest.fixture(scope="module")
def tables() -> CRMTables:
    crm = simulate_crm(
        n_opportunities=900,
        n_reps=8,
        n_companies=200,
        days=550,
        seed=3,
        competition=CompetitionScenario(),
        slippage=SlippageStory(amount_noise_sd=0.3),
    )
    return validate_crm(crm.tables).tables


def _truncated_and_scrambled(tables: CRMTables, as_of: pd.Timestamp) -> CRMTables:
    """The CRM as it stood at as_of, with every overwritable field of the current rows replaced by junk."""
    opps = tables.opportunities[tables.opportunities["created_at"] <= as_of].copy()
    opps["stage"] = "closed_won"
    opps["value"] = 1.0
    opps["close_date"] = pd.Timestamp("2030-01-01", tz="UTC")
    history = tables.opportunity_history
    return dataclasses.replace(
        tables,
        opportunities=opps,
        stage_history=tables.stage_history[tables.stage_history["changed_at"] <= as_of],
        opportunity_history=history[history["valid_from"] <= as_of],
    )


def _metrics(tables: CRMTables) -> tuple[pd.DataFrame, pd.DataFrame]:
    state = pipeline_state(tables, AS_OF)
    quota = run_rate_quota(state, 92)
    return pipeline_metrics(state, furthest_stage(tables.stage_history, AS_OF), PERIOD_END, quota)


def test_pipeline_metrics_read_only_what_was_known_at_as_of(tables):
    """Metrics from the full CRM equal those from the CRM truncated at as_of whose current rows are junk:
    reading the row's stage, amount or close date (or any later version) would change them."""
    full, full_conversion = _metrics(tables)
    cut, cut_conversion = _metrics(_truncated_and_scrambled(tables, AS_OF))
    assert full.loc["organization", "open_deals"] > 20
    assert full.loc["organization", "pushed_share"] > 0  # slippage is there to be measured
    pd.testing.assert_frame_equal(full, cut)
    pd.testing.assert_frame_equal(full_conversion, cut_conversion)


def test_simulated_history_ends_at_the_row_and_pushes_move_dates_later(tables):
    history = tables.opportunity_history.sort_values(["opportunity_id", "valid_from"], kind="stable")
    last = history.groupby("opportunity_id").tail(1).set_index("opportunity_id")
    opps = tables.opportunities.set_index("id")
    np.testing.assert_allclose(last["value"].reindex(opps.index), opps["value"].to_numpy())
    gap = (last["close_date"].reindex(opps.index) - opps["close_date"]).abs().dt.total_seconds()
    assert gap.max() < 1e-3
    open_rows = history[history["opportunity_id"].isin(opps.index[opps["stage"].isin(["prospecting"])])]
    moved = open_rows.groupby("opportunity_id")["close_date"].diff().dropna()
    assert (moved > pd.Timedelta(0)).all()  # an open deal's date only moves later (pushes)
    assert (history["valid_from"] <= tables.extracted_at).all()


def test_reps_push_a_passed_close_date_only_after_noticing_so_some_open_deals_are_overdue():
    """The notice lag is what makes slipped (overdue) open deals exist at the extract; without it there are none."""

    def overdue_and_lags(story: SlippageStory) -> tuple[int, pd.Series]:
        tables = simulate_crm(n_opportunities=600, n_reps=6, n_companies=120, days=400, seed=5, slippage=story).tables
        opps = tables.opportunities
        still_open = ~opps["stage"].isin(["closed_won", "closed_lost"])
        history = tables.opportunity_history.sort_values(["opportunity_id", "valid_from"], kind="stable")
        previous = history.groupby("opportunity_id")["close_date"].shift()
        pushed = history[history["close_date"] > previous]  # a push: dated when the rep noticed the old date pass
        lag = pushed["valid_from"] - previous[pushed.index]
        return int((opps.loc[still_open, "close_date"] < tables.extracted_at).sum()), lag

    overdue, lags = overdue_and_lags(SlippageStory())
    assert overdue > 0 and len(lags) and (lags >= pd.Timedelta(0)).all()
    assert lags.dt.total_seconds().mean() / 86400 == pytest.approx(7.0, rel=0.25)  # the story's mean lag
    same_day, lags = overdue_and_lags(SlippageStory(notice_mean_days=0.0))
    assert same_day == 0 and (lags.abs() < pd.Timedelta(seconds=1)).all()


def test_without_opportunity_history_close_date_coverage_is_unknown_not_leaked(tables):
    bare = dataclasses.replace(tables, opportunity_history=empty_history("opportunity_history"))
    state = pipeline_state(bare, AS_OF)
    assert not state.has_history and not state.open_deals["value_point_in_time"].any()
    assert state.open_deals["close_date"].isna().all()  # the row's close date of a deal closed since is its outcome
    metrics, _ = pipeline_metrics(
        state, furthest_stage(bare.stage_history, AS_OF), PERIOD_END, run_rate_quota(state, 92)
    )
    assert metrics["coverage"].isna().all() and np.isfinite(metrics.loc["organization", "open_coverage"])


def test_backtest_never_trains_on_the_period_it_scores(tables):
    table = period_table(tables)
    assert table["period_start"].nunique() >= 3
    before = backtest(table)
    last = table["period_start"].max()
    poisoned = table.copy()
    poisoned.loc[poisoned["period_start"] == last, "attainment"] = 1e6
    after = backtest(poisoned)
    scored = before["period_start"] == last
    np.testing.assert_allclose(after.loc[scored.to_numpy(), "health"], before.loc[scored, "health"])


def test_health_score_learns_a_planted_relation():
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(rng.uniform(0, 2, size=(300, len(FEATURES))), columns=list(FEATURES))
    rows["attainment"] = 0.2 + 0.5 * rows["weighted_coverage"] - 0.3 * rows["pushed_share"]
    score = HealthScore.fit(rows, alpha=1e-6)
    weights = score.weights()
    assert weights["weighted_coverage"] == pytest.approx(0.5, abs=1e-3)
    assert weights["pushed_share"] == pytest.approx(-0.3, abs=1e-3)
    assert abs(weights["coverage"]) < 1e-3


def test_quota_table_errors_name_the_field_and_row():
    with pytest.raises(DataContractError, match="quota"):
        read_quota(pd.DataFrame({"user_id": ["a"], "period_start": ["2024-01-01"]}), AS_OF)
    bad = pd.DataFrame({"user_id": ["a", "b"], "period_start": ["2024-10-01", "2024-10-01"], "quota": [5, "lots"]})
    with pytest.raises(DataContractError, match="row 1, field 'quota'"):
        read_quota(bad, AS_OF)
    good = pd.DataFrame({"user_id": ["a", "b"], "period_start": ["2024-10-01", "2024-07-01"], "quota": [5.0, 7.0]})
    assert read_quota(good, AS_OF).to_dict() == {"a": 5.0}


def test_same_report_from_an_export_directory_and_the_cli(tables, tmp_path):
    """Any source: the report from a Parquet export equals the in-memory one; the CLI writes it atomically."""
    write_crm_directory(tables, tmp_path / "crm")
    loaded = DirectorySource(tmp_path / "crm")()
    assert pipeline_report(loaded) == pipeline_report(tables)
    out = tmp_path / "pipeline.json"
    assert analytics_main(["pipeline", "--crm", str(tmp_path / "crm"), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["point_in_time"]["close_date_versions"] is True
    assert set(report["health_backtest"]) == {"health", "persistence", "coverage_rule"}
    with pytest.raises(FulqrunMLError, match="--quota"):
        analytics_main(["pipeline", "--crm", str(tmp_path / "crm"), "--quota", str(tmp_path / "none.csv")])
    with pytest.raises(FulqrunMLError, match="no opportunity"):
        analytics_main(["pipeline", "--crm", str(tmp_path / "crm"), "--as-of", "2020-01-01", "--out", str(out)])
    assert json.loads(out.read_text()) == report  # a failed run leaves the previous report whole
