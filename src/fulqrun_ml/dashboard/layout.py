"""The app frame: navigation, the filter bar, the page registry, styles and the in-app user guide.

Why a registry of (path, title, render, guide anchor, controls): the frame, the CSV download, the browser tests
and the screenshot script all walk the same list, so a new page is one entry and is tested everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dash import dcc, html

from fulqrun_ml.dashboard import pages_accounts, pages_builder, pages_business, pages_models, pages_predict
from fulqrun_ml.dashboard.context import DashboardContext
from fulqrun_ml.dashboard.queries import PERIODS, Filters
from fulqrun_ml.project import REPO_ROOT

GUIDE_FILE = REPO_ROOT / "docs" / "user-guide.md"
EXPLORER_CHOICES = 200  # the largest open deals offered in the explorer's picker


@dataclass(frozen=True)
class PageSpec:
    path: str
    title: str
    render: Callable[..., Any]
    anchor: str
    controls: Callable[[DashboardContext], list[Any]] | None = None
    # The page's content reads pattern-matched controls: draw it once they exist, not also before (a second
    # render per navigation otherwise).
    waits_for_controls: bool = False


def _forecast_controls(ctx: DashboardContext) -> list[Any]:
    return [
        html.Section(className="card controls", **{"aria-label": "Forecast assumptions"}, children=[
            html.Label("Win-rate multiplier (scenario)", htmlFor="ctl-multiplier"),
            dcc.Slider(id={"type": "control", "name": "win_rate_multiplier"}, min=0.5, max=1.5, step=0.05,
                       value=1.0, marks={0.5: "0.5", 1.0: "1.0", 1.5: "1.5"}),
            html.Label("Monthly quota ($)", htmlFor="ctl-quota"),
            dcc.Input(id={"type": "control", "name": "quota"}, type="number", min=0, debounce=True,
                      placeholder="none"),
        ])
    ]  # fmt: skip


def _explorer_controls(ctx: DashboardContext) -> list[Any]:
    deals = ctx.warehouse.open_deals(Filters(), limit=EXPLORER_CHOICES)
    options = [{"label": f"{r.opportunity_id[:8]} · {r.stage} · ${r.value:,.0f}", "value": r.opportunity_id}
               for r in deals.itertuples()]  # fmt: skip
    return [
        html.Section(className="card controls", children=[
            html.Label("Deal", htmlFor="ctl-deal"),
            dcc.Dropdown(id={"type": "control", "name": "deal"}, options=options,
                         value=options[0]["value"] if options else None, clearable=False),
        ])
    ]  # fmt: skip


def _deals_controls(ctx: DashboardContext) -> list[Any]:
    deals = ctx.warehouse.open_deals(Filters(), limit=EXPLORER_CHOICES)
    options = [{"label": f"{r.opportunity_id[:8]} · {r.stage} · ${r.value:,.0f}", "value": r.opportunity_id}
               for r in deals.itertuples()]  # fmt: skip
    return [
        html.Section(className="card controls", children=[
            html.Label("Probability history of deal", htmlFor="ctl-history-deal"),
            dcc.Dropdown(id={"type": "control", "name": "history_deal"}, options=options, value=None,
                         placeholder="pick a deal (largest open deals)"),
        ])
    ]  # fmt: skip


def _churn_controls(ctx: DashboardContext) -> list[Any]:
    options = [{"label": f"alert at {name}", "value": name} for name in pages_accounts.ALERT_SETTINGS]
    return [
        html.Section(className="card controls", children=[
            html.Label("Alert threshold", htmlFor="ctl-alert-setting"),
            dcc.Dropdown(id={"type": "control", "name": "alert_setting"}, options=options,
                         value=pages_accounts.DEFAULT_ALERT, clearable=False),
        ])
    ]  # fmt: skip


PAGES = [
    PageSpec("/", "Overview", pages_builder.overview, "overview"),
    PageSpec("/forecast", "Forecast", pages_business.forecast, "forecast", _forecast_controls, True),
    PageSpec("/pipeline", "Pipeline", pages_business.pipeline, "pipeline-analytics"),
    PageSpec("/deals", "Deals", pages_business.deals, "deals", _deals_controls, True),
    PageSpec("/leads", "Leads", pages_business.leads, "leads"),
    PageSpec("/churn", "Churn & expansion", pages_accounts.churn, "churn-and-expansion", _churn_controls, True),
    PageSpec("/actions", "Next actions & pricing", pages_models.actions, "next-actions-and-pricing"),
    PageSpec("/territories", "Territories", pages_models.territories, "territories"),
    PageSpec("/model-health", "Model health", pages_models.model_health, "model-health"),
    PageSpec("/features", "Feature importance", pages_predict.feature_importance, "feature-importance"),
    PageSpec("/experiments", "Experiments", pages_models.experiments, "experiments"),
    PageSpec("/explorer", "Predictive explorer", pages_predict.explorer, "predictive-explorer", _explorer_controls,
             True),
    PageSpec("/scenario", "Scenario planner", pages_predict.scenario_page, "scenario-planner"),
    PageSpec("/builder", "Custom builder", pages_builder.builder_page, "custom-analytics-builder",
             pages_builder.builder_controls),
]  # fmt: skip
BY_PATH = {p.path: p for p in PAGES}

CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0; color: #1a1a1a; }
.frame { display: grid; grid-template-columns: 210px 1fr; min-height: 100vh; }
nav { background: #f4f6f8; padding: 12px; } nav a { display: block; padding: 6px 8px; color: #0b3d91;
  text-decoration: none; border-radius: 4px; }
nav a:hover, nav a:focus { background: #dde6f3; outline: 2px solid #0072B2; }
nav a.current { font-weight: bold; background: #dde6f3; }
main { padding: 12px 20px; min-width: 0; } .filters { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 12px; }
.filters .field { min-width: 180px; flex: 1; } .card { border: 1px solid #d0d7de; border-radius: 6px; padding: 10px;
  margin-bottom: 14px; background: #fff; } .kpis { display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 12px; }
.kpi { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; min-width: 150px; }
.kpi-label { display: block; font-size: 12px; color: #444; } .kpi strong { font-size: 20px; }
.empty { border: 2px dashed #E69F00; border-radius: 6px; padding: 10px; margin-bottom: 12px; background: #fffaf0; }
.command { background: #f4f4f4; padding: 2px 6px; } button { padding: 6px 12px; margin: 4px 0; cursor: pointer; }
button:focus, input:focus { outline: 3px solid #0072B2; } .note { color: #444; font-size: 13px; }
.fields { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 8px; margin: 8px 0; }
.report-image { max-width: 100%; } .error { border: 2px solid #D55E00; padding: 10px; border-radius: 6px; }
@media (max-width: 900px) { .frame { grid-template-columns: 1fr; } nav { display: flex; flex-wrap: wrap; } }
"""


