"""Competitive and market intelligence from closed deals: win rates against each competitor over time with
intervals, loss reasons, and territory insights by geography.

Why closed deals and close time: a win rate is only defined for decided deals, and grouping by the month a deal
was *created* would make recent cohorts look worse (their slow wins have not closed yet). Every group's rate
carries a Wilson 95% interval, which stays inside [0, 1] and is honest for the small cells that competitor x
quarter tables produce. Industry and country are read as of each deal's close (`company_history`), the rep's
region likewise (`user_history`), so a later reclassification does not rewrite the past.

Exports without the optional `competitor` / `loss_reason` columns load with "unknown"; the report then says
that no competitor was recorded instead of inventing one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from fulqrun_ml.analytics.pipeline_state import pipeline_state
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.history import attributes_as_of

UNKNOWN = "unknown"
NO_COMPETITOR = "none"


def decided_deals(tables: CRMTables, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Deals closed at or before as_of (default: extraction) with their competitor, loss reason and geography
    as of their close: id, closed_at, won, value, competitor, loss_reason, industry, country, rep_region."""
    as_of = pd.Timestamp(tables.extracted_at if as_of is None else as_of)
    closed = pipeline_state(tables, as_of).closed
    opps = tables.opportunities.drop_duplicates("id").set_index("id").reindex(closed["id"])
    out = closed.assign(
        competitor=_column(opps, "competitor"),
        loss_reason=np.where(closed["won"], "", _column(opps, "loss_reason")),
        company_id=opps["company_id"].to_numpy(),
    )
    parts = []
    for quarter, group in out.groupby(out["closed_at"].dt.tz_localize(None).dt.to_period("Q").astype(str), sort=True):
        at = group["closed_at"].max()
        firms = attributes_as_of(tables, "company_history", group["company_id"].to_numpy(), at).values
        reps = attributes_as_of(tables, "user_history", group["assigned_to"].to_numpy(), at).values
        parts.append(
            group.assign(
                industry=firms["industry"].fillna(UNKNOWN).to_numpy(),
                country=firms["country"].fillna(UNKNOWN).to_numpy(),
                rep_region=reps["region"].fillna(UNKNOWN).to_numpy(),
                quarter=quarter,
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else out.assign(industry=[], country=[], rep_region=[])


def _column(opps: pd.DataFrame, name: str) -> np.ndarray:
    if name not in opps.columns:
        return np.full(len(opps), UNKNOWN, dtype=object)
    return opps[name].astype(object).where(opps[name].notna(), UNKNOWN).to_numpy()


def win_rates(deals: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group: decided deals, wins, win rate and its Wilson 95% interval, won amount."""
    grouped = deals.groupby(by, sort=True)
    out = grouped.agg(decided=("won", "size"), wins=("won", "sum"), won_amount=("value", lambda v: 0.0))
    out["won_amount"] = deals[deals["won"]].groupby(by)["value"].sum().reindex(out.index).fillna(0.0)
    out["win_rate"] = out["wins"] / out["decided"]
    low, high = proportion_confint(out["wins"], out["decided"], alpha=0.05, method="wilson")
    out["low"], out["high"] = np.asarray(low), np.asarray(high)
    return out.reset_index()


def competitor_differences(deals: pd.DataFrame) -> pd.DataFrame:
    """Per competitor: win rate minus the rate with no competitor, with a 95% Newcombe (Wilson-score) interval."""
    rates = win_rates(deals, ["competitor"]).set_index("competitor")
    if NO_COMPETITOR not in rates.index:
        return pd.DataFrame(columns=["competitor", "difference", "low", "high", "decided"])
    base = rates.loc[NO_COMPETITOR]
    rows = []
    for name, row in rates.drop(index=[NO_COMPETITOR, UNKNOWN], errors="ignore").iterrows():
        diff = row["win_rate"] - base["win_rate"]
        low = diff - np.sqrt((row["win_rate"] - row["low"]) ** 2 + (base["high"] - base["win_rate"]) ** 2)
        high = diff + np.sqrt((row["high"] - row["win_rate"]) ** 2 + (base["win_rate"] - base["low"]) ** 2)
        rows.append({"competitor": name, "difference": diff, "low": low, "high": high, "decided": int(row["decided"])})
    return pd.DataFrame(rows)


def loss_reason_mix(deals: pd.DataFrame, by: str = "competitor") -> pd.DataFrame:
    """Share of each recorded loss reason among lost deals, per `by` group."""
    lost = deals[~deals["won"]]
    table = pd.crosstab(lost[by], lost["loss_reason"], normalize="index")
    return table.rename_axis(index=by, columns=None).reset_index()


def territory_insights(deals: pd.DataFrame, open_amount: pd.Series, by: str = "country") -> pd.DataFrame:
    """Per territory: win rate with interval, its gap to the organization's rate (significant when the interval
    excludes it), won amount, mean won deal, open pipeline, and the competitor met most often."""
    rates = win_rates(deals, [by]).set_index(by)
    overall = deals["won"].mean()
    won = deals[deals["won"]]
    rates["mean_won_deal"] = won.groupby(by)["value"].mean().reindex(rates.index)
    rates["open_pipeline"] = open_amount.reindex(rates.index).fillna(0.0)
    rates["gap_to_organization"] = rates["win_rate"] - overall
    rates["significant"] = (rates["low"] > overall) | (rates["high"] < overall)
    met = deals[~deals["competitor"].isin([NO_COMPETITOR, UNKNOWN])]
    top = met.groupby(by)["competitor"].agg(_most_common) if len(met) else pd.Series()
    rates["top_competitor"] = top.reindex(rates.index).fillna(NO_COMPETITOR)
    return rates.reset_index()


def open_pipeline_by(tables: CRMTables, by: str = "country") -> pd.Series:
    """Open amount at extraction per territory (`country` of the account or `rep_region`)."""
    state = pipeline_state(tables, tables.extracted_at)
    deals = state.open_deals
    at = pd.Timestamp(tables.extracted_at)
    if by == "rep_region":
        key = attributes_as_of(tables, "user_history", deals["assigned_to"].to_numpy(), at).values["region"]
    else:
        company = tables.opportunities.drop_duplicates("id").set_index("id")["company_id"].reindex(deals["id"])
        key = attributes_as_of(tables, "company_history", company.to_numpy(), at).values[by]
    return deals["value"].groupby(key.fillna(UNKNOWN).to_numpy()).sum()


def _most_common(values: pd.Series) -> str:
    """The most frequent value, ties broken by name: the same answer whatever order the source returned rows in."""
    return str(values.value_counts().sort_index().idxmax())
