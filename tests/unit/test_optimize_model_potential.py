"""Model potential (optimize/model_potential.py): the arithmetic on a hand-built book, the churn term's sign, the
fallback to the statistical estimate per missing model, and bad settings named by field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.datamodules.task_builders import AccountBuilder, DealWinBuilder
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.optimize.estimates import YEAR_DAYS, account_estimates, closed_deals
from fulqrun_ml.optimize.model_potential import (
    PotentialConfig,
    model_potential,
    potential_config,
    potential_terms,
    rescale_revenue,
    resolve_models,
)
from fulqrun_ml.optimize.problem import OptimizeError
from fulqrun_ml.registry.aliases import promote
from tests.registry_copy import copy_version


def _book() -> tuple[pd.DataFrame, pd.DataFrame]:
    open_deals = pd.DataFrame({"company_id": ["a", "a", "b"], "value": [1000.0, 500.0, 2000.0],
                               "p_win": [0.5, 0.2, 0.25]})  # fmt: skip
    customers = pd.DataFrame({"company_id": ["a", "c"], "p_expansion": [0.4, 0.1], "p_churn": [0.6, 0.9],
                              "expansion_value": [300.0, 800.0], "revenue_at_risk": [100.0, 400.0]})  # fmt: skip
    return open_deals, customers


def test_terms_on_a_hand_built_book() -> None:
    open_deals, customers = _book()
    table = potential_terms(open_deals, customers, pd.Series(["a", "b", "c", "d"])).set_index("company_id")
    # a: 0.5*1000 + 0.2*500 = 600 open; 0.4*300 = 120 expansion; 0.6*100 = 60 churn -> 660
    assert table.loc["a", "open_deals_value"] == pytest.approx(600.0)
    assert table.loc["a", "expansion_value"] == pytest.approx(120.0)
    assert table.loc["a", "churn_loss"] == pytest.approx(60.0)
    assert table.loc["a", "potential"] == pytest.approx(660.0)
    assert table.loc["b", "potential"] == pytest.approx(500.0)  # not a customer: open deals only
    # c: 0.1*800 - 0.9*400 = -280: kept signed, clipped at 0 for the solvers
    assert table.loc["c", "potential_signed"] == pytest.approx(-280.0)
    assert table.loc["c", "potential"] == 0.0
    assert table.loc["d"].drop("potential_signed").eq(0).all()  # no deals, not a customer


def test_churn_lowers_potential() -> None:
    """Fails if the churn term's sign is flipped: more churn risk must mean less potential."""
    open_deals, customers = _book()
    ids = pd.Series(["a", "b", "c"])
    base = potential_terms(open_deals, customers, ids).set_index("company_id")["potential_signed"]
    riskier = customers.assign(p_churn=customers["p_churn"] + 0.1)
    worse = potential_terms(open_deals, riskier, ids).set_index("company_id")["potential_signed"]
    assert worse["a"] == pytest.approx(base["a"] - 0.1 * 100.0)
    assert worse["c"] == pytest.approx(base["c"] - 0.1 * 400.0)
    assert worse["b"] == base["b"]


def test_rescale_keeps_the_rep_ratio() -> None:
    accounts = pd.DataFrame({"potential_estimate": [100.0, 0.0], "potential": [50.0, 30.0]})
    revenue = np.array([[120.0, 0.0], [80.0, 0.0]])  # rep 0 sells 20 % above the segment, rep 1 20 % below
    assert rescale_revenue(revenue, accounts) == pytest.approx(np.array([[60.0, 30.0], [40.0, 30.0]]))


@pytest.mark.parametrize(
    ("settings", "field"),
    [({"source": "model"}, "potential.source"), ({"model_dir": "x"}, "potential.model_dir")],
)
def test_bad_settings_are_named(settings: dict, field: str) -> None:
    with pytest.raises(OptimizeError, match=f"field '{field}'"):
        potential_config(settings)


