"""Churn and expansion page: per-account risk alerts scored by the registered account models.

Why per account and from the models: a leader acts on accounts, not segments. Each customer in scope (a company
with a won deal, the account models' entity) carries the production `account_churn` model's P(no new win
within its horizon) and `account_expansion`'s P(another win), both scored by the exported ONNX graph on the
rows the model's own run scored at extraction (`DashboardContext.account_scores`), so the number is what
`fulqrun-ml score` or Triton would answer. An alert ranks by revenue at risk = P(churn) x the account's won
revenue over the last 365 days, so a likely-lost small account does not outrank a possibly-lost large one.

Why the alert threshold is relative to the model's base rate by default: a fixed P >= 0.5 flags most customers
when churn within the horizon is common (a 60% base rate: every average customer is "at risk"), and none when
it is rare. An account is flagged when its odds are ALERT_ODDS_LIFT times those of the average customer: the
base rate is the model's mean probability over every customer it scored (all organisations, not the filtered
view, so a filter does not move the bar). A fixed probability stays available on the page (`ALERT_SETTINGS`).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from fulqrun_ml.dashboard.components import PALETTE, Page, empty, kpis, money
from fulqrun_ml.dashboard.context import DashboardContext, Missing
from fulqrun_ml.dashboard.queries import Filters
from fulqrun_ml.errors import FulqrunMLError

ALERT_PROBABILITY = 0.5  # the fixed-probability setting
ALERT_ODDS_LIFT = 1.5  # the default: flagged at 1.5 x the odds of the average customer (the model's base rate)
ALERT_SETTINGS = {  # the page's choices: (kind, value)
    "odds x1.5 base rate": ("lift", ALERT_ODDS_LIFT),
    "odds x2 base rate": ("lift", 2.0),
    "odds x3 base rate": ("lift", 3.0),
    "P >= 0.5": ("probability", ALERT_PROBABILITY),
}
DEFAULT_ALERT = "odds x1.5 base rate"
ALERT_ROWS = 1000  # rows sent to the browser; the CSV holds every account


def alert_threshold(scores: pd.Series, setting: str | None = None) -> tuple[float, str]:
    """(probability at which an account is flagged, how it was set) for one model's scores of every customer.

    lift: the probability whose odds are `lift` x the odds of the base rate (the mean score), so the bar stays
    inside (0, 1) whatever the base rate; probability: the fixed value."""
    if setting is not None and setting not in ALERT_SETTINGS:
        raise FulqrunMLError(f"alert threshold {setting!r}: expected one of {sorted(ALERT_SETTINGS)}")
    kind, value = ALERT_SETTINGS[setting or DEFAULT_ALERT]
    if kind == "probability":
        return float(value), f"P >= {value:g}"
    base = float(scores.clip(1e-6, 1 - 1e-6).mean())
    odds = value * base / (1 - base)
    return odds / (1 + odds), f"P >= {odds / (1 + odds):.2f}: odds {value:g} x base rate {base:.2f}"


def scored_accounts(
    ctx: DashboardContext, filters: Filters, setting: str | None = None
) -> tuple[pd.DataFrame, list[str], list[Any], dict[str, tuple[float, str]]]:
    """Accounts in scope with churn/expansion probabilities (NaN where a model did not score them), the tasks
    that scored, the empty states of the tasks that could not, and each scored column's alert threshold."""
    tasks = (("account_churn", "churn_probability"), ("account_expansion", "expansion_probability"))
    scored = {task: ctx.account_scores(task) for task, _ in tasks}
    missing = [empty(s) for s in scored.values() if isinstance(s, Missing)]
    if len(missing) == len(tasks):  # no account model: no per-account query (100k+ customers on a large CRM)
        return pd.DataFrame(), [], missing, {}
    accounts = ctx.warehouse.accounts(filters)
    used, thresholds = [], {}
    for task, column in tasks:
        if isinstance(scored[task], Missing):
            accounts[column] = float("nan")
            continue
        version, scores = scored[task]
        used.append(f"{task} v{version.version}")
        mapping = scores.set_index("company_id")["model_probability"]
        accounts[column] = accounts["company_id"].map(mapping).astype(float)
        thresholds[column] = alert_threshold(scores["model_probability"], setting)
    accounts["revenue_at_risk"] = accounts["churn_probability"] * accounts["won_value_365d"]
    return accounts, used, missing, thresholds


