"""Products: the optional contract column, the simulator's product story, product x segment win rates with
intervals recovered against a known truth, and the gap diagnostics of the next-best-action policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_actions import COMPONENTS, simulate_action_world
from fulqrun_ml.data.simulator_products import PRODUCTS, ProductStory
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.recommend.gap_diagnostics import oracle_gap
from fulqrun_ml.recommend.policy_eval import true_arm_effects
from fulqrun_ml.recommend.product_positioning import (
    ProductPositioningUnavailable,
    product_deals,
    product_win_rates,
)
from fulqrun_ml.recommend.strategy_eval import evaluate_products, true_segment_parameters

CRM = {"n_opportunities": 3000, "n_reps": 12, "n_companies": 400, "seed": 3}


@pytest.fixture(scope="module")
def with_products():
    return simulate_crm(**CRM, products=ProductStory())


def test_products_are_opt_in_and_carry_their_true_effect(with_products) -> None:
    plain = simulate_crm(**CRM)
    assert set(plain.tables.opportunities["product"]) == {"unknown"} and "product_effect" not in plain.latent
    pd.testing.assert_frame_equal(plain.tables.companies, with_products.tables.companies)
    # The companies table holds today's attributes; the deals were drawn on the accounts' first version.
    first = with_products.tables.company_history.sort_values("valid_from").drop_duplicates("company_id")
    opps = with_products.tables.opportunities.merge(
        first[["company_id", "industry", "size"]], on="company_id", validate="many_to_one"
    )
    assert set(opps["product"]) == set(PRODUCTS)
    story = ProductStory()
    expected = [story.true_effect(p, i, s) for p, i, s in opps[["product", "industry", "size"]].itertuples(index=False)]
    latent = with_products.latent.set_index("opportunity_id").loc[opps["id"], "product_effect"].to_numpy()
    np.testing.assert_allclose(latent, expected)
    share = opps.groupby("size")["product"].apply(lambda p: (p == "enterprise_suite").mean())
    assert share["enterprise"] > 0.3 > 0.1 > share["smb"]  # the mix follows account size


def test_a_known_product_segment_effect_is_recovered_with_intervals() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    deals = pd.DataFrame(
        {
            "product": rng.choice(["a", "b"], n),
            "industry": rng.choice(["software", "retail"], n),
            "size": rng.choice(["smb", "enterprise"], n),
        }
    )
    star = (deals["product"] == "b") & (deals["industry"] == "retail")
    deals["won"] = rng.uniform(size=n) < np.where(star, 0.7, 0.3)
    table = product_win_rates(deals, n_bootstrap=10)
    assert len(table) == 8 and (table["win_rate_low"] <= table["win_rate_high"]).all()
    best = table[table["rank_in_segment"] == 1]
    assert (best.set_index("industry").loc["retail", "product"] == "b").all()
    assert (best.set_index("industry").loc["retail", "win_rate_low"] > 0.6).all()
    assert (table.loc[table["industry"] == "software", "win_rate_high"] < 0.4).all()


def test_product_win_rates_track_the_simulator_truth(with_products) -> None:
    deals = product_deals(with_products.tables.opportunities, with_products.tables.companies)
    result = evaluate_products(product_win_rates(deals, n_bootstrap=4), ProductStory())
    assert result["n_cells"] == len(PRODUCTS) * 6 * 3
    assert result["win_rate_spearman"] > 0.6 and result["win_rate_spearman"] > result["raw_win_rate_spearman"]


def test_a_known_shift_moves_the_true_segment_rate() -> None:
    segments = pd.DataFrame({"industry": ["software", "software"], "size": ["smb", "smb"]})
    base = true_segment_parameters(segments)["true_win_rate"].to_numpy()
    np.testing.assert_allclose(true_segment_parameters(segments, np.zeros(2))["true_win_rate"], base)
    shifted = true_segment_parameters(segments, np.array([0.5, -0.5]))["true_win_rate"].to_numpy()
    assert shifted[0] > base[0] > shifted[1]


def test_exports_without_products_are_named_not_crashed(with_products) -> None:
    tables = with_products.tables
    with pytest.raises(ProductPositioningUnavailable, match="absent"):
        product_deals(tables.opportunities.drop(columns=["product"]), tables.companies)
    with pytest.raises(ProductPositioningUnavailable, match="no closed deal"):
        product_deals(tables.opportunities.assign(product="unknown"), tables.companies)
    with pytest.raises(FieldValidationError, match=r"companies.size"):
        product_deals(tables.opportunities, tables.companies.drop(columns=["size"]))
    with pytest.raises(FieldValidationError, match=r"n_bootstrap"):
        product_win_rates(product_deals(tables.opportunities, tables.companies), n_bootstrap=1)


def test_gap_diagnostics_credit_the_truth_and_blame_a_wrong_component(with_products) -> None:
    world = simulate_action_world(with_products, seed=3)
    truth = true_arm_effects(world)
    support = np.ones_like(truth, dtype=bool)
    wrong = truth.copy()
    content = slice(truth.shape[1] - (len(COMPONENTS["content"]) - 1), truth.shape[1])
    wrong[:, content] = -wrong[:, content]  # right on three components, inverted on content
    result = oracle_gap(world, {"truth": truth, "wrong_content": wrong}, support)
    assert result["oracle_on_support_fraction"] == pytest.approx(1.0)
    exact = result["learners"]["truth"]
    assert exact["lift_fraction_of_oracle"] == pytest.approx(1.0)
    assert all(c["agreement_with_oracle"] == 1.0 for c in exact["components"].values())
    bad = result["learners"]["wrong_content"]["components"]
    assert bad["content"]["lift_fraction_regained_with_oracle_arm"] > 0.1
    assert bad["content"]["agreement_with_oracle"] < 0.5 and bad["type_channel"]["agreement_with_oracle"] == 1.0
    assert bad["content"]["effect_rmse"] > 0 == bad["gap"]["effect_rmse"]
