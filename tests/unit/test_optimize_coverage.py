"""Coverage analysis: the white-space rule and ranking, quota risk equal to the exact Poisson-binomial on a tiny
territory, beta-distributed win rates widening the interval, stage shifts that follow the history, and bad
input refused by field."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.data.simulator_geo import simulate_geography
from fulqrun_ml.optimize import coverage_quota
from fulqrun_ml.optimize.coverage import (
    CoverageConfig,
    open_pipeline,
    read_predictions,
    stage_shift,
    white_space,
    white_space_segments,
)
from fulqrun_ml.optimize.coverage_quota import quota_risk
from fulqrun_ml.optimize.coverage_truth import quota_truth
from fulqrun_ml.optimize.estimates import account_estimates, account_touches, closed_deals, segment_win_rates
from fulqrun_ml.optimize.problem import OptimizeError


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return simulate_crm(n_opportunities=1500, n_reps=6, n_companies=150, seed=11)


@pytest.fixture(scope="module")
def accounts(crm: SimulatedCRM) -> pd.DataFrame:
    world = simulate_geography(crm, seed=11)
    estimates = account_estimates(crm.tables, world.deal_outcomes)
    return world.accounts.drop(columns=["industry", "size"]).merge(estimates, on="company_id")


def test_white_space_rule_and_ranking(crm: SimulatedCRM, accounts: pd.DataFrame) -> None:
    cfg = CoverageConfig(touch_days=60, min_potential_quantile=0.5)
    touches = account_touches(crm.tables)
    recent = touches[touches["created_at"] >= crm.tables.extracted_at - pd.Timedelta(days=60)]
    untouched = sorted(set(accounts["company_id"]) - set(recent["company_id"]))
    assert untouched, "the fixture needs an account without touches in the window"
    boosted = accounts.copy()
    boosted.loc[boosted["company_id"] == untouched[0], "potential"] = accounts["potential"].max() * 2
    table = white_space(boosted, crm.tables, cfg)
    counts = recent["company_id"].value_counts()
    assert (table["touches"].to_numpy() == counts.reindex(table["company_id"], fill_value=0).to_numpy()).all()
    high = table["potential"] >= np.quantile(boosted["potential"], 0.5)
    assert table["touch_benchmark"].iat[0] == max(np.median(table.loc[high, "touches"]), 1.0)
    assert np.allclose(table["touch_gap"], np.clip(1 - table["touches"] / table["touch_benchmark"], 0, 1))
    assert (table["white_space"] == (high & (table["touch_gap"] > 0))).all()
    assert (np.diff(table["potential_at_stake"]) <= 0).all() and (table["rank"] == np.arange(1, len(table) + 1)).all()
    first = table.iloc[0]
    assert first["company_id"] == untouched[0] and first["touch_gap"] == 1.0 and first["white_space"]
    segments = white_space_segments(table)
    assert segments["accounts"].sum() == len(table)
    assert segments["potential_at_stake"].sum() == pytest.approx(table["potential_at_stake"].sum())
    assert (np.diff(segments["potential_at_stake"]) <= 0).all()


def tiny_pipeline() -> tuple[pd.DataFrame, pd.DataFrame]:
    pipeline = pd.DataFrame(
        {
            "opportunity_id": ["d1", "d2", "d3", "d4"],
            "company_id": ["a", "a", "b", "c"],
            "stage": ["proposal"] * 4,
            "value": [100.0, 250.0, 400.0, 80.0],
            "territory": ["r1", "r1", "r1", "r2"],
            "industry": ["software", "software", "retail", "retail"],
            "size": ["smb"] * 4,
            "shift": [0.0] * 4,
        }
    )
    reps = pd.DataFrame({"rep_id": ["r1", "r2", "r3"], "quota": [500.0, 50.0, 10.0]})
    return pipeline, reps


@pytest.mark.parametrize("chunk_cells", [4_000_000, 10])  # one chunk, and draws in chunks of 2
def test_quota_risk_equals_the_exact_poisson_binomial(chunk_cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage_quota, "CHUNK_CELLS", chunk_cells)
    pipeline, reps = tiny_pipeline()
    p = pd.Series([0.3, 0.6, 0.45, 0.9], index=["d1", "d2", "d3", "d4"])
    table = quota_risk(pipeline, reps, pd.DataFrame(), CoverageConfig(draws=40000, interval=0.5), p).set_index("rep_id")
    values, probs = pipeline["value"].to_numpy()[:3], p.to_numpy()[:3]
    outcomes = [(float(np.dot(w, values)), float(np.prod(np.where(w, probs, 1 - probs))))
                for w in itertools.product([0, 1], repeat=3)]  # fmt: skip
    exact_reach = sum(q for v, q in outcomes if v >= 500.0)
    assert table.at["r1", "expected_bookings"] == pytest.approx(float(values @ probs))
    assert table.at["r1", "p_reach_quota"] == pytest.approx(exact_reach, abs=4 * np.sqrt(0.25 / 40000))
    assert table.at["r2", "p_reach_quota"] == pytest.approx(0.9, abs=0.01)
    assert table.at["r3", "open_deals"] == 0 and table.at["r3", "p_reach_quota"] == 0.0
    assert table.at["r1", "quota_gap"] == pytest.approx(500.0 - float(values @ probs))
    assert table["rank"].tolist() == [1, 2, 3] and table.index[0] == "r3"  # lowest chance first
    ordered = sorted(outcomes)
    cdf = np.cumsum([q for _, q in ordered])
    median = ordered[int(np.searchsorted(cdf, 0.5))][0]
    assert table.at["r1", "bookings_low"] <= median <= table.at["r1", "bookings_high"]


def test_uncertain_win_rates_widen_the_interval() -> None:
    pipeline, reps = tiny_pipeline()
    pipeline = pd.concat([pipeline] * 10, ignore_index=True).assign(opportunity_id=[f"d{i}" for i in range(40)])
    rates = pd.DataFrame({"wins": [3, 2], "deals": [6, 5], "prior": 0.4, "strength": 2.0},
                         index=pd.MultiIndex.from_tuples([("retail", "smb"), ("software", "smb")]))  # fmt: skip
    rates["rate"] = (rates["wins"] + 2.0 * 0.4) / (rates["deals"] + 2.0)
    cfg = CoverageConfig(draws=20000)
    uncertain = quota_risk(pipeline, reps, rates, cfg).set_index("rep_id")
    mean = rates["rate"].reindex(pd.MultiIndex.from_frame(pipeline[["industry", "size"]])).to_numpy()
    known = quota_risk(pipeline, reps, rates, cfg, pd.Series(mean, index=pipeline["opportunity_id"])).set_index(
        "rep_id"
    )
    width = lambda t: t.at["r1", "bookings_high"] - t.at["r1", "bookings_low"]  # noqa: E731
    assert width(uncertain) > 1.3 * width(known)
    assert uncertain.at["r1", "expected_bookings"] == pytest.approx(known.at["r1", "expected_bookings"], rel=0.03)


def test_stage_shift_follows_the_history(crm: SimulatedCRM, accounts: pd.DataFrame) -> None:
    deals = closed_deals(crm.tables)
    shifts = stage_shift(crm.tables, deals)
    assert (np.diff(shifts.to_numpy()) > 0).all()  # won deals walk every stage: later stages win more often
    pipeline = open_pipeline(accounts, crm.tables)
    opps = crm.tables.opportunities
    assert set(pipeline["opportunity_id"]) == set(opps.loc[~opps["stage"].str.startswith("closed"), "id"].astype(str))
    rates = segment_win_rates(deals, crm.tables.companies)
    assert rates["rate"].between(0, 1).all() and rates["deals"].sum() == len(deals)
    reps = pd.DataFrame({"rep_id": sorted(accounts["current_rep"].unique())})
    table = quota_risk(pipeline, reps, rates, CoverageConfig(draws=500))
    won = pd.DataFrame({"opportunity_id": pipeline["opportunity_id"], "won": True})
    truth = quota_truth(won, pipeline, table)  # every open deal won: actual bookings = open value
    assert truth["interval_coverage"] == pytest.approx(
        float((table["bookings_high"] >= table["open_value"] - 1e-6)[table["open_deals"] > 0].mean())
    )


def test_bad_input_is_named(tmp_path) -> None:
    pipeline, reps = tiny_pipeline()
    pd.DataFrame({"opportunity_id": ["d1"], "score": [0.2]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(OptimizeError, match=r"field 'probability'"):
        read_predictions(tmp_path / "p.parquet")
    pd.DataFrame({"id": ["d1"], "probability": [1.4]}).to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(OptimizeError, match=r"field 'probability'.*outside \[0, 1\]"):
        read_predictions(tmp_path / "p.csv")
    with pytest.raises(OptimizeError, match=r"field 'opportunity_id': 3 open deals have no prediction"):
        quota_risk(pipeline, reps, pd.DataFrame(), CoverageConfig(), pd.Series([0.5], index=["d1"]))
    with pytest.raises(OptimizeError, match=r"field 'quota'"):
        CoverageConfig(quota=-5)
    with pytest.raises(OptimizeError, match=r"field 'quota'"):
        quota_risk(pipeline, reps.assign(quota=[1.0, 0.0, 2.0]), pd.DataFrame(), CoverageConfig(),
                   pd.Series(0.5, index=pipeline["opportunity_id"]))  # fmt: skip
    with pytest.raises(OptimizeError, match=r"field 'current_rep'"):
        quota_risk(pipeline, reps.iloc[1:], pd.DataFrame(), CoverageConfig(),
                   pd.Series(0.5, index=pipeline["opportunity_id"]))  # fmt: skip
