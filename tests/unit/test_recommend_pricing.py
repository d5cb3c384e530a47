"""Pricing: the simulator's elasticity truth, monotone curves by construction, guardrails, recovery of a known
effect through the confounded historical discount, and bad input named by field."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_pricing import simulate_pricing, true_win_probability
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.pricing import PricingConfig, fit_pricing_model, recommend_discounts

FAST = PricingConfig(n_bootstrap=1, n_estimators=60)


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=2500, n_reps=12, n_companies=300, seed=3)


@pytest.fixture(scope="module")
def world(crm):
    return simulate_pricing(crm, seed=3)


def test_simulator_leaves_the_crm_untouched_and_is_deterministic(crm) -> None:
    before = {
        name: pd.util.hash_pandas_object(getattr(crm.tables, name).astype(str)).sum()
        for name in ("opportunities", "companies", "activities")
    }
    first, second = simulate_pricing(crm, seed=1), simulate_pricing(crm, seed=1)
    after = {name: pd.util.hash_pandas_object(getattr(crm.tables, name).astype(str)).sum() for name in before}
    assert before == after
    pd.testing.assert_frame_equal(first.deals, second.deals)
    assert not first.deals["discount"].equals(simulate_pricing(crm, seed=2).deals["discount"])


def test_true_elasticity_is_monotone_concave_and_confounded(crm, world) -> None:
    grid = np.linspace(0, 0.3, 31)
    p = true_win_probability(world, np.tile(grid, (len(world.deals), 1)))
    assert (np.diff(p, axis=1) > 0).all()  # more discount, more wins
    logit = np.log(p / (1 - p))
    assert (np.diff(logit, 2, axis=1) < 0).all()  # diminishing returns on the log-odds
    z = crm.latent.set_index("opportunity_id").reindex(world.deals["opportunity_id"])["latent_quality"]
    assert np.corrcoef(world.deals["discount"], z)[0, 1] < -0.2  # reps discount the weaker deals
    closed = world.deals[world.deals["closed"]]
    high = closed["discount"] >= closed["discount"].quantile(0.75)
    assert closed.loc[high, "won"].mean() < closed.loc[~high, "won"].mean() + 0.02  # the naive view: no lift


def _wiggly_deals(n: int = 1500, seed: int = 0) -> pd.DataFrame:
    """Synthetic deals whose win rate is NOT monotone in the discount (a dip at mid discounts): an unconstrained
    model follows the dip, a monotone one cannot."""
    rng = np.random.default_rng(seed)
    discount = rng.uniform(0, 0.3, n)
    logit = 0.2 + 6 * discount - 3.0 * ((discount > 0.12) & (discount < 0.2))
    return pd.DataFrame(
        {
            "industry": rng.choice(["software", "retail"], n),
            "size": rng.choice(["smb", "enterprise"], n),
            "discount_stage": "negotiation",
            "competitor_present": rng.uniform(size=n) < 0.4,
            "value": rng.lognormal(np.log(40_000), 0.5, n),
            "meddpicc_score": rng.uniform(0, 100, n),
            "discount": discount,
            "won": rng.uniform(size=n) < 1 / (1 + np.exp(-logit)),
        }
    )


@pytest.mark.parametrize("method", ["concave_logit", "lightgbm"])
def test_curves_are_monotone_by_construction_and_not_without_the_constraint(method: str) -> None:
    deals = _wiggly_deals()
    config = dataclasses.replace(FAST, method=method, max_discount=0.3, margin_floor=0.0, cost_ratio=0.0)
    curves = fit_pricing_model(deals, config).curves(deals.head(200))[0]
    assert (np.diff(curves, axis=1) >= -1e-12).all()
    free = fit_pricing_model(deals, dataclasses.replace(config, monotone=False)).curves(deals.head(200))[0]
    assert (np.diff(free, axis=1) < -1e-3).any()  # the same data without the constraint does go down


def test_guardrails_cap_the_discount(world) -> None:
    deals = world.deals[world.deals["closed"]]
    config = dataclasses.replace(FAST, max_discount=0.30, cost_ratio=0.80, margin_floor=0.12)  # cap 0.08
    rec = recommend_discounts(fit_pricing_model(deals, config), deals.head(300)).table
    assert rec["discount_cap"].iloc[0] == pytest.approx(0.08)
    assert (rec["recommended_discount"] <= 0.08 + 1e-12).all()
    assert np.isclose(rec["recommended_discount"], 0.08).mean() > 0.5  # the margin floor binds
    rec = recommend_discounts(fit_pricing_model(deals, dataclasses.replace(FAST, max_discount=0.05)), deals.head(300))
    assert (rec.table["recommended_discount"] <= 0.05 + 1e-12).all()
    assert (rec.table["discount_low"] <= rec.table["discount_high"]).all()


def test_adjusting_for_the_proxy_recovers_the_true_lift_and_the_naive_curve_does_not(world) -> None:
    closed = world.deals["closed"].to_numpy()
    rows = np.flatnonzero(~closed)[:400] if (~closed).sum() >= 400 else np.arange(400)
    config = dataclasses.replace(FAST, n_bootstrap=2)
    grid = np.array([0.0, 0.10])  # inside the logged discounts' support (their 75th percentile is ~0.10)
    true = true_win_probability(world, np.tile(grid, (len(rows), 1)), rows)
    true_lift = float((true[:, 1] - true[:, 0]).mean())
    lifts = {}
    for name, adjust in (("adjusted", ("meddpicc_score",)), ("naive", ())):
        model = fit_pricing_model(world.deals[closed], dataclasses.replace(config, adjust_for=adjust))
        curve = model.curves(world.deals.iloc[rows], grid).mean(axis=0)
        lifts[name] = float((curve[:, 1] - curve[:, 0]).mean())
    assert abs(lifts["adjusted"] - true_lift) < 0.05
    assert lifts["naive"] < true_lift - 0.08


def test_bad_input_names_the_field(world) -> None:
    deals = world.deals[world.deals["closed"]]
    with pytest.raises(FieldValidationError, match=r"field 'discount'"):
        fit_pricing_model(deals.drop(columns=["discount"]), FAST)
    with pytest.raises(FieldValidationError, match=r"field 'value'"):
        fit_pricing_model(deals.assign(value=-1.0), FAST)
    with pytest.raises(FieldValidationError, match=r"field 'discount'"):
        fit_pricing_model(deals.assign(discount=1.5), FAST)
    with pytest.raises(FieldValidationError, match=r"field 'margin_floor'"):
        fit_pricing_model(deals, dataclasses.replace(FAST, cost_ratio=0.9, margin_floor=0.2))
    with pytest.raises(FieldValidationError, match=r"field 'max_discount'"):
        fit_pricing_model(deals, dataclasses.replace(FAST, max_discount=1.5))
    with pytest.raises(FieldValidationError, match=r"field 'method'"):
        fit_pricing_model(deals, dataclasses.replace(FAST, method="magic"))
    with pytest.raises(FieldValidationError, match=r"field 'won'"):
        fit_pricing_model(world.deals, FAST)  # open deals have no outcome
