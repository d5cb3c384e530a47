"""MEDDPICC history features, read point-in-time from the optional `meddpicc_events` table.

Why from events: the opportunities row holds only the latest MEDDPICC text, written after most snapshots of
the deal, so reading it for a past as_of leaks the future (`deal_features.py` never does). Each write in
`meddpicc_events` is stamped, so the qualification *as it stood at as_of* is computable:

- completeness: how many of the nine elements were written by as_of;
- scores: the mean and the lowest of each element's latest 0-10 score;
- trajectory: writes in the last 30 days, how the mean score moved over them, days since the last write, and
  how long the elements stayed open (days from the deal's creation until each was first written, or as_of for
  those still open), averaged over the nine.

One definition for training and serving: the deal-win-with-MEDDPICC builder calls `compute_meddpicc_features`
for snapshots, and serving calls it with as_of = now (`tests/unit/test_meddpicc_features.py` checks the two
agree). Exports without the table have no history: `has_meddpicc_history` is False and the builder refuses to
pretend (the features are absent, and the error says so), while the plain deal-win task is unaffected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import MEDDPICC_FIELDS
from fulqrun_ml.features.deal_features import newest
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature

# The middle of the 0-10 scale: the score of a deal with no element scored yet ("nothing known").
NEUTRAL_SCORE = 5.0
RECENT = pd.Timedelta(days=30)
DAY_SECONDS = 86400.0
KEYS = ["opportunity_id", "as_of"]

MEDDPICC_HISTORY_FEATURES = FeatureSpec(
    numeric=(
        NumericFeature("meddpicc_filled", "MEDDPICC elements written by as_of (0-9)"),
        NumericFeature("meddpicc_score_mean", "mean of the elements' latest 0-10 scores (5 if none)"),
        NumericFeature("meddpicc_score_min", "lowest latest element score (5 if none)"),
        NumericFeature("meddpicc_writes", "MEDDPICC writes so far", log1p=True),
        NumericFeature("meddpicc_writes_30d", "MEDDPICC writes in the last 30 days", log1p=True),
        NumericFeature("meddpicc_score_change_30d", "mean latest score now minus 30 days ago (elements written then)"),
        NumericFeature(
            "meddpicc_days_since_write", "days since the last MEDDPICC write (deal age if none)", log1p=True
        ),
        NumericFeature(
            "meddpicc_open_days_mean", "mean days each element stayed open (to its first write)", log1p=True
        ),
    ),
    categorical=(),
)
# Every feature reads the deal's MEDDPICC writes up to as_of (and the deal's creation time): one audit group.
FEATURE_SOURCE = dict.fromkeys(MEDDPICC_HISTORY_FEATURES.names, "meddpicc_events")


def has_meddpicc_history(tables: CRMTables) -> bool:
    """Whether the export carries a MEDDPICC history at all (an empty table means the CRM records none)."""
    return len(tables.meddpicc_events) > 0


def compute_meddpicc_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """MEDDPICC_HISTORY_FEATURES for each (opportunity_id, as_of) row of `index`, in `index` order; with
    `with_sources`, also the newest timestamp each feature read (the deal's creation where it read no write)."""
    parts, sources = [], []
    for as_of, rows in index.groupby("as_of", sort=True):
        features, times = _features_at(tables, rows["opportunity_id"].unique(), pd.Timestamp(as_of))
        parts.append(features)
        sources.append(times)
    if not parts:
        empty = pd.DataFrame(columns=[*KEYS, *MEDDPICC_HISTORY_FEATURES.names])
        return (empty, empty.copy()) if with_sources else empty
    keyed = index[KEYS].merge(pd.concat(parts, ignore_index=True), on=KEYS, how="left")
    if not with_sources:
        return keyed
    return keyed, index[KEYS].merge(pd.concat(sources, ignore_index=True), on=KEYS, how="left")


def _latest(events: pd.DataFrame) -> pd.DataFrame:
    """Each (deal, element)'s newest write (events are sorted by time; table order breaks ties)."""
    return events.drop_duplicates(["opportunity_id", "field"], keep="last")


def _features_at(tables: CRMTables, ids: np.ndarray, as_of: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    created = pd.to_datetime(tables.opportunities.drop_duplicates("id").set_index("id")["created_at"], utc=True)
    created = created.reindex(ids)
    age_days = ((as_of - created).dt.total_seconds() / DAY_SECONDS).to_numpy()
    events = tables.meddpicc_events
    events = events[events["opportunity_id"].isin(ids) & (events["changed_at"] <= as_of)]
    events = events.sort_values("changed_at", kind="stable")
    events = events.assign(score=pd.to_numeric(events["score"]).to_numpy(dtype=np.float64, na_value=np.nan))
    latest = _latest(events)
    by_deal = latest.groupby("opportunity_id")
    before = _latest(events[events["changed_at"] <= as_of - RECENT])
    moved = latest.merge(before, on=["opportunity_id", "field"], suffixes=("", "_then"))
    change = (moved["score"] - moved["score_then"]).groupby(moved["opportunity_id"]).mean()
    first = events.drop_duplicates(["opportunity_id", "field"], keep="first")
    first_created = pd.Series(created.reindex(first["opportunity_id"]).array, index=first.index)
    first_days = (first["changed_at"] - first_created).dt.total_seconds() / DAY_SECONDS
    open_written = first_days.groupby(first["opportunity_id"].to_numpy()).sum()
    written = by_deal.size()

    def per_deal(series: pd.Series, fill: float) -> np.ndarray:
        return series.reindex(ids).fillna(fill).to_numpy(dtype=np.float64)

    n_written = per_deal(written, 0.0)
    last_write = events.groupby("opportunity_id")["changed_at"].max().reindex(ids)
    since = ((as_of - last_write).dt.total_seconds() / DAY_SECONDS).to_numpy()
    open_days = (per_deal(open_written, 0.0) + (len(MEDDPICC_FIELDS) - n_written) * age_days) / len(MEDDPICC_FIELDS)
    features = pd.DataFrame(
        {
            "opportunity_id": ids,
            "as_of": as_of,
            "meddpicc_filled": n_written,
            "meddpicc_score_mean": per_deal(by_deal["score"].mean(), NEUTRAL_SCORE),
            "meddpicc_score_min": per_deal(by_deal["score"].min(), NEUTRAL_SCORE),
            "meddpicc_writes": per_deal(events.groupby("opportunity_id").size(), 0.0),
            "meddpicc_writes_30d": per_deal(
                events[events["changed_at"] > as_of - RECENT].groupby("opportunity_id").size(), 0.0
            ),
            "meddpicc_score_change_30d": per_deal(change, 0.0),
            "meddpicc_days_since_write": np.where(np.isnan(since), age_days, since),
            "meddpicc_open_days_mean": open_days,
        }
    )
    read = newest(last_write.to_numpy(), created.to_numpy())
    times = pd.DataFrame({"opportunity_id": ids, "as_of": as_of} | dict.fromkeys(FEATURE_SOURCE, read))
    return features, times
