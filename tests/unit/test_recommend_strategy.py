"""Strategy: segment metrics with intervals, a known segment effect recovered, the ranking checked against the
simulator's true segment parameters, and bad input named by field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import COUNTRIES, INDUSTRY_EFFECT, SIZE_EFFECT, simulate_crm
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.strategy import StrategyConfig, rank_segments, segment_deals
from fulqrun_ml.recommend.strategy_eval import evaluate_strategy, true_segment_parameters

REGION_OF = {c: r for r, cs in COUNTRIES.items() for c in cs}
CONFIG = StrategyConfig(n_bootstrap=20, region_of_country=REGION_OF)


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=4000, n_reps=16, n_companies=600, seed=5)


@pytest.fixture(scope="module")
def table(crm):
    deals = segment_deals(crm.tables.opportunities, crm.tables.companies, REGION_OF)
    return rank_segments(deals, crm.tables.companies, CONFIG)


def test_every_segment_is_ranked_with_intervals(table) -> None:
    assert len(table) == 6 * 3 * 4
    assert sorted(table["priority_rank"]) == list(range(1, len(table) + 1))
    assert table["priority_rank"].is_monotonic_increasing
    for metric in ("win_rate", "cycle_days", "value_trend", "headroom", "velocity"):
        assert (table[f"{metric}_low"] <= table[f"{metric}_high"]).all()
    assert table["win_rate"].between(0, 1).all() and (table["cycle_days"] > 0).all()
    assert (table["priority_rank_low"] <= table["priority_rank_high"]).all()


def test_ranking_tracks_the_true_segment_parameters_better_than_raw_rates(table) -> None:
    result = evaluate_strategy(table)
    assert result["win_rate_spearman"] > 0.75
    assert result["win_rate_spearman"] > result["raw_win_rate_spearman"]


def test_true_segment_parameters_match_a_monte_carlo_of_the_story() -> None:
    segments = pd.DataFrame({"industry": ["software", "retail"], "size": ["smb", "enterprise"]})
    truth = true_segment_parameters(segments)
    rng = np.random.default_rng(0)
    n = 400_000
    for i, (industry, size) in enumerate(segments.itertuples(index=False)):
        value = rng.lognormal(np.log(40_000), 0.9, n)
        logit = (
            -0.4
            + INDUSTRY_EFFECT[industry]
            + SIZE_EFFECT[size]
            + 1.3 * rng.normal(size=n)
            + 0.6 * rng.normal(size=n)
            - 0.25 * np.log(value / 50_000)
        )
        p = 1 / (1 + np.exp(-logit))
        assert truth["true_win_rate"][i] == pytest.approx(p.mean(), abs=0.003)
        assert truth["true_value_per_deal"][i] == pytest.approx((p * value).mean(), rel=0.02)


def test_a_known_segment_effect_is_recovered() -> None:
    rng = np.random.default_rng(1)
    n = 3000
    companies = pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(300)],
            "industry": rng.choice(["software", "retail", "healthcare"], 300),
            "size": rng.choice(["smb", "enterprise"], 300),
            "country": rng.choice(["US", "DE"], 300),
        }
    )
    company = rng.integers(0, 300, n)
    star = (companies["industry"].to_numpy()[company] == "software") & (companies["size"].to_numpy()[company] == "smb")
    won = rng.uniform(size=n) < np.where(star, 0.8, 0.3)
    created = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 600, n), unit="D")
    opportunities = pd.DataFrame(
        {
            "company_id": companies["id"].to_numpy()[company],
            "stage": np.where(won, "closed_won", "closed_lost"),
            "value": 10_000.0,
            "created_at": created,
            "close_date": created + pd.Timedelta(days=30),
        }
    )
    deals = segment_deals(opportunities, companies, REGION_OF)
    table = rank_segments(deals, companies, CONFIG).sort_values("win_rate", ascending=False)
    top = table.head(2)
    assert set(top["industry"]) == {"software"} and set(top["size"]) == {"smb"}
    assert (top["win_rate_low"] > 0.65).all()


def test_bad_input_names_the_field(crm) -> None:
    tables = crm.tables
    with pytest.raises(FieldValidationError, match=r"field 'companies.country'"):
        segment_deals(tables.opportunities, tables.companies.drop(columns=["country"]), REGION_OF)
    with pytest.raises(FieldValidationError, match=r"field 'opportunities.stage'"):
        segment_deals(tables.opportunities.assign(stage="proposal"), tables.companies, REGION_OF)
    with pytest.raises(FieldValidationError, match=r"field 'opportunities.value'"):
        segment_deals(tables.opportunities.assign(value=-5.0), tables.companies, REGION_OF)
    deals = segment_deals(tables.opportunities, tables.companies, REGION_OF)
    with pytest.raises(FieldValidationError, match=r"field 'n_bootstrap'"):
        rank_segments(deals, tables.companies, StrategyConfig(n_bootstrap=1, region_of_country=REGION_OF))
