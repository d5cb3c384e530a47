"""The simulator's engagement story (`simulate_crm(engagement="dynamic")`, data/simulator_engagement.py): each
mechanism is measured on the generated touches against the latent truth, and the poisson default is untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data import simulator_engagement as story
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.validation import check_contract

N = 1500


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=N, n_companies=300, days=500, seed=5, engagement="dynamic")


@pytest.fixture(scope="module")
def touches(crm):
    """Deal touches with their deal's latents and the day (float, since the simulation start)."""
    acts = crm.tables.activities
    acts = acts[acts["related_type"] == "opportunity"].merge(
        crm.latent, left_on="related_id", right_on="opportunity_id"
    )
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return acts.assign(day=(acts["created_at"] - start).dt.total_seconds() / 86400.0)


def _life(crm) -> pd.DataFrame:
    """Per deal: created and close day (close: the closing stage change, else the extraction)."""
    start = pd.Timestamp("2024-01-01", tz="UTC")
    opps = crm.tables.opportunities.set_index("id")
    closes = crm.tables.stage_history[crm.tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])]
    close = closes.set_index("opportunity_id")["changed_at"].reindex(opps.index)
    close = close.fillna(crm.tables.extracted_at)
    return pd.DataFrame(
        {
            "created": (opps["created_at"] - start).dt.total_seconds() / 86400.0,
            "close": (close - start).dt.total_seconds() / 86400.0,
        }
    )


def _rate(touches: pd.DataFrame, lo: pd.Series, hi: pd.Series) -> float:
    """Touches per deal-day inside each deal's [lo, hi) window, pooled over the deals of lo/hi."""
    span = (hi - lo).clip(lower=0)
    t = touches[touches["related_id"].isin(span.index[span > 0])]
    inside = (t["day"] >= lo.reindex(t["related_id"]).to_numpy()) & (t["day"] < hi.reindex(t["related_id"]).to_numpy())
    return float(inside.sum() / span.sum())


def test_poisson_default_draws_no_story():
    plain = simulate_crm(n_opportunities=300, n_companies=80, days=300, seed=2)
    explicit = simulate_crm(n_opportunities=300, n_companies=80, days=300, seed=2, engagement="poisson")
    pd.testing.assert_frame_equal(plain.tables.activities, explicit.tables.activities)
    assert "engagement_trend" not in plain.latent
    assert len(plain.tables.contacts) == 80  # one per company: no stakeholders


def test_unknown_engagement_mode_is_named():
    with pytest.raises(ValueError, match="engagement must be one of"):
        simulate_crm(n_opportunities=10, n_companies=5, days=100, engagement="bursty")


def test_dynamic_crm_meets_the_contract_and_keeps_the_deals(crm):
    check_contract(crm.tables)
    plain = simulate_crm(n_opportunities=N, n_companies=300, days=500, seed=5)
    assert list(plain.tables.opportunities["id"]) == list(crm.tables.opportunities["id"])
    # The story moves the win odds: same latent quality, different outcomes for some deals.
    assert np.allclose(plain.latent["latent_quality"], crm.latent["latent_quality"])
    assert not np.allclose(plain.latent["true_win_probability"], crm.latent["true_win_probability"])


def test_lost_deals_go_dark_while_the_rep_keeps_chasing(crm, touches):
    life = _life(crm)
    latent = crm.latent.set_index("opportunity_id")
    dark = latent["dark_from_day"].dropna()
    dark = dark[(dark > life.loc[dark.index, "created"] + 10) & latent.loc[dark.index, "champion_lost_day"].isna()]
    before_lo, before_hi = life.loc[dark.index, "created"], dark
    after_hi = life.loc[dark.index, "close"]
    inbound = touches[touches["direction"] == "inbound"]
    outbound = touches[touches["direction"] == "outbound"]
    in_before, in_after = _rate(inbound, before_lo, before_hi), _rate(inbound, dark, after_hi)
    assert in_after < 0.3 * in_before, (in_before, in_after)
    assert _rate(outbound, dark, after_hi) > 0.9 * _rate(outbound, before_lo, before_hi)


