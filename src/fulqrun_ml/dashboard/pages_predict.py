"""Prediction pages: Scenario planner (what-if through Triton), Predictive explorer, Feature importance.

Why the planner's result is a separate callback (app.py): the page draws the deal and the editable fields;
the button sends them to Triton and writes the answer, so the number shown is the server's answer verbatim.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import dcc, html

from fulqrun_ml.dashboard import scenario
from fulqrun_ml.dashboard.components import PALETTE, Page, empty
from fulqrun_ml.dashboard.context import DashboardContext, Missing
from fulqrun_ml.dashboard.queries import Filters

PICKER_ROWS = 500  # deals offered in the planner's picker, largest first (a 1M-deal CRM has ~50k open deals)
NO_TRITON = Missing("no Triton server given", "fulqrun-ml serve, then fulqrun-ml dashboard --triton 127.0.0.1:8000")


def scored_deals(ctx: DashboardContext, filters: Filters) -> pd.DataFrame:
    deals = ctx.warehouse.open_deals(filters)
    if ctx.open_deal_features is None:
        return deals.iloc[0:0]
    known = set(ctx.open_deal_features["opportunity_id"].astype(str))
    return deals[deals["opportunity_id"].isin(known)]


def _deal_picker(ctx: DashboardContext, filters: Filters, picker_id: str) -> dcc.Dropdown:
    deals = scored_deals(ctx, filters).head(PICKER_ROWS)
    options = [
        {"label": f"{r.opportunity_id[:8]} · {r.stage} · ${r.value:,.0f} · {r.rep}", "value": r.opportunity_id}
        for r in deals.itertuples()
    ]
    return dcc.Dropdown(id=picker_id, options=options, value=options[0]["value"] if options else None, clearable=False)


def scenario_page(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    if ctx.deal_model is None or ctx.open_deal_features is None:
        page.children.append(empty(Missing(f"no deal-win model in {ctx.models_dir}", "fulqrun-ml run")))
        return page
    if not ctx.triton_url:
        page.children.append(empty(NO_TRITON))
    fields = [
        html.Div(
            className="field",
            children=[
                html.Label(name.replace("_", " "), htmlFor=f"whatif-{name}"),
                dcc.Input(id=f"whatif-{name}", type="number", debounce=True, placeholder="unchanged"),
            ],
        )
        for name in scenario.EDITABLE_NUMERIC
    ]
    fields.insert(
        0,
        html.Div(
            className="field",
            children=[
                html.Label("stage", htmlFor="whatif-stage"),
                dcc.Dropdown(
                    id="whatif-stage",
                    options=list(scenario.STAGE_CHOICES),
                    placeholder="unchanged",
                ),
            ],
        ),
    )
    page.children += [
        html.Section(
            className="card",
            **{"aria-label": "Scenario planner"},
            children=[
                html.H2("Change an open deal and see the served model's new probability"),
                html.Label("Open deal", htmlFor="whatif-deal"),
                _deal_picker(ctx, filters, "whatif-deal"),
                html.Div(className="fields", children=fields),
                html.Button("Score with Triton", id="whatif-score", className="primary"),
                dcc.Loading(html.Div(id="whatif-result", role="status", **{"aria-live": "polite"})),
            ],
        )
    ]
    return page


def render_scenario(ctx: DashboardContext, opportunity_id: str, changes: dict[str, Any]) -> html.Div:
    """The planner's answer: the new probability from Triton, the old one, expected revenue and reasons."""
    if not ctx.triton_url:
        return empty(NO_TRITON)
    names = list(ctx.open_deal_features.columns.drop(["opportunity_id", "as_of"], errors="ignore"))
    spec_names = [n for n in names if n in _spec_names(ctx)]
    base = scenario.base_record(ctx.open_deal_features, opportunity_id, spec_names)
    changed = scenario.apply_changes(base, changes)
    result = scenario.score(ctx.triton_url, ctx.deal_model.name, base, changed)
    reasons = []
    if result.reasons:
        reasons = [html.Li(f"+ {r['field']} ({r['effect']:+.3f})") for r in result.reasons.get("positive", [])[:3]]
        reasons += [html.Li(f"- {r['field']} ({r['effect']:+.3f})") for r in result.reasons.get("negative", [])[:3]]
    return html.Div(
        [
            html.P(["New probability: ", html.Strong(f"{result.probability:.4f}", id="whatif-probability")]),
            html.P(["Before the change: ", html.Span(f"{result.baseline:.4f}", id="whatif-baseline")]),
            html.P(["Expected revenue: ", html.Span(f"${result.expected_revenue:,.0f}", id="whatif-revenue")]),
            html.P(f"Model {ctx.deal_model.name} v{ctx.deal_model.version}, served by Triton at {ctx.triton_url}"),
            html.Ul(reasons, **{"aria-label": "Top reasons"}) if reasons else None,
        ]
    )


def _spec_names(ctx: DashboardContext) -> list[str]:
    from fulqrun_ml.features.spec import FittedFeatureSpec

    if "spec_names" not in ctx.extra:
        ctx.extra["spec_names"] = FittedFeatureSpec.load(ctx.deal_model.path / "feature_spec.json").spec.names
    return ctx.extra["spec_names"]


