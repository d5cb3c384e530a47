"""Churn and expansion page: per-account risk alerts scored by the registered account models.

Why per account and from the models: a leader acts on accounts, not segments. Each customer in scope (a company
with a won deal, the account models' entity) carries the production `account_churn` model's P(no new win
within its horizon) and `account_expansion`'s P(another win), both scored by the exported ONNX graph on the
rows the model's own run scored at extraction (`DashboardContext.account_scores`), so the number is what
`fulqrun-ml score` or Triton would answer. An alert ranks by revenue at risk = P(churn) x the account's won
revenue over the last 365 days, so a likely-lost small account does not outrank a possibly-lost large one.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from fulqrun_ml.dashboard.components import PALETTE, Page, empty, kpis, money
from fulqrun_ml.dashboard.context import DashboardContext, Missing
from fulqrun_ml.dashboard.queries import Filters

ALERT_PROBABILITY = 0.5  # an account is flagged when its model probability reaches this
ALERT_ROWS = 1000  # rows sent to the browser; the CSV holds every account


def scored_accounts(ctx: DashboardContext, filters: Filters) -> tuple[pd.DataFrame, list[str], list[Any]]:
    """Accounts in scope with churn/expansion probabilities (NaN where a model did not score them), the tasks
    that scored, and the empty states of the tasks that could not."""
    tasks = (("account_churn", "churn_probability"), ("account_expansion", "expansion_probability"))
    scored = {task: ctx.account_scores(task) for task, _ in tasks}
    missing = [empty(s) for s in scored.values() if isinstance(s, Missing)]
    if len(missing) == len(tasks):  # no account model: no per-account query (100k+ customers on a large CRM)
        return pd.DataFrame(), [], missing
    accounts = ctx.warehouse.accounts(filters)
    used = []
    for task, column in tasks:
        if isinstance(scored[task], Missing):
            accounts[column] = float("nan")
            continue
        version, scores = scored[task]
        used.append(f"{task} v{version.version}")
        mapping = scores.set_index("company_id")["model_probability"]
        accounts[column] = accounts["company_id"].map(mapping).astype(float)
    accounts["revenue_at_risk"] = accounts["churn_probability"] * accounts["won_value_365d"]
    return accounts, used, missing


def churn(ctx: DashboardContext, filters: Filters, controls: dict[str, Any]) -> Page:
    page = Page([])
    accounts, used, missing = scored_accounts(ctx, filters)
    page.children += missing
    if used:
        churn_alert = accounts["churn_probability"] >= ALERT_PROBABILITY
        expansion = accounts["expansion_probability"] >= ALERT_PROBABILITY
        scored = int(accounts[["churn_probability", "expansion_probability"]].notna().any(axis=1).sum())
        at_risk = float(accounts["revenue_at_risk"].sum(skipna=True))
        page.children.append(
            kpis(
                [
                    ("Customers scored", f"{scored:,}", "accounts-scored"),
                    (f"Churn alerts (P >= {ALERT_PROBABILITY:g})", f"{int(churn_alert.sum()):,}", "churn-alerts"),
                    ("Revenue at risk (P(churn) x last 365 d won)", money(at_risk), "revenue-at-risk"),
                    (f"Expansion alerts (P >= {ALERT_PROBABILITY:g})", f"{int(expansion.sum()):,}", "expansion-alerts"),
                ]
            )
        )
        alerts = accounts[churn_alert | expansion].copy()
        alerts["alert"] = [
            " + ".join(kind for kind, on in (("churn", c), ("expansion", e)) if on)
            for c, e in zip(churn_alert[alerts.index], expansion[alerts.index], strict=True)
        ]
        alerts = alerts.sort_values(["revenue_at_risk", "expansion_probability"], ascending=False, na_position="last")
        top = alerts[alerts["churn_probability"] >= ALERT_PROBABILITY].head(15)
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
    page.add_chart("risk-alerts", "Deal risk: revenue on slipped open deals by segment", fig, by_segment)
    return page