def test_inbound_follows_the_trend(crm, touches):
    life = _life(crm)
    mid = (life["created"] + life["close"]) / 2
    trend = crm.latent.set_index("opportunity_id")["engagement_trend"]
    won = crm.latent.set_index("opportunity_id")["won"]
    inbound = touches[(touches["direction"] == "inbound") & touches["related_id"].isin(won.index[won])]
    late = inbound["day"] >= mid.reindex(inbound["related_id"]).to_numpy()
    share = late.groupby(inbound["related_id"].to_numpy()).mean()
    rising, falling = share[trend.reindex(share.index) > 0.7], share[trend.reindex(share.index) < -0.7]
    assert rising.mean() > falling.mean() + 0.15, (rising.mean(), falling.mean())


def test_champion_loss_cuts_inbound_until_a_new_one_is_found(crm, touches):
    life = _life(crm)
    latent = crm.latent.set_index("opportunity_id")
    lost = latent[latent["champion_lost_day"].notna() & latent["won"]]
    lost_at = lost["champion_lost_day"]
    back = lost["champion_back_day"].fillna(np.inf).clip(upper=life.loc[lost.index, "close"])
    inbound = touches[touches["direction"] == "inbound"]
    before = _rate(inbound, life.loc[lost.index, "created"], lost_at)
    gone = _rate(inbound, lost_at, np.minimum(back, life.loc[lost.index, "close"]))
    # Replies and stakeholder meetings dilute the cut (x0.2 on the customer's own touches); without it ~1.
    assert gone < 0.7 * before, (before, gone)


def test_stakeholders_join_during_the_deal_and_more_on_good_deals(crm):
    contacts = crm.tables.contacts
    added = contacts.iloc[300:]
    assert len(added) > 0
    assert (added["created_at"] > pd.Timestamp("2024-01-01", tz="UTC")).all()
    assert (added["created_at"] <= crm.tables.extracted_at).all()
    opps = crm.tables.opportunities.merge(crm.latent, left_on="id", right_on="opportunity_id")
    life = _life(crm).reindex(opps["id"])
    # Companies whose deals are good draw more stakeholders per month of open deal (longer lives alone do not).
    months = pd.Series((life["close"] - life["created"]).to_numpy() / 30.0).groupby(opps["company_id"]).sum()
    z = opps.groupby("company_id")["latent_quality"].mean()
    rate = (added.groupby("company_id").size().reindex(z.index).fillna(0) / months.reindex(z.index)).to_numpy()
    # ~0.35 as drawn; ~0.16 when the rate ignores quality (dark deals stop adding them, and those are worse)
    assert np.corrcoef(z.to_numpy(), rate)[0, 1] > 0.25


def test_replies_slow_down_on_deals_with_a_falling_trend(crm, touches):
    """In the second half of a deal's life, the customer answers a rising deal faster than a falling one."""
    life = _life(crm)
    deal = touches.sort_values(["related_id", "day"])
    gap = deal.groupby("related_id")["day"].diff()
    mid = ((life["created"] + life["close"]) / 2).reindex(deal["related_id"]).to_numpy()
    after_ask = deal["direction"].eq("inbound") & deal.groupby("related_id")["direction"].shift().eq("outbound")
    after_ask &= deal["day"].to_numpy() > mid
    gaps = pd.DataFrame({"gap": gap[after_ask], "trend": deal.loc[after_ask, "engagement_trend"]}).dropna()
    assert gaps.loc[gaps["trend"] > 0.7, "gap"].median() < gaps.loc[gaps["trend"] < -0.7, "gap"].median()


def test_quarter_end_push_raises_outbound(touches):
    when = pd.DatetimeIndex(touches["created_at"].dt.tz_localize(None))
    left = (when.to_period("Q").end_time - when).total_seconds() / 86400.0
    outbound = touches["direction"].to_numpy() == "outbound"
    push = np.asarray(left < story.QUARTER_PUSH_DAYS)
    # Share of outbound touches in the push window against its share of calendar days (~14/91).
    share = (outbound & push).sum() / outbound.sum()
    assert share > 1.3 * story.QUARTER_PUSH_DAYS / 91.0, share


def test_the_trajectory_carries_what_the_level_cannot(crm):
    """The full oracle (all latents) ranks outcomes better than the level-only one (the story integrated out)."""
    from sklearn.metrics import roc_auc_score

    latent = crm.latent
    p = latent["true_win_probability"].to_numpy()
    base = np.log(p / (1 - p)) - latent["engagement_logit_shift"].to_numpy()
    level = story.level_only_probability(base)
    won = latent["won"].to_numpy()
    assert roc_auc_score(won, p) > roc_auc_score(won, level) + 0.03