def explorer(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    """Every model's view of one deal: the rep's guess, the served model offline, and the next action."""
    page = Page([])
    chosen = controls.get("deal")
    deals = ctx.warehouse.open_deals(filters, opportunity_id=chosen) if chosen else pd.DataFrame()
    if deals.empty:  # nothing picked, or the pick is outside the filters: the largest deal that matches
        deals = ctx.warehouse.open_deals(filters, limit=1)
    if deals.empty:
        page.children.append(empty(Missing("no open deals match these filters", "widen the filters")))
        return page
    row = deals.iloc[0]
    views = [{"model": "rep's guess (CRM probability)", "view": row["rep_probability"]}]
    if ctx.deal_model is not None and pd.notna(row.get("model_probability")):
        views.append(
            {"model": f"deal_win v{ctx.deal_model.version} (win probability)", "view": row["model_probability"]}
        )
    if ctx.recommendations is not None and ctx.recommendations.is_file():
        ranked = pd.read_parquet(ctx.recommendations)
        mine = ranked[ranked["opportunity_id"].astype(str) == row["opportunity_id"]]
        for action in mine.head(3).itertuples():
            views.append({"model": f"next action #{action.rank}", "view": f"{action.type_channel} {action.gap}: "
                          f"{100 * action.uplift_win_probability:+.1f} pts"})  # fmt: skip
    probability = row["model_probability"] if pd.notna(row.get("model_probability")) else row["rep_probability"]
    gauge = go.Figure(
        go.Indicator(
            mode="gauge+number", value=float(probability),
            gauge={"axis": {"range": [0, 1]}, "bar": {"color": PALETTE[0]},
                   "threshold": {"line": {"color": PALETTE[3], "width": 3}, "value": float(row["rep_probability"])}},
        )
    )  # fmt: skip
    page.add_chart("meter", "Win probability (bar: model; red line: the rep's guess)", gauge, row.to_frame().T)
    if ctx.triton_url and ctx.open_deal_features is not None and ctx.deal_model is not None:
        known = ctx.open_deal_features["opportunity_id"].astype(str) == row["opportunity_id"]
        if known.any():
            record = ctx.open_deal_features[known].iloc[0][_spec_names(ctx)].to_dict()
            try:
                reasons = scenario.reasons_for(ctx.triton_url, ctx.deal_model.name, [record])[0] or {}
                top = [{"direction": side, **r} for side in ("positive", "negative") for r in reasons.get(side, [])]
                page.add_table("deal-reasons", "Top reasons (served by Triton)", pd.DataFrame(top))
            except Exception as exc:  # the reasons endpoint is optional
                page.children.append(
                    empty(Missing(f"no reasons from Triton ({type(exc).__name__})", "fulqrun-ml serve"))
                )
    facts = row[["opportunity_id", "organization", "region", "rep", "segment", "stage", "value", "age_days"]]
    page.add_table("deal-facts", "The deal", facts.to_frame("value").reset_index(names="field").astype(str))
    page.add_table("model-views", "Every model's view of it", pd.DataFrame(views).astype(str))
    return page


def feature_importance(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    if ctx.deal_model is None or ctx.open_deal_features is None:
        page.children.append(empty(Missing(f"no deal-win model in {ctx.models_dir}", "fulqrun-ml run")))
        return page
    if not ctx.triton_url:
        page.children.append(empty(NO_TRITON))
        return page
    deals = scored_deals(ctx, filters).head(40)
    features = ctx.open_deal_features.set_index(ctx.open_deal_features["opportunity_id"].astype(str))
    records = [{n: features.loc[d, n] for n in _spec_names(ctx)} for d in deals["opportunity_id"]]
    try:
        explained = scenario.reasons_for(ctx.triton_url, ctx.deal_model.name, records) if records else []
    except Exception as exc:  # the reasons endpoint is served by `fulqrun-ml serve`
        page.children.append(empty(Missing(f"Triton has no {ctx.deal_model.name}_reasons ({type(exc).__name__})",
                                           "fulqrun-ml serve")))  # fmt: skip
        return page
    rows = [
        {"opportunity_id": d, "field": r["field"], "effect": r["effect"]}
        for d, reasons in zip(deals["opportunity_id"], explained, strict=True)
        for side in ("positive", "negative")
        for r in (reasons or {}).get(side, [])
    ]
    frame = pd.DataFrame(rows, columns=["opportunity_id", "field", "effect"])
    # a field outside a deal's top reasons counts 0 for that deal: the mean is over every deal explained
    overall = frame.assign(abs_effect=frame["effect"].abs()).groupby("field", as_index=False)["abs_effect"].sum()
    overall = overall.assign(abs_effect=overall["abs_effect"] / max(len(records), 1)).sort_values("abs_effect")
    fig = go.Figure(go.Bar(x=overall["abs_effect"], y=overall["field"], orientation="h", marker_color=PALETTE[0]))
    fig.update_xaxes(title="mean |effect on probability| over the deals shown (top reasons only)")
    fig.update_yaxes(dtick=1)
    page.add_chart("global-importance", f"Global importance ({len(records)} open deals, Triton reasons)", fig, overall)
    page.add_table("per-prediction", "Per prediction: the top reasons of each deal", frame)
    return page
