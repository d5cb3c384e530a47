"""Close-timing features: the deal-win features plus where as_of sits in the fiscal quarter.

Deals are pushed to close on the last day of a quarter (the quarter-end push), so how many days remain in
the quarter at as_of says much about how long an open deal has left; nothing about a deal's win odds needs
it, which is why it is not a deal-win feature. It is computed from as_of alone (the calendar): it is declared
`READS_NOTHING_TIMESTAMPED` in FEATURE_SOURCE, and the source time it reports is as_of itself (never NaT, so
the audit passes it even where the caller does not pass the declarations).
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.features.audit import CURRENT_VALUE_SUFFIX, READS_NOTHING_TIMESTAMPED
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.features.deal_features import FEATURE_SOURCE as DEAL_FEATURE_SOURCE
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature

CLOSE_TIMING_FEATURES = FeatureSpec(
    numeric=(
        *DEAL_WIN_FEATURES.numeric,
        NumericFeature("days_to_quarter_end", "days from as_of to the end of its calendar quarter"),
    ),
    categorical=DEAL_WIN_FEATURES.categorical,
)

# Which source rows each feature reads (for the audit): the deal-win declarations plus the calendar feature.
FEATURE_SOURCE = {**DEAL_FEATURE_SOURCE, "days_to_quarter_end": READS_NOTHING_TIMESTAMPED}


def days_to_quarter_end(as_of: pd.Series) -> pd.Series:
    naive = pd.to_datetime(as_of, utc=True).dt.tz_localize(None)
    end = naive.dt.to_period("Q").dt.end_time
    return (end - naive).dt.total_seconds() / 86400.0


def compute_close_timing_features(
    tables: CRMTables, index: pd.DataFrame, with_sources: bool = False
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """`compute_deal_features` plus `days_to_quarter_end` (columns in CLOSE_TIMING_FEATURES order)."""
    result = compute_deal_features(tables, index, with_sources=with_sources)
    features, sources = result if with_sources else (result, None)
    features = features.assign(days_to_quarter_end=days_to_quarter_end(features["as_of"]).to_numpy())
    columns = ["opportunity_id", "as_of", *CLOSE_TIMING_FEATURES.names]
    if sources is None:
        return features[columns]
    sources = sources.assign(days_to_quarter_end=sources["as_of"])  # the calendar: known at as_of
    flags = [c for c in sources.columns if c.endswith(CURRENT_VALUE_SUFFIX)]
    return features[columns], sources[[*columns, *flags]]
