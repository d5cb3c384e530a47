"""Business pages: Forecast, Pipeline analytics, Deals, Leads. Each reads only the scoped warehouse.

Why separate render functions taking (context, filters, controls): the same function draws the page and, for a
CSV download, returns the table behind a chart, so the file always holds exactly the numbers on screen.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import html

from fulqrun_ml.dashboard.components import PALETTE, Page, empty, kpis, money, pct
from fulqrun_ml.dashboard.context import DashboardContext, Missing
from fulqrun_ml.dashboard.deal_rows import deal_rows
from fulqrun_ml.dashboard.forecast import COMMIT_PROBABILITY, bands
from fulqrun_ml.dashboard.history import probability_history
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.dashboard.warehouse import OPEN_STAGES

TABLE_ROWS = 1000  # rows sent to the browser; the CSV download holds every row


def forecast(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    w = ctx.warehouse
    multiplier = float(controls.get("win_rate_multiplier") or 1.0)
    quota = float(controls.get("quota") or 0.0)
    actuals = w.won_by_month(filters)
    month_moments = w.forecast_moments(filters, multiplier, COMMIT_PROBABILITY)
    page = Page([])
    if actuals.empty and month_moments.empty:
        page.children.append(empty(Missing("no deals match these filters", "widen the filters")))
        return page
    fc = bands(month_moments, w.extracted_at, months=3)
    next_month = fc.iloc[0]
    page.children.append(
        kpis(
            [
                ("Expected bookings this month", money(next_month["expected"]), "expected"),
                ("80% interval", f"{money(next_month['p10'])} - {money(next_month['p90'])}", "interval"),
                ("Commit (p >= 0.7)", money(next_month["commit"]), "commit"),
                ("Best case", money(next_month["best_case"]), "best-case"),
                ("Coverage vs quota", f"{next_month['best_case'] / quota:.2f}x" if quota else "set a quota", "cover"),
            ]
        )
    )
    fig = go.Figure()
    fig.add_bar(x=actuals["month"], y=actuals["won_value"], name="Actual bookings (won)", marker_color=PALETTE[0])
    x = fc["month"]
    for low, high, name, alpha in (("p10", "p90", "80% interval", 0.2), ("p25", "p75", "50% interval", 0.35)):
        fig.add_scatter(x=x, y=fc[high], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
        fig.add_scatter(
            x=x, y=fc[low], mode="lines", line={"width": 0}, fill="tonexty", name=name,
            fillcolor=f"rgba(230,159,0,{alpha})",
        )  # fmt: skip
    fig.add_scatter(x=x, y=fc["expected"], mode="lines+markers", name="Expected", line={"color": PALETTE[1]})
    fig.add_scatter(x=x, y=fc["commit"], mode="markers", name="Commit", marker={"symbol": "diamond", "size": 10})
    fig.add_scatter(x=x, y=fc["best_case"], mode="markers", name="Best case", marker={"symbol": "triangle-up"})
    if quota:
        fig.add_hline(y=quota, line_dash="dash", annotation_text="quota")
    fig.update_yaxes(title="bookings ($)")
    probability = "the served model's probability" if w.scores is not None else "the rep's probability"
    page.add_chart(
        "forecast",
        "Bookings: actuals and the pipeline forecast (fan = intervals)",
        fig,
        pd.concat([actuals.assign(kind="actual"), fc.assign(kind="forecast")], ignore_index=True),
        note=f"Forecast from open deals x {probability}, win-rate multiplier {multiplier:g}.",
    )
    return page


def pipeline(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    w = ctx.warehouse
    summary, rates = w.open_summary(filters), w.win_rate(filters)
    won = w.won_by_month(filters)
    months = max(len(won), 1)
    monthly_won = float(won["won_value"].sum()) / months
    open_value = summary["value"]
    velocity = (
        summary["deals"] * rates["win_rate"] * rates["avg_won_value"] / rates["avg_cycle_days"]
        if rates["won"]
        else float("nan")
    )
    page = Page(
        [
            kpis(
                [
                    ("Open pipeline", money(open_value), "open-value"),
                    ("Open deals", f"{int(summary['deals']):,}", "open-deals"),
                    ("Coverage (open / 3 months of bookings)", f"{open_value / (3 * monthly_won):.2f}x"
                     if monthly_won else "n/a", "coverage"),
                    ("Win rate (closed in period)", pct(rates["win_rate"]), "win-rate"),
                    ("Velocity ($ per day)", money(velocity), "velocity"),
                    ("Slipped (past close date)",
                     f"{int(summary['slipped_deals']):,} / {money(summary['slipped_value'])}", "slipped"),
                ]
            )
        ]
    )  # fmt: skip
    funnel = w.funnel(filters)
    page.add_chart(
        "funnel",
        "Stage conversion funnel (deals created in the period that reached each stage)",
        go.Figure(go.Funnel(y=funnel["stage"], x=funnel["deals"], textinfo="value+percent initial")),
        funnel,
    )
    aging = w.aging(filters)
    fig = go.Figure()
    for i, (age, part) in enumerate(aging.groupby("age", sort=True)):
        fig.add_bar(x=part["stage"], y=part["deals"], name=age, marker_color=PALETTE[i % len(PALETTE)])
    fig.update_layout(barmode="stack", xaxis={"categoryorder": "array", "categoryarray": list(OPEN_STAGES)})
    page.add_chart("aging", "Open deals by stage and age", fig, aging)
    page.add_table("slipped", "Slipped deals (close date passed, still open; largest first)",
                   w.slipped(filters, limit=TABLE_ROWS))  # fmt: skip
    return page


def deals(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    w = ctx.warehouse
    summary = w.open_summary(filters)
    page = Page([])
    if not summary["deals"]:
        page.children.append(empty(Missing("no open deals match these filters", "widen the filters")))
        return page
    if w.scores is None:
        page.children.append(
            empty(Missing("no deal-win model: probabilities below are the reps' own", "fulqrun-ml run"))
        )
    mean_p = summary["expected"] / summary["value"] if summary["value"] else 0.0
    page.children.append(
        kpis(
            [
                ("Open deals", f"{int(summary['deals']):,}", "deals"),
                ("Expected revenue", money(summary["expected"]), "expected"),
                ("Value-weighted probability", pct(mean_p), "mean-p"),
            ]
        )
    )
    binned = w.probability_histogram(filters)
    fig = go.Figure()
    centres = (binned["bin_low"] + binned["bin_high"]) / 2
    name = "model" if w.scores is not None else "probability"
    fig.add_bar(x=centres, y=binned["probability"], width=0.05, name=name)
    fig.add_bar(x=centres, y=binned["rep"], width=0.05, name="rep's guess", opacity=0.6)
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="win probability", range=[0, 1])
    fig.update_yaxes(title="open deals")
    page.add_chart("probabilities", "Win probability of open deals: model vs rep", fig, binned)
    columns = ["opportunity_id", "organization", "region", "rep", "segment", "stage", "value", "probability",
               "rep_probability", "close_date", "age_days", "days_overdue"]  # fmt: skip

    def rows(limit: int | None) -> pd.DataFrame:
        frame = w.open_deals(filters, limit=limit)[columns]
        return frame.assign(expected_revenue=frame["value"] * frame["probability"])

    n = int(summary["deals"])
    shown = f"the {TABLE_ROWS:,} largest of {n:,}; CSV: all" if n > TABLE_ROWS else f"{n:,}"
    page.add_table("open-deals", f"Open deals ({shown}; sortable: click a header)", rows(TABLE_ROWS))
    page.tables["open-deals"] = lambda: rows(None)  # the CSV download: every open deal, computed on demand
    _history(ctx, filters, controls.get("history_deal"), page)
    return page


def _history(ctx: DashboardContext, filters: Filters, chosen: str | None, page: Page) -> None:
    """The picked deal's probability on every week it was open (the production model re-scored point-in-time)."""
    if not chosen:
        page.children.append(html.P("Pick a deal above to see its probability history.", className="note"))
        return
    if ctx.deal_model is None:
        page.children.append(empty(Missing("no deal-win model to re-score the deal's history", "fulqrun-ml run")))
        return
    if ctx.warehouse.open_deals(filters, opportunity_id=chosen).empty:  # scope and filters apply to the pick too
        page.children.append(
            empty(Missing(f"deal {chosen[:8]} is not among the open deals shown", "widen the filters"))
        )
        return
    cache = ctx.extra.setdefault("histories", {})  # a re-render (a filter change) does not re-score the deal
    key = (chosen, ctx.deal_model.name, ctx.deal_model.version)
    if key not in cache:
        if len(cache) >= 64:
            cache.pop(next(iter(cache)))
        cache[key] = probability_history(deal_rows(ctx.crm_dir, chosen), ctx.deal_model, chosen)  # its rows only
    data = cache[key]
    data = data.assign(stage=[OPEN_STAGES[int(i)] for i in data["stage_index"]]).drop(columns="stage_index")
    fig = go.Figure()
    fig.add_scatter(x=data["as_of"], y=data["probability"], mode="lines+markers", name="model",
                    line={"color": PALETTE[0]}, text=data["stage"])  # fmt: skip
    fig.add_scatter(x=data["as_of"], y=data["rep_probability"], mode="lines", name="rep's guess (by stage)",
                    line={"color": PALETTE[3], "dash": "dot", "shape": "hv"})  # fmt: skip
    fig.update_yaxes(title="win probability", range=[0, 1])
    page.add_chart(
        "probability-history",
        f"Probability history of {chosen[:8]} (deal_win v{ctx.deal_model.version}, re-scored every 14 days)",
        fig,
        data,
        note="Each point is the production model's probability for the deal as the CRM stood on that date.",
    )


def leads(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    data = ctx.warehouse.leads(filters)
    page = Page([])
    if data.empty:
        page.children.append(empty(Missing("no leads in this CRM for these filters", "fulqrun-ml run")))
        return page
    data = data.assign(conversion_rate=data["converted"] / data["leads"])
    model = ctx.production("lead_conversion")
    note = (
        f"Lead-conversion model v{model.version}: holdout AUC {model.metadata.get('holdout_auc', float('nan')):.3f}"
        if not isinstance(model, Missing)
        else "Scores are the CRM's own rule-based lead score; train the model for a calibrated probability."
    )
    page.children.append(html.P(note, className="note", id="leads-note"))
    if isinstance(model, Missing):
        page.children.append(empty(model))
    fig = go.Figure()
    fig.add_bar(x=data["source"], y=data["conversion_rate"], name="conversion rate", marker_color=PALETTE[2])
    fig.add_scatter(x=data["source"], y=data["mean_score"] / 100, mode="markers", name="mean CRM score / 100")
    fig.update_yaxes(title="share", range=[0, 1])
    page.add_chart("lead-sources", "Leads by source: conversion and score", fig, data)
    return page
