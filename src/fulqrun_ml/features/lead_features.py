"""Lead-conversion features: declared once (LEAD_FEATURES) and computed point-in-time.

For each (lead_id, as_of) row, only what the CRM knew at as_of is read: the lead's fixed fields (source,
owner, creation time, company link), touches on the lead stamped at or before as_of, the owner's record on
leads decided by as_of, and the company's firmographics if the company existed by then. The lead's
`status`, `score` and `updated_at` are rewritten in place without history (their stored values come from
after as_of), so they are never features; `updated_at` is used only for leads already decided at as_of.
Firmographics and the owner's region are read as of as_of from the history tables (`data/history.py`), and
flagged "current value" for the audit where the export has none. Aggregates over possibly no rows report the
row anchoring them (the lead, the owner) when they read none, so a NaT source time always fails the audit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.history import attributes_as_of
from fulqrun_ml.features.audit import current_value_column
from fulqrun_ml.features.deal_features import as_float, newest
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

LEAD_FEATURES = FeatureSpec(
    numeric=(
        NumericFeature("lead_age_days", "days since the lead was created", log1p=True),
        NumericFeature("activities_total", "touches on the lead so far", log1p=True),
        NumericFeature("activities_last_14d", "touches in the last 14 days", log1p=True),
        NumericFeature("calls_total", "calls so far", log1p=True),
        NumericFeature("emails_total", "emails so far", log1p=True),
        NumericFeature("meetings_total", "meetings so far", log1p=True),
        NumericFeature("activities_per_week", "touch rate over the lead's life"),
        NumericFeature("days_since_last_activity", "days since the last touch (age if none)", log1p=True),
        NumericFeature("employee_count", "company head count (0 without a known company)", log1p=True),
        NumericFeature("annual_revenue", "company revenue (0 without a known company)", log1p=True),
        NumericFeature("rep_lead_conversion_rate", "owner's smoothed conversion rate on leads decided by as_of"),
        NumericFeature("rep_leads_decided", "owner's leads decided by as_of", log1p=True),
    ),
    categorical=(
        CategoricalFeature("source", "where the lead came from"),
        CategoricalFeature("has_company", "whether the lead is linked to a company known at as_of"),
        CategoricalFeature("industry", "company industry ('none' without a company)"),
        CategoricalFeature("company_size", "company size band ('none' without a company)"),
        CategoricalFeature("country", "company country ('none' without a company)"),
        CategoricalFeature("region", "owner's region"),
    ),
)

# Beta prior for an owner's conversion rate, so owners with few decided leads start near a typical rate.
REP_PRIOR_CONVERSIONS, REP_PRIOR_LEADS = 1.0, 4.0
DECIDED = ("converted", "unqualified")
DAY = pd.Timedelta(days=1)
KEYS = ["lead_id", "as_of"]
ACTIVITY_FEATURES = (
    "activities_total",
    "activities_last_14d",
    "calls_total",
    "emails_total",
    "meetings_total",
    "activities_per_week",
    "days_since_last_activity",
)
# Which source rows each feature reads; their newest timestamp per row feeds the leakage audit. Groups:
# lead_created (the lead's fixed fields), activities (touches on the lead), company (company_history at as_of,
# else the companies row; the lead row itself when no company is known), rep_user (user_history at as_of, else
# the users row), rep_record (the owner's leads decided by as_of). Every LEAD_FEATURES name is here.
FEATURE_SOURCE = {
    "lead_age_days": "lead_created",
    "source": "lead_created",
    **dict.fromkeys(ACTIVITY_FEATURES, "activities"),
    **dict.fromkeys(
        ["employee_count", "annual_revenue", "has_company", "industry", "company_size", "country"], "company"
    ),
    "region": "rep_user",
    "rep_lead_conversion_rate": "rep_record",
    "rep_leads_decided": "rep_record",
}
VERSIONED_GROUPS = ("company", "rep_user")


def compute_lead_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Raw feature columns for each (lead_id, as_of) row of `index`, in `index` order (plus, with
    `with_sources`, the newest source timestamp each feature read, for `features/audit.py`)."""
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        features, times = _features_at(tables, rows["lead_id"].to_numpy(), pd.Timestamp(as_of))
        parts.append(features)
        sources.append(times)
    if not parts:
        empty = pd.DataFrame(columns=[*KEYS, *LEAD_FEATURES.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = index[KEYS].merge(pd.concat(parts, ignore_index=True), on=KEYS, how="left")
    if not with_sources:
        return keyed
    return keyed, index[KEYS].merge(pd.concat(sources, ignore_index=True), on=KEYS, how="left")


def _features_at(tables: CRMTables, lead_ids: np.ndarray, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    leads = tables.leads.set_index("id").loc[lead_ids]
    age_days = (as_of - leads["created_at"]).dt.total_seconds().to_numpy() / 86400.0

    acts = tables.activities
    acts = acts[(acts["created_at"] <= as_of) & acts["related_id"].isin(lead_ids)]
    by_lead = acts.groupby("related_id")
    recent = acts[acts["created_at"] > as_of - 14 * DAY].groupby("related_id").size()
    type_counts = acts.pivot_table(index="related_id", columns="type", values="id", aggfunc="count")

    def per_lead(series: pd.Series) -> np.ndarray:
        return series.reindex(lead_ids).fillna(0).to_numpy(dtype=np.float64)

    def type_total(kind: str) -> np.ndarray:
        return per_lead(type_counts[kind]) if kind in type_counts else np.zeros(len(lead_ids))

    activities_total = per_lead(by_lead.size())
    last_touch = by_lead["created_at"].max().reindex(lead_ids)
    since_last = ((as_of - last_touch).dt.total_seconds() / 86400.0).to_numpy()
    since_last = np.where(np.isnan(since_last), age_days, since_last)

    # A company counts only if it existed at as_of; otherwise the lead looks company-less, as it did then.
    company_ids = leads["company_id"].to_numpy()
    created = pd.to_datetime(tables.companies.drop_duplicates("id").set_index("id")["created_at"], utc=True)
    created = created.reindex(company_ids)
    known = created.notna().to_numpy() & (created <= as_of).to_numpy()
    companies = attributes_as_of(tables, "company_history", company_ids, as_of)

    def firmographic(column: str, missing: float | str) -> np.ndarray:
        values = companies.values[column].to_numpy(dtype=object)
        return np.where(known, values, missing)

    reps = attributes_as_of(tables, "user_history", leads["assigned_to"].to_numpy(), as_of)
    rep_created = tables.users.drop_duplicates("id").set_index("id")["created_at"].reindex(leads["assigned_to"])
    rate, decided, record_time = _rep_record(tables, as_of, leads["assigned_to"].to_numpy())
    lead_created = pd.to_datetime(leads["created_at"], utc=True).to_numpy()
    group_times = {
        "lead_created": lead_created,
        "activities": newest(last_touch.to_numpy(), lead_created),
        "company": np.where(known, companies.source_time, lead_created),
        "rep_user": reps.source_time,
        "rep_record": newest(record_time, rep_created.to_numpy()),
    }
    current = {"company": known & ~companies.point_in_time, "rep_user": ~reps.point_in_time}
    source_times = pd.DataFrame(
        {"lead_id": lead_ids, "as_of": as_of}
        | {name: group_times[group] for name, group in FEATURE_SOURCE.items()}
        | {current_value_column(n): current[g] for n, g in FEATURE_SOURCE.items() if g in VERSIONED_GROUPS}
    )
    features = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "as_of": as_of,
            "lead_age_days": age_days,
            "activities_total": activities_total,
            "activities_last_14d": per_lead(recent),
            "calls_total": type_total("call"),
            "emails_total": type_total("email"),
            "meetings_total": type_total("meeting"),
            "activities_per_week": 7.0 * activities_total / np.maximum(age_days, 1.0),
            "days_since_last_activity": since_last,
            "employee_count": as_float(pd.Series(firmographic("employee_count", 0.0))),
            "annual_revenue": as_float(pd.Series(firmographic("annual_revenue", 0.0))),
            "rep_lead_conversion_rate": rate,
            "rep_leads_decided": decided,
            "source": leads["source"].astype(str).to_numpy(),
            "has_company": np.where(known, "yes", "no"),
            "industry": firmographic("industry", "none").astype(str),
            "company_size": firmographic("size", "none").astype(str),
            "country": firmographic("country", "none").astype(str),
            "region": reps.values["region"].astype(str).to_numpy(),
        }
    )
    return features, source_times


def _rep_record(tables: CRMTables, as_of: pd.Timestamp, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed conversion rate, decided count and newest counted decision per owner, from leads whose
    decision (status converted/unqualified, stamped by updated_at) was recorded by as_of."""
    leads = tables.leads
    done = leads[leads["status"].isin(DECIDED) & (leads["updated_at"] <= as_of)]
    grouped = done.assign(converted=done["status"] == "converted").groupby("assigned_to")
    conversions = grouped["converted"].sum().reindex(reps).fillna(0).to_numpy(dtype=np.float64)
    decided = grouped.size().reindex(reps).fillna(0).to_numpy(dtype=np.float64)
    rate = (conversions + REP_PRIOR_CONVERSIONS) / (decided + REP_PRIOR_LEADS)
    return rate, decided, grouped["updated_at"].max().reindex(reps).to_numpy()
