"""Account (company) features for churn / expansion: declared once (ACCOUNT_FEATURES), computed point-in-time.

For each (company_id, as_of) row, only what the CRM knew at as_of is read: the company's firmographics,
its closed deals (closes in stage history stamped by as_of), its deals open at as_of (created by then and
not yet closed), and touches on its deals stamped by as_of. Deal values are fixed at creation, so they may
be read; stages come from stage history only. Firmographics are read as of as_of from `company_history`
(`data/history.py`), flagged "current value" for the audit where the export has none. Aggregates over possibly
no rows report the company row anchoring them when they read none, so a NaT source time always fails the audit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.history import attributes_as_of
from fulqrun_ml.features.audit import current_value_column
from fulqrun_ml.features.deal_features import as_float, newest
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

ACCOUNT_FEATURES = FeatureSpec(
    numeric=(
        NumericFeature("employee_count", "company head count", log1p=True),
        NumericFeature("annual_revenue", "company revenue", log1p=True),
        NumericFeature("wins_total", "deals won with the company by as_of", log1p=True),
        NumericFeature("losses_total", "deals lost with the company by as_of", log1p=True),
        NumericFeature("won_value_total", "value of the deals won by as_of", log1p=True),
        NumericFeature("days_since_last_win", "days since the newest win", log1p=True),
        NumericFeature("days_since_first_win", "customer tenure in days", log1p=True),
        NumericFeature("open_deals", "deals open at as_of", log1p=True),
        NumericFeature("open_pipeline_value", "value of the deals open at as_of", log1p=True),
        NumericFeature("activities_last_90d", "touches on the company's deals in the last 90 days", log1p=True),
        NumericFeature("days_since_last_activity", "days since the last touch on any of its deals", log1p=True),
    ),
    categorical=(
        CategoricalFeature("industry", "company industry"),
        CategoricalFeature("company_size", "company size band"),
        CategoricalFeature("country", "company country"),
    ),
)

DAY = pd.Timedelta(days=1)
KEYS = ["company_id", "as_of"]
CLOSED = ("closed_won", "closed_lost")
# Which source rows each feature reads, for the audit. Groups: company (company_history at as_of, else the
# companies row), closes (stage_history closes of its deals), pipeline (its deals created by as_of and their
# stage changes), activities (touches on its deals). Every ACCOUNT_FEATURES name is here.
FEATURE_SOURCE = {
    **dict.fromkeys(["employee_count", "annual_revenue", "industry", "company_size", "country"], "company"),
    **dict.fromkeys(
        ["wins_total", "losses_total", "won_value_total", "days_since_last_win", "days_since_first_win"], "closes"
    ),
    **dict.fromkeys(["open_deals", "open_pipeline_value"], "pipeline"),
    **dict.fromkeys(["activities_last_90d", "days_since_last_activity"], "activities"),
}


def compute_account_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Raw feature columns for each (company_id, as_of) row of `index`, in `index` order (plus, with
    `with_sources`, the newest source timestamp each feature read, for `features/audit.py`)."""
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        features, times = _features_at(tables, rows["company_id"].to_numpy(), pd.Timestamp(as_of))
        parts.append(features)
        sources.append(times)
    if not parts:
        empty = pd.DataFrame(columns=[*KEYS, *ACCOUNT_FEATURES.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = index[KEYS].merge(pd.concat(parts, ignore_index=True), on=KEYS, how="left")
    if not with_sources:
        return keyed
    return keyed, index[KEYS].merge(pd.concat(sources, ignore_index=True), on=KEYS, how="left")


def _features_at(tables: CRMTables, company_ids: np.ndarray, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    companies = tables.companies.set_index("id").loc[company_ids]
    firmographics = attributes_as_of(tables, "company_history", company_ids, as_of)
    opps = tables.opportunities[tables.opportunities["company_id"].isin(company_ids)]
    opps = opps[opps["created_at"] <= as_of]
    opp_company = opps.set_index("id")["company_id"]

    history = tables.stage_history
    closes = history[(history["changed_at"] <= as_of) & history["to_stage"].isin(CLOSED)]
    closes = closes[closes["opportunity_id"].isin(opp_company.index)]
    closes = closes.assign(
        company_id=opp_company.reindex(closes["opportunity_id"]).to_numpy(),
        value=opps.set_index("id")["value"].reindex(closes["opportunity_id"]).to_numpy(),
    )
    wins = closes[closes["to_stage"] == "closed_won"]
    by_win = wins.groupby("company_id")

    open_opps = opps[~opps["id"].isin(closes["opportunity_id"])]
    by_open = open_opps.groupby("company_id")
    open_changes = history[(history["changed_at"] <= as_of) & history["opportunity_id"].isin(open_opps["id"])]
    newest_open_change = (
        open_changes.assign(company_id=opp_company.reindex(open_changes["opportunity_id"]).to_numpy())
        .groupby("company_id")["changed_at"]
        .max()
    )

    acts = tables.activities
    acts = acts[(acts["created_at"] <= as_of) & acts["related_id"].isin(opp_company.index)]
    acts = acts.assign(company_id=opp_company.reindex(acts["related_id"]).to_numpy())
    by_act = acts.groupby("company_id")

    def per_company(series: pd.Series, fill: float = 0.0) -> np.ndarray:
        return series.reindex(company_ids).fillna(fill).to_numpy(dtype=np.float64)

    def days_since(times: pd.Series) -> np.ndarray:
        return ((as_of - times.reindex(company_ids)).dt.total_seconds() / 86400.0).to_numpy()

    tenure = days_since(by_win["changed_at"].min())
    since_win = days_since(by_win["changed_at"].max())
    since_touch = days_since(by_act["created_at"].max())
    since_touch = np.where(np.isnan(since_touch), tenure, since_touch)  # never touched: as long as a customer

    pipeline_time = pd.concat([by_open["created_at"].max(), newest_open_change], axis=1).max(axis=1)
    created = pd.to_datetime(companies["created_at"], utc=True).to_numpy()
    group_times = {
        "company": firmographics.source_time,
        "closes": newest(closes.groupby("company_id")["changed_at"].max().reindex(company_ids).to_numpy(), created),
        "pipeline": newest(pipeline_time.reindex(company_ids).to_numpy(), created),
        "activities": newest(by_act["created_at"].max().reindex(company_ids).to_numpy(), created),
    }
    current = ~firmographics.point_in_time
    source_times = pd.DataFrame(
        {"company_id": company_ids, "as_of": as_of}
        | {name: group_times[group] for name, group in FEATURE_SOURCE.items()}
        | {current_value_column(n): current for n, g in FEATURE_SOURCE.items() if g == "company"}
    )
    recent = acts[acts["created_at"] > as_of - 90 * DAY].groupby("company_id").size()
    features = pd.DataFrame(
        {
            "company_id": company_ids,
            "as_of": as_of,
            "employee_count": as_float(firmographics.values["employee_count"]),
            "annual_revenue": as_float(firmographics.values["annual_revenue"]),
            "wins_total": per_company(by_win.size()),
            "losses_total": per_company(closes[closes["to_stage"] == "closed_lost"].groupby("company_id").size()),
            "won_value_total": per_company(by_win["value"].sum()),
            "days_since_last_win": np.nan_to_num(since_win, nan=0.0),
            "days_since_first_win": np.nan_to_num(tenure, nan=0.0),
            "open_deals": per_company(by_open.size()),
            "open_pipeline_value": per_company(by_open["value"].sum()),
            "activities_last_90d": per_company(recent),
            "days_since_last_activity": np.nan_to_num(since_touch, nan=0.0),
            "industry": firmographics.values["industry"].astype(str).to_numpy(),
            "company_size": firmographics.values["size"].astype(str).to_numpy(),
            "country": firmographics.values["country"].astype(str).to_numpy(),
        }
    )
    return features, source_times
