import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import TABLE_COLUMNS
from fulqrun_ml.data.simulator import EXIT_STAGE_PROBS, oracle_win_probability, simulate_crm
from fulqrun_ml.data.validation import check_contract
from fulqrun_ml.data.vocabulary import STAGES


def test_same_seed_same_tables():
    a = simulate_crm(n_opportunities=300, n_companies=80, n_reps=6, seed=11)
    b = simulate_crm(n_opportunities=300, n_companies=80, n_reps=6, seed=11)
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(a.tables.table(name), b.tables.table(name))
    c = simulate_crm(n_opportunities=300, n_companies=80, n_reps=6, seed=12)
    assert not a.tables.opportunities["value"].equals(c.tables.opportunities["value"])


def test_tables_meet_the_contract_and_hide_the_truth(tiny_crm):
    check_contract(tiny_crm.tables)
    opps = tiny_crm.tables.opportunities
    assert set(opps["stage"]) <= set(STAGES)
    latent_columns = set(tiny_crm.latent.columns) - {"opportunity_id"}
    for name in TABLE_COLUMNS:
        assert not latent_columns & set(tiny_crm.tables.table(name).columns), name


def test_closed_stage_matches_latent_outcome(tiny_crm):
    opps = tiny_crm.tables.opportunities.set_index("id")
    latent = tiny_crm.latent.set_index("opportunity_id")
    closed = opps[opps["stage"].isin(["closed_won", "closed_lost"])]
    assert len(closed) > 0.8 * len(opps)
    won = latent.loc[closed.index, "won"]
    assert ((closed["stage"] == "closed_won") == won).all()


def test_nothing_happens_after_extraction(tiny_crm):
    t = tiny_crm.tables
    assert t.stage_history["changed_at"].max() <= t.extracted_at
    assert t.activities["created_at"].max() <= t.extracted_at


def test_oracle_is_the_bayes_posterior_of_staying_open():
    p = np.array([0.3, 0.3, 0.3, 0.3])
    stage = np.array([0, 1, 2, 3])
    oracle = oracle_win_probability(p, stage)
    assert oracle[0] == 0.3  # everyone starts at stage 0: no evidence yet
    survival = 1 - EXIT_STAGE_PROBS[:3].sum()
    assert np.isclose(oracle[3], 0.3 / (0.3 + 0.7 * survival))
    assert np.all(np.diff(oracle) > 0)  # surviving later stages is evidence of a win


def test_outcomes_follow_the_true_probability(tiny_crm):
    latent = tiny_crm.latent
    high = latent["true_win_probability"] > latent["true_win_probability"].median()
    assert latent.loc[high, "won"].mean() > latent.loc[~high, "won"].mean() + 0.15


def test_quarter_end_push_concentrates_closes_before_quarter_ends(tiny_crm):
    closes = tiny_crm.tables.stage_history
    closes = closes[closes["to_stage"].isin(["closed_won", "closed_lost"])]["changed_at"]
    last_ten_days_of_quarter = (closes.dt.month % 3 == 0) & (closes.dt.day > 20)
    first_ten_days_of_quarter = (closes.dt.month % 3 == 1) & (closes.dt.day <= 10)
    assert last_ten_days_of_quarter.mean() > 1.5 * first_ten_days_of_quarter.mean()


def test_leads_follow_their_story(tiny_crm):
    leads = tiny_crm.tables.leads
    assert len(leads) == 1500 and set(leads["status"]) <= {"new", "contacted", "qualified", "unqualified", "converted"}
    decided = leads["status"].isin(["converted", "unqualified"])
    assert (leads.loc[decided, "updated_at"] > leads.loc[decided, "created_at"]).all()
    truth = tiny_crm.lead_latent.set_index("lead_id").loc[leads["id"]]
    converted = (leads["status"] == "converted").to_numpy()
    assert (
        truth["true_conversion_probability"][converted].mean() > truth["true_conversion_probability"][~converted].mean()
    )
    lead_touches = tiny_crm.tables.activities["related_type"] == "lead"
    assert set(tiny_crm.tables.activities.loc[lead_touches, "related_id"]) <= set(leads["id"])