def churn(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    accounts, used, missing, thresholds = scored_accounts(ctx, filters, controls.get("alert_setting"))
    page.children += missing
    if used:
        churn_at, churn_how = thresholds.get("churn_probability", (float("inf"), "no churn model"))
        expansion_at, expansion_how = thresholds.get("expansion_probability", (float("inf"), "no expansion model"))
        churn_alert = accounts["churn_probability"] >= churn_at
        expansion = accounts["expansion_probability"] >= expansion_at
        scored = int(accounts[["churn_probability", "expansion_probability"]].notna().any(axis=1).sum())
        at_risk = float(accounts["revenue_at_risk"].sum(skipna=True))
        page.children.append(
            kpis(
                [
                    ("Customers scored", f"{scored:,}", "accounts-scored"),
                    (f"Churn alerts ({churn_how})", f"{int(churn_alert.sum()):,}", "churn-alerts"),
                    ("Revenue at risk (P(churn) x last 365 d won)", money(at_risk), "revenue-at-risk"),
                    (f"Expansion alerts ({expansion_how})", f"{int(expansion.sum()):,}", "expansion-alerts"),
                ]
            )
        )
        alerts = accounts[churn_alert | expansion].copy()
        alerts["alert"] = [
            " + ".join(kind for kind, on in (("churn", c), ("expansion", e)) if on)
            for c, e in zip(churn_alert[alerts.index], expansion[alerts.index], strict=True)
        ]
        alerts = alerts.sort_values(["revenue_at_risk", "expansion_probability"], ascending=False, na_position="last")
        top = alerts[alerts["churn_probability"] >= churn_at].head(15)
        hover = "%{x}: $%{y:,.0f}; P(churn) %{customdata:.2f}<extra></extra>"
        bars = go.Bar(x=top["company_id"].str[:8], y=top["revenue_at_risk"], customdata=top["churn_probability"],
                      marker_color=PALETTE[3], hovertemplate=hover)  # fmt: skip
        fig = go.Figure(bars)
        fig.update_yaxes(title="revenue at risk ($)")
        page.add_chart("churn-alerts", f"Churn alerts: revenue at risk by account ({', '.join(used)})", fig, top)
        page.add_table("account-alerts", "Risk alerts per account (churn and expansion; CSV: all)", alerts,
                       max_rows=ALERT_ROWS)  # fmt: skip
    rows = []
    for task in ("account_churn", "account_expansion"):
        model = ctx.production(task)
        if isinstance(model, Missing):
            continue
        metrics = json.loads((model.path / "metrics.json").read_text())
        rows += [{"task": task, "version": model.version, "scorer": k, "auc": v.get("auc"), "ece": v.get("ece")}
                 for k, v in metrics.items() if isinstance(v, dict) and "auc" in v]  # fmt: skip
    if rows:
        page.add_table("account-models", "Churn and expansion models (holdout)", pd.DataFrame(rows))
    by_segment = ctx.warehouse.slipped_by_segment(filters)
    fig = go.Figure(go.Bar(x=by_segment["segment"], y=by_segment["value"], marker_color=PALETTE[3]))
    if by_segment.empty:  # say so instead of drawing empty axes
        fig.add_annotation(text="No open deal in scope is past its expected close date", showarrow=False)
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    page.add_chart("risk-alerts", "Deal risk: revenue on slipped open deals by segment", fig, by_segment)
    return page
