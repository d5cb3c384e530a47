"""Dashboard data layer: aggregates equal a pandas recomputation from the raw CRM, org scoping, saved views,
insights whose numbers trace to the CRM, the forecast's interval maths, and empty states without a stack trace.

The CRM has two organisations (two simulated CRMs written into one export), so scoping can fail visibly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.dashboard.app import render_page
from fulqrun_ml.dashboard.context import build_context
from fulqrun_ml.dashboard.forecast import pipeline_forecast
from fulqrun_ml.dashboard.insights import generate
from fulqrun_ml.dashboard.layout import PAGES
from fulqrun_ml.dashboard.queries import Filters, ScopedWarehouse
from fulqrun_ml.dashboard.views import METRICS, ViewError, load_views, save_view, validate
from fulqrun_ml.dashboard.warehouse import build_warehouse, open_warehouse
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory


@pytest.fixture(scope="module")
def crm(tmp_path_factory) -> tuple[Path, CRMTables]:
    a = simulate_crm(n_opportunities=400, n_companies=80, n_reps=6, seed=1, organization_name="Org A").tables
    b = simulate_crm(n_opportunities=300, n_companies=60, n_reps=5, seed=2, organization_name="Org B").tables
    merged = CRMTables(
        **{name: pd.concat([a.table(name), b.table(name)], ignore_index=True) for name in a.frames()},
        extracted_at=a.extracted_at,
    )
    out = tmp_path_factory.mktemp("crm") / "export"
    write_crm_directory(merged, out)
    return out, merged


@pytest.fixture(scope="module")
def warehouse(crm, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wh") / "dashboard.duckdb"
    build_warehouse(crm[0], path)
    return path


def _scoped(path: Path, orgs=None) -> ScopedWarehouse:
    con, info = open_warehouse(path)
    return ScopedWarehouse(con, info.extracted_at, orgs)


def _truth(tables: CRMTables, org: str | None = None) -> pd.DataFrame:
    """Per-deal facts straight from the CRM tables with pandas: the independent path the SQL must match."""
    o = tables.opportunities.merge(tables.organizations[["id", "name"]].rename(columns={"id": "organization_id"}))
    if org is not None:
        o = o[o["name"] == org]
    o = o.assign(month=o["close_date"].dt.tz_localize(None).dt.to_period("M").dt.to_timestamp())
    return o


def test_aggregates_equal_a_pandas_recomputation(crm, warehouse):
    _, tables = crm
    w = _scoped(warehouse)
    truth = _truth(tables)
    won = truth[truth["stage"] == "closed_won"].groupby("month")["value"].sum()
    got = w.won_by_month(Filters(period="all")).set_index("month")["won_value"]
    got.index = pd.to_datetime(got.index)
    won = won.reindex(got.index.union(won.index), fill_value=0.0)  # months with only losses show 0 won
    assert list(got.index) == list(won.index)
    np.testing.assert_allclose(got.to_numpy(), won.to_numpy(), rtol=1e-9)
    open_truth = truth[~truth["stage"].isin(["closed_won", "closed_lost"])]
    deals = w.open_deals(Filters())
    assert set(deals["opportunity_id"]) == set(open_truth["id"])
    assert deals["value"].sum() == pytest.approx(open_truth["value"].sum())
    overdue = open_truth[open_truth["close_date"] < tables.extracted_at]
    assert len(w.slipped(Filters())) == len(overdue)
    # funnel: every deal created reaches prospecting; won deals reach closed_won
    funnel = w.funnel(Filters(period="all")).set_index("stage")["deals"]
    assert funnel["prospecting"] == len(truth)
    assert funnel["closed_won"] == (truth["stage"] == "closed_won").sum()
    assert list(funnel) == sorted(funnel, reverse=True)


def test_org_scope_never_shows_another_organisation(crm, warehouse):
    _, tables = crm
    org_a = tables.organizations.set_index("name").loc["Org A", "id"]
    org_b = tables.organizations.set_index("name").loc["Org B", "id"]
    w = _scoped(warehouse, ("Org A",))
    assert [o["value"] for o in w.options()["organization"]] == [org_a]
    truth_a = _truth(tables, "Org A")
    deals = w.open_deals(Filters())
    assert set(deals["organization_id"]) == {org_a}
    assert set(deals["opportunity_id"]) == set(truth_a[~truth_a["stage"].str.startswith("closed")]["id"])
    # a filter naming the other organisation narrows to nothing; it never widens the scope
    other = Filters(organization=(org_b,), period="all")
    assert w.open_deals(other).empty and w.won_by_month(other).empty and w.slipped(other).empty
    assert w.funnel(other)["deals"].sum() == 0 and w.leads(other).empty
    for metric, (table, expression) in METRICS.items():
        rows = w.aggregate(table, expression, ["organization"], Filters(period="all"))
        assert set(rows["organization"]) <= {"Org A"}, metric
    won_a = truth_a[truth_a["stage"] == "closed_won"]["value"].sum()
    assert w.won_by_month(Filters(period="all"))["won_value"].sum() == pytest.approx(won_a)
    with pytest.raises(ValueError, match="no such organisation"):
        _scoped(warehouse, ("Org C",))


def test_filters_change_the_numbers(warehouse):
    w = _scoped(warehouse)
    everything = len(w.open_deals(Filters()))
    region = w.options()["region"][0]["value"]
    narrowed = w.open_deals(Filters(region=(region,)))
    assert 0 < len(narrowed) < everything and set(narrowed["region"]) == {region}


def test_saved_view_reloads_identically(tmp_path, warehouse):
    w = _scoped(warehouse)
    path = tmp_path / "views.json"
    view = validate({"name": "won by region", "metric": "won_revenue", "dimensions": ["region"],
                     "filters": {"period": "all"}, "chart": "bar"})  # fmt: skip
    save_view(path, view)
    save_view(path, validate({"name": "pipeline", "metric": "open_pipeline", "dimensions": ["stage"]}))
    loaded = load_views(path)
    assert loaded["won by region"] == view and len(loaded) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["views.json"]  # no temp file left behind
    first = w.aggregate(view.table, METRICS[view.metric][1], list(view.dimensions), view.query_filters())
    again = w.aggregate(view.table, METRICS[view.metric][1], list(loaded[view.name].dimensions),
                        loaded[view.name].query_filters())  # fmt: skip
    pd.testing.assert_frame_equal(first, again)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"name": "x", "metric": "profit"}, "metric"),
        ({"name": "x", "metric": "won_revenue", "dimensions": ["stage"]}, "dimensions"),
        ({"name": "x", "metric": "won_revenue", "chart": "radar"}, "chart"),
        ({"name": "", "metric": "won_revenue"}, "name"),
        ({"name": "x", "metric": "won_revenue", "filters": {"period": "5y"}}, "filters.period"),
        ({"name": "x", "metric": "won_revenue", "sql": "DROP TABLE"}, "sql"),
    ],
)
def test_bad_view_definition_is_named(raw, field):
    with pytest.raises(ViewError, match=field):
        validate(raw)


def test_bad_views_file_names_the_file_and_entry(tmp_path):
    path = tmp_path / "views.json"
    path.write_text("{not json")
    with pytest.raises(ViewError, match=r"views\.json: not valid JSON"):
        load_views(path)
    path.write_text(json.dumps({"views": [{"name": "ok", "metric": "leads"}, {"name": "bad", "metric": "?"}]}))
    with pytest.raises(ViewError, match=r"views\[1\] 'bad': field 'metric'"):
        load_views(path)


def test_insight_numbers_trace_to_the_crm(crm, warehouse):
    _, tables = crm
    w = _scoped(warehouse, ("Org B",))
    insights = {i.key: i for i in generate(w, Filters(period="all"))}
    truth = _truth(tables, "Org B")
    open_truth = truth[~truth["stage"].str.startswith("closed")]
    slipped = open_truth[open_truth["close_date"] < tables.extracted_at]
    if len(slipped):
        assert insights["slipped"].numbers["deals"] == len(slipped)
        assert insights["slipped"].numbers["value"] == pytest.approx(slipped["value"].sum())
        assert f"{len(slipped)} open deals" in insights["slipped"].text
    closed = truth[truth["stage"].str.startswith("closed")]
    rate = insights["win_rate"].numbers
    assert rate["closed"] == len(closed)
    assert rate["win_rate"] == pytest.approx((closed["stage"] == "closed_won").mean())
    last_month = closed["month"].max()
    won_last = closed[(closed["month"] == last_month) & (closed["stage"] == "closed_won")]
    assert insights["bookings"].numbers["won_value"] == pytest.approx(won_last["value"].sum())
    assert insights["bookings"].numbers["won"] == len(won_last)
    expected = (open_truth["probability"] * open_truth["value"]).sum()  # all open deals fall in months 0..
    assert insights["forecast"].numbers["expected"] <= expected + 1e-6


def test_forecast_intervals_match_monte_carlo():
    rng = np.random.default_rng(0)
    as_of = pd.Timestamp("2025-06-15", tz="UTC")
    deals = pd.DataFrame({"value": rng.lognormal(10, 1, 200), "probability": rng.uniform(0, 1, 200),
                          "close_date": as_of + pd.to_timedelta(rng.integers(-20, 10, 200), unit="D")})  # fmt: skip
    fc = pipeline_forecast(deals, as_of, months=1).iloc[0]
    draws = (rng.uniform(size=(20000, 200)) < deals["probability"].to_numpy()) @ deals["value"].to_numpy()
    assert fc["expected"] == pytest.approx((deals["probability"] * deals["value"]).sum())
    assert fc["p10"] == pytest.approx(np.quantile(draws, 0.1), rel=0.03)
    assert fc["p90"] == pytest.approx(np.quantile(draws, 0.9), rel=0.03)
    assert fc["p10"] < fc["p25"] < fc["p50"] < fc["p75"] < fc["p90"]
    assert pipeline_forecast(deals, as_of, 1, multiplier=1.2).iloc[0]["expected"] > fc["expected"]


def test_every_page_renders_an_empty_state_without_models_or_reports(crm, tmp_path):
    ctx = build_context(tmp_path / "models", tmp_path / "reports", tmp_path / "cache", crm_dir=crm[0])
    commands = []
    for spec in PAGES:
        page = render_page(ctx, spec.path, Filters(), {})
        text = json.dumps([c.to_plotly_json() for c in page.children], default=str)
        commands += [c for c in ("fulqrun-ml run", "fulqrun-ml monitor simulate", "fulqrun-ml recommend") if c in text]
        if spec.controls:
            spec.controls(ctx)
    assert {"fulqrun-ml run", "fulqrun-ml monitor simulate", "fulqrun-ml recommend"} <= set(commands)


def test_a_chart_with_no_rows_in_scope_says_so_instead_of_drawing_empty_axes(crm, tmp_path):
    ctx = build_context(tmp_path / "models", tmp_path / "reports", tmp_path / "cache", crm_dir=crm[0])

    def churn_page(filters: Filters) -> str:
        return json.dumps([c.to_plotly_json() for c in render_page(ctx, "/churn", filters, {}).children], default=str)

    note = "No open deal in scope is past its expected close date"
    assert note in churn_page(Filters(segment=("no such segment",)))
    assert note not in churn_page(Filters()), "this CRM has slipped deals: the note must not hide them"


def test_cli_refuses_bad_arguments_with_a_sentence(tmp_path, capsys):
    assert cli_main(["dashboard", "--port", "0"]) == 2
    assert "--port" in capsys.readouterr().err
    assert cli_main(["dashboard", "--crm-dir", str(tmp_path / "nope"), "--cache-dir", str(tmp_path)]) == 2
    assert "--crm-dir" in capsys.readouterr().err


def test_the_shared_example_views_file_is_valid(warehouse):
    from fulqrun_ml.project import REPO_ROOT

    views = load_views(REPO_ROOT / "configs" / "dashboard" / "views.json")
    assert len(views) >= 3
    w = _scoped(warehouse)
    for view in views.values():
        rows = w.aggregate(view.table, METRICS[view.metric][1], list(view.dimensions), view.query_filters())
        assert len(rows) > 0, view.name


def test_sql_forecast_and_summaries_equal_their_pandas_twins(warehouse):
    from fulqrun_ml.dashboard.forecast import COMMIT_PROBABILITY, bands, moments

    w = _scoped(warehouse)
    deals = w.open_deals(Filters())
    for multiplier in (1.0, 1.3):
        sql = w.forecast_moments(Filters(), multiplier, COMMIT_PROBABILITY)
        twin = moments(deals, w.extracted_at, multiplier)
        assert [str(pd.Timestamp(m).date()) for m in sql["month"]] == [str(m.date()) for m in twin["month"]]
        for column in ("deals", "expected", "variance", "commit", "best_case"):
            np.testing.assert_allclose(sql[column].to_numpy(float), twin[column].to_numpy(float), rtol=1e-9)
        pd.testing.assert_frame_equal(bands(sql, w.extracted_at), bands(twin, w.extracted_at))
    summary = w.open_summary(Filters(), below=0.3)
    overdue = deals[deals["days_overdue"] > 0]
    assert summary["deals"] == len(deals) and summary["value"] == pytest.approx(deals["value"].sum())
    assert summary["slipped_deals"] == len(overdue) and summary["slipped_value"] == pytest.approx(
        overdue["value"].sum()
    )
    assert summary["below_deals"] == (deals["probability"] < 0.3).sum()
    histogram = w.probability_histogram(Filters())
    assert histogram["probability"].sum() == len(deals) and histogram["rep"].sum() == len(deals)
    assert (
        histogram["rep"].tolist()
        == np.histogram(np.minimum(deals["rep_probability"], 0.999), np.linspace(0, 1, 21))[0].tolist()
    )


def test_rep_free_rollups_equal_the_rep_level_tables(warehouse):
    w = _scoped(warehouse)
    reps = tuple(o["value"] for o in w.options()["rep"])
    every_rep = Filters(rep=reps, period="all")  # naming every rep forces the rep-level tables
    assert w.table("closed_monthly", Filters()) == "closed_monthly_by_team"
    assert w.table("closed_monthly", every_rep) == "closed_monthly"
    pd.testing.assert_frame_equal(w.won_by_month(Filters(period="all")), w.won_by_month(every_rep))
    pd.testing.assert_frame_equal(w.funnel(Filters(period="all")), w.funnel(every_rep))
    assert w.win_rate(Filters(period="all")) == pytest.approx(w.win_rate(every_rep))
    pd.testing.assert_frame_equal(w.leads(Filters(period="all")), w.leads(every_rep), check_dtype=False)


def test_overview_insights_are_reworded_only_when_a_provider_is_configured(crm, tmp_path, monkeypatch):
    from .llm_fake_server import FakeLLMServer

    class Rewording(FakeLLMServer):
        def openai_reply(self, body: dict) -> dict:
            self.reply = "Reworded: " + body["messages"][-1]["content"]
            return super().openai_reply(body)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-key")
    offline = build_context(tmp_path / "m", tmp_path / "r", tmp_path / "c", crm_dir=crm[0])
    templated = [c for c in render_page(offline, "/", Filters(), {}).children[0].children[1].children]
    with Rewording() as server:
        config = tmp_path / "insights.yaml"
        config.write_text(f"provider: openai\nmodel: fake\nbase_url: {server.openai_url}\nmax_retries: 0\n")
        ctx = build_context(tmp_path / "m", tmp_path / "r", tmp_path / "c", crm_dir=crm[0], insights_config=config)
        items = render_page(ctx, "/", Filters(), {}).children[0].children[1].children
    assert [i.children for i in items] == ["Reworded: " + t.children for t in templated]
    assert all("worded by openai (numbers checked)" in i.title for i in items)
    assert len(server.requests) == len(templated) >= 3


def test_the_accounts_table_equals_a_pandas_recomputation(crm, warehouse):
    """Customers (a won deal) with their won revenue over the last 365 days and open pipeline, per organisation."""
    _, tables = crm
    o = _truth(tables)
    won = o[o["stage"] == "closed_won"]
    recent = won[won["close_date"] > tables.extracted_at - pd.Timedelta(days=365)]
    got = _scoped(warehouse).accounts(Filters()).set_index("company_id")
    assert set(got.index) == set(won["company_id"].astype(str))
    expected = recent.groupby(recent["company_id"].astype(str))["value"].sum().reindex(got.index, fill_value=0.0)
    np.testing.assert_allclose(got["won_value_365d"].to_numpy(), expected.to_numpy(), rtol=1e-9)
    open_ = o[~o["stage"].isin(["closed_won", "closed_lost"])]
    pipeline = open_.groupby(open_["company_id"].astype(str))["value"].sum().reindex(got.index, fill_value=0.0)
    np.testing.assert_allclose(got["open_value"].to_numpy(), pipeline.to_numpy(), rtol=1e-9)
    only_b = _scoped(warehouse, ("Org B",)).accounts(Filters())
    assert set(only_b["organization"]) == {"Org B"} and 0 < len(only_b) < len(got)
