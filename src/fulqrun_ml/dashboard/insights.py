"""Insight generator: short narratives from the warehouse, each number kept beside the sentence that says it.

Why templates with a `numbers` dict: a narrative is only trustworthy if every figure in it can be traced to a
query and checked; the tests recompute each from the raw CRM. With an LLM provider configured
(`--insights-config`), `rewritten` asks it to reword each sentence and keeps the rewrite only when it holds
exactly the template's numbers (insights/rewrite.py); the template stays the offline default and the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from fulqrun_ml.dashboard.components import money, pct
from fulqrun_ml.dashboard.forecast import COMMIT_PROBABILITY, bands
from fulqrun_ml.dashboard.queries import Filters, ScopedWarehouse

AT_RISK_PROBABILITY = 0.3


@dataclass(frozen=True)
class Insight:
    key: str
    text: str
    numbers: dict[str, Any]
    source: str  # which query the numbers come from
    writer: str = "template"  # template | the LLM provider that reworded it
    template: str | None = None  # the template text, kept when a provider reworded it
    rejected: str | None = None  # why a provider's rewrite was not used


def rewritten(insights: list[Insight], client: Any | None) -> list[Insight]:
    """Each insight reworded by the provider when the rewrite keeps every number; as templated otherwise."""
    if client is None:
        return insights
    from fulqrun_ml.insights.rewrite import rewrite_keeping_numbers

    out = []
    for insight in insights:
        result = rewrite_keeping_numbers(client, insight.text)
        if result.source == "template":
            out.append(replace(insight, rejected=result.rejected))
        else:
            out.append(replace(insight, text=result.text, writer=result.source, template=insight.text))
    return out


def generate(w: ScopedWarehouse, filters: Filters) -> list[Insight]:
    out: list[Insight] = []
    summary = w.open_summary(filters, below=AT_RISK_PROBABILITY)
    if summary["slipped_deals"]:
        top = w.slipped(filters, limit=1).iloc[0]
        out.append(
            Insight(
                "slipped",
                f"{int(summary['slipped_deals'])} open deals worth {money(summary['slipped_value'])} slipped past "
                f"their close date; the biggest is {top['opportunity_id'][:8]} ({money(float(top['value']))}, "
                f"{top['stage']}, {int(top['days_overdue'])} days overdue).",
                {
                    "deals": int(summary["slipped_deals"]),
                    "value": summary["slipped_value"],
                    "top_id": top["opportunity_id"],
                    "top_value": float(top["value"]),
                },
                "open_deals WHERE days_overdue > 0",
            )
        )
    won = w.won_by_month(filters)
    if len(won) >= 2:
        last, before = won.iloc[-1], won.iloc[-2]
        change = (last["won_value"] - before["won_value"]) / before["won_value"] if before["won_value"] else None
        out.append(
            Insight(
                "bookings",
                f"Bookings in {pd.Timestamp(last['month']):%B %Y} were {money(float(last['won_value']))} from "
                f"{int(last['won'])} won deals"
                + (f", {change:+.0%} on {pd.Timestamp(before['month']):%B}." if change is not None else "."),
                {
                    "month": str(pd.Timestamp(last["month"]).date()),
                    "won_value": float(last["won_value"]),
                    "won": int(last["won"]),
                    "previous_won_value": float(before["won_value"]),
                },
                "closed_monthly, status = won, by close month",
            )
        )
    rates = w.win_rate(filters)
    if rates["closed"]:
        out.append(
            Insight(
                "win_rate",
                f"Win rate {pct(rates['win_rate'])} on {int(rates['closed'])} deals closed in the period; a won deal "
                f"averaged {money(rates['avg_won_value'])} and {rates['avg_cycle_days']:.0f} days from creation.",
                rates,
                "closed_monthly over the period",
            )
        )
    if summary["deals"]:
        fc = bands(w.forecast_moments(filters, 1.0, COMMIT_PROBABILITY), w.extracted_at, months=1).iloc[0]
        out.append(
            Insight(
                "forecast",
                f"The pipeline forecast expects {money(fc['expected'])} this month (80% interval "
                f"{money(fc['p10'])} to {money(fc['p90'])}); {int(summary['below_deals'])} open deals worth "
                f"{money(summary['below_value'])} are below {AT_RISK_PROBABILITY:.0%} win probability.",
                {
                    "expected": float(fc["expected"]),
                    "p10": float(fc["p10"]),
                    "p90": float(fc["p90"]),
                    "at_risk_deals": int(summary["below_deals"]),
                    "at_risk_value": summary["below_value"],
                },
                "open_deals x probability (forecast_moments)",
            )
        )
    return out
