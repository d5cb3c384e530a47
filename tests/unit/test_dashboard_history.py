"""Per-deal probability history on the Deals page: the production deal-win model re-scored point-in-time.

Checked against independent paths: the last point equals the deal's score at extraction (the open-deal scores
the dashboard shows, from the run's own scoring rows), earlier points do not move when every CRM row after
them is removed (no leakage), and the page draws exactly those numbers, only for deals inside the scope.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from fulqrun_ml.dashboard.app import render_page
from fulqrun_ml.dashboard.context import build_context
from fulqrun_ml.dashboard.history import probability_history
from fulqrun_ml.dashboard.queries import Filters


@pytest.fixture(scope="module")
def ctx(published, tmp_path_factory):
    """The dashboard on the tiny model's registry and its own training CRM (the embedded default path)."""
    version, _ = published
    cache = tmp_path_factory.mktemp("history-cache")
    return build_context(version.path.parent.parent, cache / "reports", cache, views_file=cache / "views.json")


@pytest.fixture(scope="module")
def deal(ctx) -> str:
    """The open deal with the longest life so far (the most history points), among those the model scored."""
    scored = ctx.warehouse.open_deals(Filters()).dropna(subset=["model_probability"])
    return str(scored.sort_values(["age_days", "opportunity_id"], ascending=False)["opportunity_id"].iloc[0])


@pytest.fixture(scope="module")
def history(ctx, deal) -> pd.DataFrame:
    return probability_history(ctx.crm_tables(), ctx.deal_model, deal)


def test_the_last_point_is_the_score_shown_for_the_deal_today(ctx, deal, history):
    assert len(history) >= 3 and history["as_of"].is_monotonic_increasing
    assert pd.Timestamp(history["as_of"].iloc[-1]) == ctx.warehouse.extracted_at
    shown = ctx.warehouse.open_deals(Filters(), opportunity_id=deal)["model_probability"].iloc[0]
    assert history["probability"].iloc[-1] == pytest.approx(shown, abs=1e-6)
    assert history["probability"].between(0, 1).all() and history["probability"].nunique() > 1


def test_points_do_not_move_when_later_rows_are_removed(ctx, deal, history):
    tables, full = ctx.crm_tables(), history
    cut = pd.Timestamp(full["as_of"].iloc[len(full) // 2])
    past = dataclasses.replace(
        tables,
        activities=tables.activities[tables.activities["created_at"] <= cut],
        stage_history=tables.stage_history[tables.stage_history["changed_at"] <= cut],
        extracted_at=cut,
    )
    before = probability_history(past, ctx.deal_model, deal)
    expected = full[full["as_of"] <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(before[before["as_of"] <= cut].reset_index(drop=True), expected)


def test_the_deals_page_draws_the_history_only_inside_the_scope(ctx, deal, history):
    page = render_page(ctx, "/deals", Filters(), {"history_deal": deal})
    drawn = page.tables["probability-history"]
    assert drawn["probability"].tolist() == history["probability"].tolist()
    assert set(drawn["stage"]) <= {"prospecting", "qualifying", "proposal", "negotiation"}
    region = ctx.warehouse.open_deals(Filters(), opportunity_id=deal)["region"].iloc[0]
    other = next(o["value"] for o in ctx.warehouse.options()["region"] if o["value"] != region)
    outside = render_page(ctx, "/deals", Filters(region=(other,)), {"history_deal": deal})
    assert "probability-history" not in outside.tables
    assert "is not among the open deals shown" in str(outside.children)


@pytest.fixture(scope="module")
def churn_ctx(published, compose_train, tmp_path_factory):
    """The registry plus a tiny account_churn model trained on the same simulated CRM (one epoch, no baseline)."""
    import shutil
    from pathlib import Path

    from fulqrun_ml.export.package import export_run
    from fulqrun_ml.training.train import train

    version, _ = published
    root = tmp_path_factory.mktemp("churn")
    models = root / "models"
    shutil.copytree(version.path.parent, models / "deal_win")
    cfg = compose_train(root / "run", "task=account_churn", "trainer.max_epochs=1", "task.compare_lightgbm=null",
                        "logger=none", "trainer.enable_progress_bar=false", f"paths.root_dir={root}")  # fmt: skip
    export_run(Path(train(cfg)["run_dir"]), models, "account_churn")
    return build_context(models, root / "reports", root / "cache")


@pytest.mark.slow  # trains a model (~10 s CPU); the accounts table and empty states are tested fast in test_dashboard
def test_churn_alerts_are_the_churn_models_scores_per_account(churn_ctx):
    from fulqrun_ml.dashboard.pages_accounts import alert_threshold
    from fulqrun_ml.datamodules.task_builders import AccountBuilder
    from fulqrun_ml.export.onnx_export import onnx_probabilities
    from fulqrun_ml.features.spec import FittedFeatureSpec

    ctx = churn_ctx
    tables, model = ctx.crm_tables(), ctx.production("account_churn")
    rows = AccountBuilder("churn").scoring_rows(tables, 90)  # independent of the run's saved rows
    spec = FittedFeatureSpec.load(model.path / "feature_spec.json")
    truth = pd.Series(onnx_probabilities(model.path / "model.onnx", spec, rows), index=rows["company_id"].astype(str))
    opps = tables.opportunities
    won = opps[(opps["stage"] == "closed_won") & (opps["close_date"] > tables.extracted_at - pd.Timedelta(days=365))]
    won_365 = won.groupby(won["company_id"].astype(str))["value"].sum()

    page = render_page(ctx, "/churn", Filters(), {})
    alerts = page.tables["account-alerts"].set_index("company_id")
    threshold, _ = alert_threshold(truth)  # the default: relative to the model's base rate over every customer
    assert len(alerts) == int((truth >= threshold).sum()) > 0
    assert alerts["churn_probability"].to_numpy() == pytest.approx(truth.reindex(alerts.index).to_numpy(), abs=1e-6)
    expected_risk = truth.reindex(alerts.index) * won_365.reindex(alerts.index).fillna(0.0)
    assert alerts["revenue_at_risk"].to_numpy() == pytest.approx(expected_risk.to_numpy(), rel=1e-6)
    assert alerts["revenue_at_risk"].is_monotonic_decreasing
    assert "fulqrun-ml train task=account_expansion" in str(page.children)  # the missing model's empty state

    region = alerts["region"].iloc[0]
    scoped = render_page(ctx, "/churn", Filters(region=(region,)), {}).tables["account-alerts"]
    assert set(scoped["region"]) == {region} and len(scoped) == (alerts["region"] == region).sum()
