"""Overview (insights) and the Custom analytics builder pages.

Why the builder renders a saved view from its own definition (not from the filter bar): a shared view must
reload identically for anyone who opens it, so its filters are part of the definition.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from dash import dcc, html

from fulqrun_ml.dashboard.components import PALETTE, Page, chart, empty, table
from fulqrun_ml.dashboard.context import DashboardContext, Missing
from fulqrun_ml.dashboard.insights import Insight, generate, rewritten
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.dashboard.views import CHART_TYPES, METRICS, TABLE_DIMENSIONS, ViewDefinition, ViewError


def overview(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    insights = rewritten(generate(ctx.warehouse, filters), ctx.insight_client)
    page = Page([])
    if not insights:
        page.children.append(empty(Missing("no deals match these filters", "widen the filters")))
        return page
    page.children.append(
        html.Section(
            className="card",
            **{"aria-label": "Insights"},
            children=[
                html.H2("Insights"),
                html.Ul([html.Li(i.text, id=f"insight-{i.key}", title=_provenance(i)) for i in insights]),
            ],
        )
    )
    info = ctx.warehouse.extracted_at
    page.children.append(
        html.P(f"CRM {ctx.crm_dir} extracted {info:%Y-%m-%d}; models {ctx.models_dir}.", className="note")
    )
    return page


def _provenance(insight: Insight) -> str:
    """The hover text: the query behind the numbers, and who worded the sentence."""
    if insight.writer != "template":
        return f"source: {insight.source}; worded by {insight.writer} (numbers checked); template: {insight.template}"
    return f"source: {insight.source}" + (f"; {insight.rejected}" if insight.rejected else "")


def builder_controls(ctx: DashboardContext) -> list[Any]:
    try:
        saved = sorted(ctx.views().load())
        problem = None
    except ViewError as exc:
        saved, problem = [], str(exc)
    dims = sorted({d for ds in TABLE_DIMENSIONS.values() for d in ds})
    return [
        html.Section(
            className="card builder",
            **{"aria-label": "Custom analytics builder"},
            children=[
                html.Div(
                    className="field",
                    children=[
                        html.Label("Saved view", htmlFor="builder-load"),
                        dcc.Dropdown(id="builder-load", options=saved, placeholder="build a new view"),
                    ],
                ),
                html.Div(
                    className="field",
                    children=[
                        html.Label("Metric", htmlFor="builder-metric"),
                        dcc.Dropdown(
                            id="builder-metric", options=sorted(METRICS), value="won_revenue", clearable=False
                        ),
                    ],
                ),
                html.Div(
                    className="field",
                    children=[
                        html.Label("Dimensions (at most two)", htmlFor="builder-dimensions"),
                        dcc.Dropdown(id="builder-dimensions", options=dims, value=["month"], multi=True),
                    ],
                ),
                html.Div(
                    className="field",
                    children=[
                        html.Label("Chart type", htmlFor="builder-chart"),
                        dcc.RadioItems(id="builder-chart", options=list(CHART_TYPES), value="bar", inline=True),
                    ],
                ),
                html.Div(
                    className="field",
                    children=[
                        html.Label("Name to save as", htmlFor="builder-name"),
                        dcc.Input(id="builder-name", type="text", placeholder="e.g. won revenue by region"),
                    ],
                ),
                html.Button("Save view", id="builder-save", className="primary"),
                html.Div(problem or "", id="builder-status", role="status", **{"aria-live": "polite"}),
            ],
        ),
        # The view's output sits with its inputs: drawn in the page content instead, it could appear before them
        # (a slow views store delays the controls) and Dash would fire its callback with inputs missing.
        html.Div(id="builder-output"),
    ]


def builder_page(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    where = ctx.views().describe()
    return Page([html.P(f"Saved views are stored in {where}.", className="note", id="builder-store")])


def render_view(ctx: DashboardContext, view: ViewDefinition) -> tuple[html.Section, Any]:
    """The view's chart (or table) and the rows behind it; the same definition gives the same rows."""
    expression = METRICS[view.metric][1]
    data = ctx.warehouse.aggregate(view.table, expression, list(view.dimensions), view.query_filters())
    for d in view.dimensions:
        data[d] = data[d].astype(str)
    title = f"{view.name}: {view.metric}" + (f" by {', '.join(view.dimensions)}" if view.dimensions else "")
    if view.chart == "table" or not view.dimensions:
        return table("builder", title, data), data
    x = data[view.dimensions[0]]
    fig = go.Figure()
    if view.chart == "pie":
        fig.add_pie(labels=x, values=data["value"], marker={"colors": PALETTE})
    else:
        groups = data.groupby(view.dimensions[1]) if len(view.dimensions) == 2 else [(view.metric, data)]
        for i, (name, part) in enumerate(groups):
            kind = go.Bar if view.chart == "bar" else go.Scatter
            fig.add_trace(kind(x=part[view.dimensions[0]], y=part["value"], name=str(name),
                               marker_color=PALETTE[i % len(PALETTE)]))  # fmt: skip
    return chart("builder", title, fig), data