def filter_bar(ctx: DashboardContext) -> html.Div:
    options = ctx.warehouse.options()

    def multi(name: str, label: str) -> html.Div:
        return html.Div(className="field", children=[
            html.Label(label, htmlFor=f"filter-{name}"),
            dcc.Dropdown(id=f"filter-{name}", options=options[name], multi=True, placeholder="all"),
        ])  # fmt: skip

    return html.Div(
        className="filters",
        role="search",
        children=[
            multi("organization", "Organisation"),
            multi("region", "Region"),
            multi("rep", "Rep"),
            multi("segment", "Segment (industry)"),
            html.Div(className="field", children=[
                html.Label("Period", htmlFor="filter-period"),
                dcc.Dropdown(id="filter-period", options=list(PERIODS), value="12m", clearable=False),
            ]),
        ],
    )  # fmt: skip


def frame(ctx: DashboardContext) -> html.Div:
    return html.Div(
        className="frame",
        children=[
            dcc.Location(id="url"),
            dcc.Download(id="csv-download"),
            html.Nav(
                **{"aria-label": "Pages"},
                children=[html.H1("FulQrun", style={"fontSize": "20px"})]
                + [dcc.Link(p.title, href=p.path, id=f"nav-{p.anchor}") for p in PAGES]
                + [dcc.Link("User guide", href="/guide", id="nav-guide")],
            ),
            html.Main(
                children=[filter_bar(ctx), html.Div(id="page-shell"), html.Div(id="page-content")],
            ),
        ],
    )


def guide_sections(path: Path = GUIDE_FILE) -> list[Any]:
    """docs/user-guide.md as sections with ids, so /guide#forecast lands on the page's section."""
    if not path.is_file():
        return [html.P(f"{path} is missing")]
    sections, current, lines = [], "top", []
    for line in [*path.read_text().splitlines(), "## "]:
        if line.startswith("## "):
            if lines:
                sections.append(html.Section(id=current, children=[dcc.Markdown("\n".join(lines))]))
            title = line[3:].strip()
            current = title.lower().replace("&", "and").replace(" ", "-").replace("--", "-")
            lines = [line]
        else:
            lines.append(line)
    return sections
