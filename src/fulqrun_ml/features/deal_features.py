"""Deal-win features: declared once (DEAL_WIN_FEATURES) and computed point-in-time.

`compute_deal_features(tables, index)` answers, for each (opportunity_id, as_of) row of `index`, what the
CRM knew *at* as_of: only stage-history rows, activities and closed deals with timestamps <= as_of are read,
and only opportunity fields that are fixed at creation (value, company, rep). Fields that the CRM
overwrites without history (stage, probability, MEDDPICC text, close_date) are never read from the
opportunities table, since their stored values may come from after as_of. Company firmographics and the
rep's region change over time: they are read as of as_of from `company_history` / `user_history`
(`data/history.py`); without history the current row is read and flagged "current value" for the audit.

Source times (for `features/audit.py`): an aggregate over possibly no rows (touches, the rep's closes)
reports the newest row it read or, when there is none, the row that anchors it (the deal, the rep), so a
missing time (NaT) always means a real problem and fails the audit.

Serving uses the same function with as_of = now, so training and serving share one definition.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.history import attributes_as_of
from fulqrun_ml.data.snapshots import stage_as_of
from fulqrun_ml.features.audit import current_value_column
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

DEAL_WIN_FEATURES = FeatureSpec(
    numeric=(
        NumericFeature("value", "deal amount in the organization's currency", log1p=True),
        NumericFeature("deal_age_days", "days since the deal was created", log1p=True),
        NumericFeature("days_in_stage", "days since the last stage change", log1p=True),
        NumericFeature("stage_changes", "stage changes so far"),
        NumericFeature("activities_total", "touches so far", log1p=True),
        NumericFeature("activities_last_14d", "touches in the last 14 days", log1p=True),
        NumericFeature("calls_total", "calls so far", log1p=True),
        NumericFeature("emails_total", "emails so far", log1p=True),
        NumericFeature("meetings_total", "meetings so far", log1p=True),
        NumericFeature("inbound_total", "touches the customer started (replies, inbound calls) so far", log1p=True),
        NumericFeature("activities_per_week", "touch rate over the deal's life"),
        NumericFeature("days_since_last_activity", "days since the last touch (age if none)", log1p=True),
        NumericFeature("employee_count", "company head count", log1p=True),
        NumericFeature("annual_revenue", "company revenue", log1p=True),
        NumericFeature("rep_win_rate", "rep's smoothed win rate on deals closed before as_of"),
        # No count of the rep's closed deals (only the win rate's denominator): a count since the CRM began grows
        # with calendar time, so it tells a model *when* a snapshot is, and the holdout and production are always
        # later than any training row. Measured on `monitor simulate`'s 539-day CRM (seed 0): with it the
        # holdout's mean probability is 0.573 against a win rate of 0.640 (uncalibrated ECE 0.069); without it
        # 0.646 (ECE 0.024), AUC 0.7883 vs 0.7888. reports/learning_curve.md shows the same for LightGBM.
    ),
    categorical=(
        CategoricalFeature("stage", "stage at as_of, from stage history"),
        CategoricalFeature("industry", "company industry"),
        CategoricalFeature("company_size", "company size band"),
        CategoricalFeature("region", "rep's region"),
        CategoricalFeature("country", "company country"),
    ),
)

# Beta prior for a rep's win rate, so new reps start near the population mean rather than 0 or 1.
REP_PRIOR_WINS, REP_PRIOR_DEALS = 2.0, 5.0
DAY = pd.Timedelta(days=1)


# Which source rows each feature reads; `source_times` reports the newest timestamp of each, for the audit.
# Groups: deal_created (the opportunity row's fixed fields), stage (stage_history), activities (touches on the
# deal), company (company_history at as_of, else the companies row), rep_user (user_history at as_of, else the
# users row), rep_record (closes in stage_history of the rep's deals). Every DEAL_WIN_FEATURES name is here.
FEATURE_SOURCE = {
    "value": "deal_created",
    "deal_age_days": "deal_created",
    "days_in_stage": "stage",
    "stage_changes": "stage",
    "stage": "stage",
    **dict.fromkeys(
        [
            "activities_total",
            "activities_last_14d",
            "calls_total",
            "emails_total",
            "meetings_total",
            "inbound_total",
            "activities_per_week",
            "days_since_last_activity",
        ],
        "activities",
    ),
    **dict.fromkeys(["employee_count", "annual_revenue", "industry", "company_size", "country"], "company"),
    "region": "rep_user",
    "rep_win_rate": "rep_record",
}
KEYS = ["opportunity_id", "as_of"]
CLOSED = ["closed_won", "closed_lost"]
# The groups whose values may come from a current row (no history at as_of): their features get a flag column.
VERSIONED_GROUPS = ("company", "rep_user")


def compute_deal_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Raw feature columns for each (opportunity_id, as_of) row of `index`, in `index` order.

    With `with_sources=True` also returns, per row and feature, the newest timestamp among the source rows
    the feature read (NaT where it read none) - the input of the leakage audit (`features/audit.py`)."""
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        features, times = _features_at(tables, rows["opportunity_id"].to_numpy(), pd.Timestamp(as_of))
        parts.append(features)
        sources.append(times)
    if not parts:
        empty = pd.DataFrame(columns=[*KEYS, *DEAL_WIN_FEATURES.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = index[KEYS].merge(pd.concat(parts, ignore_index=True), on=KEYS, how="left")
    if not with_sources:
        return keyed
    return keyed, index[KEYS].merge(pd.concat(sources, ignore_index=True), on=KEYS, how="left")


def _features_at(tables: CRMTables, opportunity_ids: np.ndarray, as_of: pd.Timestamp) -> pd.DataFrame:
    opps = tables.opportunities.set_index("id").loc[opportunity_ids]
    stages = stage_as_of(tables.stage_history, as_of).reindex(opportunity_ids)
    companies = attributes_as_of(tables, "company_history", opps["company_id"].to_numpy(), as_of)
    reps = attributes_as_of(tables, "user_history", opps["assigned_to"].to_numpy(), as_of)
    firmographics = companies.values

    acts = tables.activities
    acts = acts[(acts["created_at"] <= as_of) & acts["related_id"].isin(opportunity_ids)]
    by_deal = acts.groupby("related_id")
    recent = acts[acts["created_at"] > as_of - 14 * DAY].groupby("related_id").size()
    type_counts = acts.pivot_table(index="related_id", columns="type", values="id", aggfunc="count")
    # Exports without the optional `direction` column load as "unknown": no inbound touches are counted.
    inbound = acts[acts["direction"] == "inbound"] if "direction" in acts else acts.iloc[:0]

    def per_deal(series: pd.Series) -> np.ndarray:
        return series.reindex(opportunity_ids).fillna(0).to_numpy(dtype=np.float64)

    def type_total(kind: str) -> np.ndarray:
        return per_deal(type_counts[kind]) if kind in type_counts else np.zeros(len(opportunity_ids))

    age_days = (as_of - opps["created_at"]).dt.total_seconds().to_numpy() / 86400.0
    rep_wins, rep_closed, rep_last_close = _rep_record(tables, as_of, opps["assigned_to"].to_numpy())
    deal_created = pd.to_datetime(opps["created_at"], utc=True).to_numpy()
    rep_created = pd.to_datetime(
        tables.users.drop_duplicates("id").set_index("id")["created_at"].reindex(opps["assigned_to"]), utc=True
    ).to_numpy()
    group_times = {
        "deal_created": deal_created,
        "stage": stages["stage_entered_at"].to_numpy(),
        "activities": newest(by_deal["created_at"].max().reindex(opportunity_ids).to_numpy(), deal_created),
        "company": companies.source_time,
        "rep_user": reps.source_time,
        "rep_record": newest(rep_last_close, rep_created),
    }
    current = {"company": ~companies.point_in_time, "rep_user": ~reps.point_in_time}
    source_times = pd.DataFrame(
        {"opportunity_id": opportunity_ids, "as_of": as_of}
        | {name: group_times[group] for name, group in FEATURE_SOURCE.items()}
        | {current_value_column(n): current[g] for n, g in FEATURE_SOURCE.items() if g in VERSIONED_GROUPS}
    )
    last_touch = by_deal["created_at"].max().reindex(opportunity_ids)
    since_last = ((as_of - last_touch).dt.total_seconds() / 86400.0).to_numpy()
    since_last = np.where(np.isnan(since_last), age_days, since_last)
    activities_total = per_deal(by_deal.size())

    features = pd.DataFrame(
        {
            "opportunity_id": opportunity_ids,
            "as_of": as_of,
            "value": opps["value"].to_numpy(dtype=np.float64),
            "deal_age_days": age_days,
            "days_in_stage": (as_of - stages["stage_entered_at"]).dt.total_seconds().to_numpy() / 86400.0,
            "stage_changes": stages["stage_changes"].to_numpy(dtype=np.float64),
            "activities_total": activities_total,
            "activities_last_14d": per_deal(recent),
            "calls_total": type_total("call"),
            "emails_total": type_total("email"),
            "meetings_total": type_total("meeting"),
            "inbound_total": per_deal(inbound.groupby("related_id").size()),
            "activities_per_week": 7.0 * activities_total / np.maximum(age_days, 1.0),
            "days_since_last_activity": since_last,
            "employee_count": as_float(firmographics["employee_count"]),
            "annual_revenue": as_float(firmographics["annual_revenue"]),
            "rep_win_rate": (rep_wins + REP_PRIOR_WINS) / (rep_closed + REP_PRIOR_DEALS),
            "stage": stages["stage"].to_numpy(),
            "industry": firmographics["industry"].to_numpy(),
            "company_size": firmographics["size"].to_numpy(),
            "region": reps.values["region"].to_numpy(),
            "country": firmographics["country"].to_numpy(),
        }
    )
    return features, source_times


def newest(times: np.ndarray, anchor: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """Per row, the later of the newest row read (NaT: none was read) and the time of the row anchoring it."""
    both = pd.DataFrame(
        {"read": pd.to_datetime(pd.Series(times), utc=True), "anchor": pd.to_datetime(pd.Series(anchor), utc=True)}
    )
    return both.max(axis=1).array


def as_float(values: pd.Series) -> np.ndarray:
    """A numeric attribute (object dtype after the as-of lookup) as float64; missing values become NaN, text
    that is not a number raises (validated data never has it)."""
    return pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)


def _rep_record(tables: CRMTables, as_of: pd.Timestamp, reps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wins, closed deals and newest counted close per rep, counting only closes recorded by as_of."""
    closes = tables.stage_history[
        (tables.stage_history["changed_at"] <= as_of) & tables.stage_history["to_stage"].isin(CLOSED)
    ]
    owner = tables.opportunities.set_index("id")["assigned_to"].reindex(closes["opportunity_id"]).to_numpy()
    record = pd.DataFrame(
        {"rep": owner, "won": (closes["to_stage"] == "closed_won").to_numpy(), "at": closes["changed_at"].array}
    )
    grouped = record.groupby("rep")
    wins = grouped["won"].sum().reindex(reps).fillna(0).to_numpy(dtype=np.float64)
    closed = grouped.size().reindex(reps).fillna(0).to_numpy(dtype=np.float64)
    return wins, closed, grouped["at"].max().reindex(reps).to_numpy()


def rows_read_for(tables: CRMTables, opportunity_ids: Iterable[str]) -> CRMTables:
    """The part of the CRM that `compute_deal_features` reads for these deals, at any as_of: every deal (owners
    of closes), the deals' own stage history plus every close (the reps' records), the deals' activities, and
    their companies and reps with their history.

    Why: the stream worker recomputes a few deals per micro-batch, and the builder's scans and group-bys over
    the whole activity and stage tables dominate that batch. Computing on this slice gives the same values
    (`tests/unit/test_deal_rows_read.py` compares slice and full CRM on random deals and times, and fails
    when a table the builder reads is cut too far), so the definition stays the one the training uses."""
    ids = pd.unique(np.asarray(list(opportunity_ids), dtype=object)).tolist()
    opps = tables.opportunities
    chosen = opps[opps["id"].isin(ids)]
    reps = chosen["assigned_to"].dropna().unique().tolist()
    companies = chosen["company_id"].dropna().unique().tolist()
    history = tables.stage_history
    return dataclasses.replace(
        tables,
        stage_history=history[history["opportunity_id"].isin(ids) | history["to_stage"].isin(CLOSED)],
        activities=tables.activities[tables.activities["related_id"].isin(ids)],
        companies=tables.companies[tables.companies["id"].isin(companies)],
        users=tables.users[tables.users["id"].isin(reps)],
        company_history=tables.company_history[tables.company_history["company_id"].isin(companies)],
        user_history=tables.user_history[tables.user_history["user_id"].isin(reps)],
    )
