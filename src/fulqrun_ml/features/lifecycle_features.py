"""Customer lifecycle features: the churn snapshot's account features plus the recorded stage and CSAT history.

Declared once (LIFECYCLE_FEATURES) for the lifecycle-stage and CSAT tasks, computed point-in-time: for each
(company_id, as_of) row only `account_states` changes and `surveys` answers stamped at or before as_of are read,
on top of `account_features.compute_account_features` (the same firmographics, wins, pipeline and touches the
churn model reads). Each feature reports the newest row it read (the company row where it read none) for the
leakage audit, and the datamodule's recompute audit re-derives a sample from the CRM cut at as_of.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.features.account_features import ACCOUNT_FEATURES, compute_account_features
from fulqrun_ml.features.deal_features import newest
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

NO_STAGE = "none"  # a customer whose stage the CRM has not recorded yet
STAGE_FEATURES = ("lifecycle_stage", "days_in_stage", "stage_changes_total")
SURVEY_FEATURES = ("surveys_last_180d", "csat_mean_180d", "csat_last", "days_since_last_survey")
LIFECYCLE_FEATURES = FeatureSpec(
    numeric=(
        *ACCOUNT_FEATURES.numeric,
        NumericFeature("days_in_stage", "days since the recorded stage was entered", log1p=True),
        NumericFeature("stage_changes_total", "recorded stage changes by as_of", log1p=True),
        NumericFeature("surveys_last_180d", "CSAT answers in the last 180 days", log1p=True),
        NumericFeature("csat_mean_180d", "mean CSAT score of the last 180 days (0: none)"),
        NumericFeature("csat_last", "the newest CSAT score (0: none)"),
        NumericFeature("days_since_last_survey", "days since the newest CSAT answer (tenure if none)", log1p=True),
    ),
    categorical=(*ACCOUNT_FEATURES.categorical, CategoricalFeature("lifecycle_stage", "recorded stage at as_of")),
)
KEYS = ["company_id", "as_of"]


def compute_lifecycle_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Raw LIFECYCLE_FEATURES columns per (company_id, as_of) row of `index`, in `index` order (and, with
    `with_sources`, the newest source time of each)."""
    account, account_times = compute_account_features(tables, index, with_sources=True)
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        features, times = _lifecycle_at(tables, rows["company_id"].to_numpy(), pd.Timestamp(as_of))
        parts.append(features)
        sources.append(times)
    if not parts:
        empty = pd.DataFrame(columns=[*KEYS, *LIFECYCLE_FEATURES.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = account.merge(pd.concat(parts, ignore_index=True), on=KEYS, how="left")
    if not with_sources:
        return keyed
    return keyed, account_times.merge(pd.concat(sources, ignore_index=True), on=KEYS, how="left")


def _lifecycle_at(tables: CRMTables, company_ids: np.ndarray, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    created = pd.to_datetime(tables.companies.drop_duplicates("id").set_index("id")["created_at"], utc=True)
    created = created.reindex(company_ids).to_numpy()
    states = tables.account_states
    states = states[(states["changed_at"] <= as_of) & states["company_id"].isin(company_ids)]
    last_state = states.sort_values("changed_at", kind="stable").groupby("company_id").tail(1).set_index("company_id")
    last_state = last_state.reindex(company_ids)
    changes = states.groupby("company_id").size().reindex(company_ids).fillna(0).to_numpy(dtype=float)
    entered = pd.to_datetime(last_state["changed_at"], utc=True)
    in_stage = ((as_of - entered).dt.total_seconds() / 86400.0).fillna(0.0).to_numpy()

    surveys = tables.surveys
    surveys = surveys[(surveys["responded_at"] <= as_of) & surveys["company_id"].isin(company_ids)]
    surveys = surveys.assign(score=pd.to_numeric(surveys["score"]).astype(float))
    recent = surveys[surveys["responded_at"] > as_of - pd.Timedelta(days=180)].groupby("company_id")["score"]
    latest = surveys.sort_values("responded_at", kind="stable").groupby("company_id").tail(1).set_index("company_id")
    latest = latest.reindex(company_ids)
    since = ((as_of - pd.to_datetime(latest["responded_at"], utc=True)).dt.total_seconds() / 86400.0).to_numpy()
    since_created = (as_of - pd.to_datetime(created, utc=True)).total_seconds() / 86400.0
    features = pd.DataFrame(
        {
            "company_id": company_ids,
            "as_of": as_of,
            "lifecycle_stage": last_state["to_stage"].fillna(NO_STAGE).astype(str).to_numpy(),
            "days_in_stage": in_stage,
            "stage_changes_total": changes,
            "surveys_last_180d": recent.size().reindex(company_ids).fillna(0).to_numpy(dtype=float),
            "csat_mean_180d": recent.mean().reindex(company_ids).fillna(0.0).to_numpy(dtype=float),
            "csat_last": latest["score"].fillna(0.0).to_numpy(dtype=float),
            "days_since_last_survey": np.where(np.isnan(since), np.asarray(since_created), since),
        }
    )
    state_time = newest(entered.to_numpy(), created)
    survey_time = newest(pd.to_datetime(latest["responded_at"], utc=True).to_numpy(), created)
    times = pd.DataFrame(
        {"company_id": company_ids, "as_of": as_of}
        | dict.fromkeys(STAGE_FEATURES, state_time)
        | dict.fromkeys(SURVEY_FEATURES, survey_time)
    )
    return features, times
