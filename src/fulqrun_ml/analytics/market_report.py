"""The competitive and market intelligence report of one CRM: win rates against each competitor (overall and per
quarter, with intervals), loss reasons, industry / region / competitor win-rate change points, STL of monthly
bookings per region and industry, and territory insights by country and rep region.

`burn_in_days` drops closes in the CRM's first days: a CRM that starts empty closes only its fast deals at first,
and fast deals are mostly losses, so its first months show a rising win rate that is an artefact of the start,
not a market trend. `regions` maps each account country to a region (the contract stores only the country).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.analytics.market import (
    UNKNOWN,
    competitor_differences,
    decided_deals,
    loss_reason_mix,
    open_pipeline_by,
    territory_insights,
    win_rates,
)
from fulqrun_ml.analytics.pipeline_report import _records
from fulqrun_ml.analytics.trends import stl_summary, trend_change_points
from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FulqrunMLError


def market_deals(tables: CRMTables, regions: dict[str, list[str]], burn_in_days: float = 120.0) -> pd.DataFrame:
    """Decided deals after the burn-in, with `account_region` from the country map ("unknown" if unmapped)."""
    deals = decided_deals(tables)
    if deals.empty:
        raise FulqrunMLError("no closed opportunity in this CRM: win rates need decided deals")
    start = pd.to_datetime(tables.opportunities["created_at"], utc=True).min() + pd.Timedelta(days=burn_in_days)
    deals = deals[deals["closed_at"] >= start].reset_index(drop=True)
    region_of = {country: region for region, countries in regions.items() for country in countries}
    return deals.assign(account_region=deals["country"].map(region_of).fillna(UNKNOWN))


def _stl_by(deals: pd.DataFrame, group: str, period: int) -> dict[str, Any]:
    won = deals[deals["won"]]
    months = won["closed_at"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M").dt.to_timestamp()
    out = {}
    for name, rows in won.assign(month=months).groupby(group):
        series = rows.groupby("month")["value"].sum()
        series = series.reindex(pd.date_range(series.index.min(), series.index.max(), freq="MS"), fill_value=0.0)
        try:
            out[str(name)] = stl_summary(series, period)
        except FulqrunMLError as err:
            out[str(name)] = {"skipped": str(err)}
    return out


def market_report(
    tables: CRMTables,
    regions: dict[str, list[str]],
    burn_in_days: float = 120.0,
    min_segment_months: int = 3,
    stl_period: int = 3,
    change_point_penalty: float | str = "bic",
) -> dict[str, Any]:
    """Competitive and market intelligence (see the module docstring)."""
    deals = market_deals(tables, regions, burn_in_days)
    recorded = deals["competitor"] != UNKNOWN
    competitive: dict[str, Any] = {"recorded_share": round(float(recorded.mean()), 4)}
    if recorded.any():
        known = deals[recorded]
        competitive |= {
            "win_rates": _records(win_rates(known, ["competitor"])),
            "difference_to_no_competitor": _records(competitor_differences(known)),
            "win_rates_by_quarter": _records(win_rates(known, ["competitor", "quarter"])),
            "loss_reasons": _records(loss_reason_mix(known)),
        }
    else:
        competitive["note"] = "no competitor recorded in this CRM (the optional column is absent or empty)"
    trends = {
        group: trend_change_points(deals, group, min_segment_months, change_point_penalty)
        for group in ("account_region", "industry", "rep_region", *(("competitor",) if recorded.any() else ()))
    }
    all_months = deals.assign(everything="organization")
    seasonality = {"organization": _stl_by(all_months, "everything", stl_period)["organization"]}
    seasonality |= {group: _stl_by(deals, group, stl_period) for group in ("account_region", "industry")}
    territories = {
        by: _records(territory_insights(deals, open_pipeline_by(tables, by), by)) for by in ("country", "rep_region")
    }
    return {
        "decided_deals": len(deals),
        "window": {
            "first_close": deals["closed_at"].min().isoformat(),
            "last_close": deals["closed_at"].max().isoformat(),
        },
        "burn_in_days": burn_in_days,
        "overall_win_rate": round(float(np.mean(deals["won"])), 4),
        "competitive": competitive,
        "change_points": trends,
        "seasonality_stl": seasonality,
        "territories": territories,
    }