def test_models_dir_without_any_task_and_unknown_alias(tmp_path: Path) -> None:
    with pytest.raises(OptimizeError, match=r"field 'potential.models_dir': .* does not exist"):
        resolve_models(tmp_path / "absent", "production")
    (tmp_path / "lead_conversion").mkdir()
    with pytest.raises(OptimizeError, match=r"field 'potential.models_dir': .*no published version of any of"):
        resolve_models(tmp_path, "latest")
    with pytest.raises(OptimizeError, match=r"field 'potential.alias': 'prod' is not a version number"):
        resolve_models(tmp_path, "prod")


@pytest.fixture(scope="module")
def deal_win_only(published, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding the session's tiny deal-win model only (a copy: promoting must not touch the shared one)."""
    models = tmp_path_factory.mktemp("potential_models")
    copy_version(published[0], models)
    return models


def test_alias_not_set_is_named(deal_win_only: Path) -> None:
    with pytest.raises(OptimizeError, match=r"field 'potential.alias': .*no 'production' version"):
        resolve_models(deal_win_only, "production")


def test_deal_win_model_with_fallback_for_the_account_terms(deal_win_only: Path) -> None:
    promote(deal_win_only, "deal_win", "latest", "production", actor="test")
    crm = simulate_crm(n_opportunities=1500, n_companies=300, n_reps=10)  # the fixture model's training CRM
    accounts, deals = account_estimates(crm.tables), closed_deals(crm.tables)
    cfg = PotentialConfig(source="models", models_dir=str(deal_win_only))
    table, report = model_potential(crm.tables, accounts, deals, cfg)
    assert report["terms"]["open_deals"]["source"] == "model"
    assert report["terms"]["expansion"]["source"] == report["terms"]["churn"]["source"] == "estimates"

    # open deals: the ONNX graph's probabilities x value, computed here independently of the bulk scorer
    version = resolve_models(deal_win_only, "production")["deal_win"]
    assert version is not None
    rows = DealWinBuilder().scoring_rows(crm.tables, 0)
    probs = onnx_probabilities(version.path / "model.onnx", FittedFeatureSpec.load(version.path / "feature_spec.json"),
                               rows)  # fmt: skip
    company = crm.tables.opportunities.set_index("id")["company_id"].reindex(rows["opportunity_id"]).to_numpy()
    expected = pd.Series(probs * rows["value"].to_numpy()).groupby(company).sum()
    got = table.set_index("company_id")["open_deals_value"]
    assert got.reindex(expected.index).to_numpy() == pytest.approx(expected.to_numpy(), rel=1e-5)

    # account terms: the Poisson fallback from the shrunk estimates (90-day horizon)
    customers = AccountBuilder("expansion").scoring_rows(crm.tables, 90)["company_id"]
    est = accounts.set_index("company_id").reindex(customers)
    p_any = 1 - np.exp(-est["deals_per_year"] * est["segment_win_rate"] * 90 / YEAR_DAYS)
    terms = table.set_index("company_id").reindex(customers)
    won = deals[deals["won"]]
    value = won.groupby("company_id")["value"].agg(["sum", "count"]).reindex(customers, fill_value=0)
    shrunk = (value["sum"] + 5 * won["value"].mean()) / (value["count"] + 5)
    assert terms["expansion_value"].to_numpy() == pytest.approx((p_any * shrunk).to_numpy())
    recent = won[won["closed_at"] > crm.tables.extracted_at - pd.Timedelta(days=YEAR_DAYS)]
    at_risk = recent.groupby("company_id")["value"].sum().reindex(customers, fill_value=0) * 90 / YEAR_DAYS
    assert (at_risk > 0).any()
    assert terms["churn_loss"].to_numpy() == pytest.approx(((1 - p_any) * at_risk).to_numpy())
    signed = terms["open_deals_value"] + terms["expansion_value"] - terms["churn_loss"]
    assert terms["potential_signed"].to_numpy() == pytest.approx(signed.to_numpy())