def test_inject_dirt_adds_the_mess_validation_must_catch(tiny_crm):
    from fulqrun_ml.data.simulator_dirt import inject_dirt

    dirty = inject_dirt(tiny_crm.tables, rate=0.05, seed=1)
    opps = dirty.opportunities
    assert opps["value"].isna().any()
    assert opps["id"].duplicated().any()
    assert (~opps["stage"].isin(STAGES)).any()
    assert (opps["updated_at"] < opps["created_at"]).any()
    assert opps["champion"].str.contains("@example.com", na=False).any()
    assert (dirty.activities["type"] == "meetting").any()
    assert len(tiny_crm.tables.opportunities) < len(opps)  # the clean tables are untouched


def test_no_touches_or_closes_on_holidays_and_few_touches_on_weekends(tiny_crm):
    from fulqrun_ml.data.calendar import holidays_between, is_holiday, is_weekend

    t = tiny_crm.tables
    holidays = holidays_between(t.organizations["created_at"].min(), t.extracted_at)
    assert np.datetime64("2024-12-25") in holidays and np.datetime64("2024-07-04") in holidays

    def dates(stamps: pd.Series) -> np.ndarray:
        return stamps.dt.tz_localize(None).to_numpy().astype("datetime64[D]")

    touch_day = dates(t.activities["created_at"])
    assert not is_holiday(touch_day, holidays).any()
    weekend = is_weekend(touch_day)
    # Per calendar day, weekends see about a tenth of a weekday's touches (5 weekdays vs 2 weekend days).
    assert 0 < weekend.sum() / 2 < 0.2 * (~weekend).sum() / 5
    history = t.stage_history
    close_day = dates(history.loc[history["to_stage"].isin(["closed_won", "closed_lost"]), "changed_at"])
    assert len(close_day) > 500
    assert not is_holiday(close_day, holidays).any() and not is_weekend(close_day).any()


def test_touch_direction_is_a_signal_about_deal_quality(tiny_crm):
    acts = tiny_crm.tables.activities
    assert set(acts["direction"]) == {"inbound", "outbound"}
    assert (acts.loc[acts["type"].isin(["task", "note"]), "direction"] == "outbound").all()
    deals = acts[acts["related_type"] == "opportunity"]
    inbound_share = (deals["direction"] == "inbound").groupby(deals["related_id"]).mean()
    z = tiny_crm.latent.set_index("opportunity_id")["latent_quality"].reindex(inbound_share.index)
    assert np.corrcoef(z, inbound_share)[0, 1] > 0.2


def test_activity_rate_scales_touches_and_is_validated():
    import pytest

    base = simulate_crm(n_opportunities=200, n_companies=40, n_reps=4, seed=5)
    busy = simulate_crm(n_opportunities=200, n_companies=40, n_reps=4, seed=5, activity_rate=2.0)
    assert 1.6 < len(busy.tables.activities) / len(base.tables.activities) < 2.4
    pd.testing.assert_frame_equal(base.tables.companies, busy.tables.companies)
    with pytest.raises(ValueError, match="activity_rate"):
        simulate_crm(n_opportunities=10, activity_rate=0)


def test_vectorised_uuids_match_the_standard_library():
    import random
    import uuid

    from fulqrun_ml.data.uuids import seeded_uuids

    expected_rng, rng = random.Random(99), random.Random(99)
    expected = [str(uuid.UUID(int=expected_rng.getrandbits(128), version=4)) for _ in range(500)]
    assert seeded_uuids(rng, 500) == expected and seeded_uuids(rng, 0) == []
    assert rng.getrandbits(64) == expected_rng.getrandbits(64)  # the generator is left where the loop leaves it
