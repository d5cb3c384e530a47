"""`fulqrun-ml dashboard`: the Dash app (callbacks) and its command line, served on 127.0.0.1 only.

    fulqrun-ml dashboard [--port 8050] [--models-dir models] [--reports-dir reports] [--triton 127.0.0.1:8000]
                         [--crm-dir DIR] [--organization NAME_OR_ID ...] [--recommendations actions.parquet]
                         [--views FILE | --views-dsn-env VAR_HOLDING_A_POSTGRESQL_URL] [--insights-config YAML]

Why errors become a box on the page: a page that fails (a corrupt report, an unreachable Triton) must say
what failed in a sentence and leave the rest of the app working; Dash runs with debug off, so no stack trace
reaches the browser. The organisation scope is fixed at start-up: a user of one organisation is given an app
started with `--organization`, and no filter can widen it (queries.ScopedWarehouse).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from dash import ALL, Dash, Input, Output, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate

from fulqrun_ml.dashboard import pages_builder, pages_predict
from fulqrun_ml.dashboard.components import Page
from fulqrun_ml.dashboard.context import DashboardContext, build_context
from fulqrun_ml.dashboard.layout import BY_PATH, CSS, PAGES, frame, guide_sections
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.dashboard.scenario import EDITABLE_NUMERIC
from fulqrun_ml.dashboard.views import ViewError, validate
from fulqrun_ml.errors import FulqrunMLError

log = logging.getLogger(__name__)
FILTER_IDS = ("organization", "region", "rep", "segment", "period")
FILTER_INPUTS = [Input(f"filter-{f}", "value") for f in FILTER_IDS]


def _filters(values: list[Any]) -> Filters:
    return Filters.from_values(dict(zip(FILTER_IDS, values, strict=True)))


def _controls(ids: list[dict[str, str]], values: list[Any]) -> dict[str, Any]:
    return {i["name"]: v for i, v in zip(ids, values, strict=False)}


def error_box(exc: BaseException) -> html.Div:
    message = str(exc) if isinstance(exc, FulqrunMLError) else f"{type(exc).__name__}: {exc}"
    return html.Div(
        className="error", role="alert", children=[html.H2("This view could not be drawn"), html.P(message)]
    )


def render_page(ctx: DashboardContext, path: str, filters: Filters, controls: dict[str, Any]) -> Page:
    spec = BY_PATH.get(path or "/")
    if spec is None:
        return Page([html.P(f"No page at {path}. Pick one on the left.")])
    return spec.render(ctx, filters, controls)


def create_app(ctx: DashboardContext) -> Dash:
    app = Dash(__name__, title="FulQrun analytics", suppress_callback_exceptions=True, assets_ignore=".*")
    app.index_string = app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>").replace(
        "<html>", '<html lang="en">'
    )
    app.layout = frame(ctx)

    @app.callback(Output("page-shell", "children"), Input("url", "pathname"))
    def shell(path: str) -> Any:
        if path == "/guide":
            return guide_sections()
        spec = BY_PATH.get(path or "/")
        if spec is None:
            return None
        title = html.Div(
            [html.H1(spec.title), html.A("How to read this page", href=f"/guide#{spec.anchor}", className="guide-link")]
        )
        try:
            controls = spec.controls(ctx) if spec.controls else []
        except Exception as exc:
            log.exception("controls of %s failed", path)
            controls = [error_box(exc)]
        return [title, *controls]

    @app.callback(
        Output("page-content", "children"),
        Input("url", "pathname"),
        *FILTER_INPUTS,
        Input({"type": "control", "name": ALL}, "value"),
        State({"type": "control", "name": ALL}, "id"),
    )
    def content(path: str, *args: Any) -> Any:
        if path == "/guide":
            return None
        values, control_values, control_ids = list(args[:5]), args[5], args[6]
        spec = BY_PATH.get(path or "/")
        if spec is not None and spec.waits_for_controls and not control_ids:
            raise PreventUpdate
        try:
            children = render_page(ctx, path, _filters(values), _controls(control_ids, control_values)).children
        except Exception as exc:
            log.exception("page %s failed", path)
            children = [error_box(exc)]
        return html.Div(children, **{"data-page": path or "/"})  # marks whose content this is (tests, bench)

    @app.callback(
        Output("csv-download", "data"),
        Input({"type": "csv", "chart": ALL}, "n_clicks"),
        State("url", "pathname"),
        *[State(f"filter-{f}", "value") for f in FILTER_IDS],
        State({"type": "control", "name": ALL}, "value"),
        State({"type": "control", "name": ALL}, "id"),
        prevent_initial_call=True,
    )
    def download(clicks: list[int | None], path: str, *args: Any) -> Any:
        trigger = callback_context.triggered_id
        if not trigger or not any(clicks):
            return no_update
        chart_id = trigger["chart"]
        page = render_page(ctx, path, _filters(list(args[:5])), _controls(args[6], args[5]))
        if chart_id == "builder":
            page.tables["builder"] = ctx.extra.get("builder_rows")
        data = page.tables.get(chart_id)
        data = data() if callable(data) else data  # large tables are computed only when downloaded
        if data is None:
            return no_update
        return dcc.send_data_frame(data.to_csv, f"{chart_id}.csv", index=False)

    @app.callback(
        Output("whatif-result", "children"),
        Input("whatif-score", "n_clicks"),
        State("whatif-deal", "value"),
        State("whatif-stage", "value"),
        *[State(f"whatif-{name}", "value") for name in EDITABLE_NUMERIC],
        prevent_initial_call=True,
    )
    def whatif(_clicks: int, deal: str, stage: str | None, *numbers: Any) -> Any:
        changes = {"stage": stage, **dict(zip(EDITABLE_NUMERIC, numbers, strict=True))}
        try:
            return pages_predict.render_scenario(ctx, deal, changes)
        except Exception as exc:
            return error_box(exc)

    @app.callback(
        Output("builder-output", "children"),
        Input("builder-load", "value"),
        Input("builder-metric", "value"),
        Input("builder-dimensions", "value"),
        Input("builder-chart", "value"),
        *FILTER_INPUTS,
    )
    def build(saved: str | None, metric: str, dims: list[str], chart: str, *filter_values: Any) -> Any:
        try:
            if saved:
                view = ctx.views().load()[saved]
            else:
                filters = {k: v for k, v in zip(FILTER_IDS, filter_values, strict=True) if v}
                view = validate({"name": "unsaved", "metric": metric, "dimensions": dims or [], "filters": filters,
                                 "chart": chart})  # fmt: skip
            component, rows = pages_builder.render_view(ctx, view)
            ctx.extra["builder_rows"] = rows
            return [html.P(f"Definition: {view.to_json()}", id="builder-definition", className="note"), component]
        except (ViewError, KeyError) as exc:
            return error_box(ViewError(f"saved view {saved!r} is gone") if isinstance(exc, KeyError) else exc)

    @app.callback(
        Output("builder-status", "children"),
        Output("builder-load", "options"),
        Input("builder-save", "n_clicks"),
        State("builder-name", "value"),
        State("builder-metric", "value"),
        State("builder-dimensions", "value"),
        State("builder-chart", "value"),
        *[State(f"filter-{f}", "value") for f in FILTER_IDS],
        prevent_initial_call=True,
    )
    def save(_clicks: int, name: str, metric: str, dims: list[str], chart: str, *filter_values: Any) -> Any:
        filters = {k: v for k, v in zip(FILTER_IDS, filter_values, strict=True) if v}
        try:
            view = validate({"name": name or "", "metric": metric, "dimensions": dims or [], "filters": filters,
                             "chart": chart})  # fmt: skip
            store = ctx.views()
            store.save(view)
            return f"Saved view '{view.name}' to {store.describe()}", sorted(store.load())
        except ViewError as exc:
            return f"Not saved: {exc}", no_update

    @app.callback(*[Output(f"nav-{p.anchor}", "className") for p in PAGES], Input("url", "pathname"))
    def current(path: str) -> Any:
        return [("current" if p.path == (path or "/") else "") for p in PAGES]

    return app


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fulqrun-ml dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument("--triton", default=None, help="host:port of a Triton HTTP endpoint for live answers")
    parser.add_argument("--crm-dir", type=Path, default=None, help="a CRM export (default: the simulated CRM)")
    parser.add_argument("--cache-dir", type=Path, default=Path("logs/dashboard"))
    parser.add_argument("--organization", action="append", default=None, help="restrict to this organisation")
    parser.add_argument("--recommendations", type=Path, default=None, help="`fulqrun-ml recommend --out` file")
    parser.add_argument("--views", type=Path, default=Path("configs/dashboard/views.json"))
    parser.add_argument("--logs-dir", type=Path, default=Path("logs"))
    parser.add_argument(
        "--views-dsn-env",
        default=None,
        help="store custom views in PostgreSQL: the NAME of the variable holding its URL",
    )
    parser.add_argument(
        "--insights-config", type=Path, default=None, help="an insights YAML naming an LLM provider to reword insights"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(list(argv or []))
    if not 0 < args.port < 65536:
        raise FulqrunMLError(f"--port: expected 1-65535, got {args.port}")
    ctx = build_context(
        args.models_dir, args.reports_dir, args.cache_dir, args.crm_dir, args.triton,
        tuple(args.organization) if args.organization else None, args.recommendations, args.views, args.logs_dir,
        views_dsn_env=args.views_dsn_env, insights_config=args.insights_config,
    )  # fmt: skip
    app = create_app(ctx)
    print(f"FulQrun dashboard on http://127.0.0.1:{args.port}/ (CRM {ctx.crm_dir}; Ctrl-C stops it)", flush=True)
    app.run(host="127.0.0.1", port=args.port, debug=False)
    return 0
