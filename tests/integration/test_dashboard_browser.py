"""The dashboard in a real Chromium (apt `chromium`, Playwright) against a real Triton serving the tiny model.

One app (a werkzeug server thread), one Triton and one browser for the whole module, to keep it fast; the app
keeps its custom views in the session's PostgreSQL (`--views-dsn-env`), the file store being tested in the unit
tests. Checked: every page renders with no console errors; a filter changes the numbers (to the warehouse's
value); a CSV download holds the chart's numbers; a saved custom view reloads identically (from PostgreSQL);
the what-if shows exactly the probability Triton returns for the changed deal; a deal's probability history
draws the model's point-in-time scores, ending at the deal's score on the page.
"""

from __future__ import annotations

import base64
import csv
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import make_server

from fulqrun_ml.dashboard.app import create_app
from fulqrun_ml.dashboard.context import build_context
from fulqrun_ml.dashboard.layout import PAGES
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def app_url(published, tmp_path_factory, pg_dsn):
    """(url, context, triton url): the dashboard on a free loopback port, reading the tiny registry."""
    if not CHROMIUM.is_file():
        pytest.fail("apt chromium is missing: run scripts/install_test_services.sh (as root)")
    version, _ = published
    repo = tmp_path_factory.mktemp("dash-repo")
    builder = TritonRepositoryBuilder(repo)
    builder.add(version, config_for_version(version))
    builder.add(version, config_for_version(version, reasons_top_k=3))
    cache = tmp_path_factory.mktemp("dash-cache")
    with (
        TritonServer(repo, explicit_models=["deal_win", "deal_win_reasons"]) as triton,
        pytest.MonkeyPatch.context() as mp,
    ):
        mp.setenv("DASHBOARD_VIEWS_DSN", pg_dsn)
        ctx = build_context(
            version.path.parent.parent, REPO_ROOT / "reports", cache, triton_url=triton.http_url,
            views_file=cache / "views.json", logs_dir=cache / "logs", views_dsn_env="DASHBOARD_VIEWS_DSN",
        )  # fmt: skip
        server = make_server("127.0.0.1", 0, create_app(ctx).server, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}", ctx, triton.http_url
        finally:
            server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.console_errors = []
    page.on("console", lambda m: page.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    yield page
    context.close()


def settle(page) -> None:
    page.wait_for_selector("#page-content > *")
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')")
    page.wait_for_timeout(300)


def test_every_page_renders_without_console_errors(app_url, page):
    url, _, _ = app_url
    for spec in PAGES:
        page.goto(url + spec.path)
        settle(page)
        assert page.locator("h1").nth(1).inner_text() == spec.title
        assert page.locator(".error").count() == 0, f"{spec.path}: {page.locator('.error').first.inner_text()}"
    page.goto(url + "/guide")
    page.wait_for_selector("#forecast")
    assert page.console_errors == []


def test_a_filter_changes_the_numbers(app_url, page):
    url, ctx, _ = app_url
    page.goto(url + "/pipeline")
    settle(page)
    before = page.locator("#kpi-open-deals").inner_text()
    region = ctx.warehouse.options()["region"][0]["value"]
    expected = len(ctx.warehouse.open_deals(Filters(region=(region,))))
    page.locator("#filter-region").click()
    page.get_by_role("option", name=region, exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_function(f"() => document.querySelector('#kpi-open-deals').innerText === '{expected:,}'")
    assert page.locator("#kpi-open-deals").inner_text() != before


def test_csv_download_holds_the_chart_numbers(app_url, page):
    url, ctx, _ = app_url
    page.goto(url + "/pipeline")
    settle(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the data of funnel as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    funnel = ctx.warehouse.funnel(Filters())
    assert [r["stage"] for r in rows] == list(funnel["stage"])
    assert [float(r["deals"]) for r in rows] == list(funnel["deals"])


def _builder_values(page) -> str:
    page.wait_for_selector("#chart-builder .js-plotly-plot")
    script = "() => JSON.stringify(document.querySelector('#chart-builder .js-plotly-plot').data.map(t => [t.x, t.y]))"
    return page.evaluate(script)


def test_a_saved_custom_view_reloads_identically(app_url, page):
    url, ctx, _ = app_url
    page.goto(url + "/builder")
    settle(page)
    page.locator("#builder-dimensions").click()
    page.get_by_role("option", name="region", exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_function("() => document.querySelector('#builder-definition').innerText.includes('region')")
    drawn = _builder_values(page)
    page.fill("#builder-name", "won by month and region")
    page.get_by_role("button", name="Save view").click()
    page.wait_for_function("() => document.querySelector('#builder-status').innerText.startsWith('Saved view')")
    page.goto(url + "/builder")
    settle(page)
    page.locator("#builder-load").click()
    page.get_by_role("option", name="won by month and region").click()
    page.wait_for_function("() => document.querySelector('#builder-definition').innerText.includes('month and region')")
    assert _builder_values(page) == drawn
    assert "won by month and region" in ctx.views().load()  # stored in PostgreSQL, not the views file
    assert not (ctx.views_file).exists()


def test_a_deals_probability_history_ends_at_its_score(app_url, page):
    url, ctx, _ = app_url
    page.goto(url + "/deals")
    settle(page)
    deal = ctx.warehouse.open_deals(Filters(), limit=1).iloc[0]
    page.locator("[id*='history_deal']").first.click()
    page.get_by_role("option", name=f"{deal['opportunity_id'][:8]} ·", exact=False).first.click()
    page.wait_for_selector("#chart-probability-history .js-plotly-plot")
    script = "() => document.querySelector('#chart-probability-history .js-plotly-plot').data[0].y"
    ys = page.evaluate(script)
    if isinstance(ys, dict):  # plotly sends numeric arrays binary-encoded: {"dtype": "f8", "bdata": base64}
        ys = np.frombuffer(base64.b64decode(ys["bdata"]), dtype=ys["dtype"]).tolist()
    assert len(ys) >= 2 and all(0 <= y <= 1 for y in ys)
    assert ys[-1] == pytest.approx(float(deal["model_probability"]), abs=1e-6)
    assert page.console_errors == []


def test_what_if_shows_the_probability_triton_returns(app_url, page):
    url, ctx, triton = app_url
    page.goto(url + "/scenario")
    settle(page)
    page.fill("#whatif-activities_total", "60")
    page.fill("#whatif-meetings_total", "12")
    page.get_by_role("button", name="Score with Triton").click()
    page.wait_for_selector("#whatif-probability")
    shown = float(page.locator("#whatif-probability").inner_text())
    baseline = float(page.locator("#whatif-baseline").inner_text())
    chosen = ctx.warehouse.open_deals(Filters())
    features = ctx.open_deal_features
    first = next(d for d in chosen["opportunity_id"] if d in set(features["opportunity_id"].astype(str)))
    names = ctx.extra["spec_names"]
    record = features[features["opportunity_id"].astype(str) == first].iloc[0][names].to_dict()
    with TritonPredictionClient(triton, "deal_win") as client:
        expected = client.predict([record, {**record, "activities_total": 60.0, "meetings_total": 12.0}])
    assert baseline == pytest.approx(float(expected[0]), abs=5e-5)
    assert shown == pytest.approx(float(expected[1]), abs=5e-5)
    assert shown != baseline
    assert page.console_errors == []
