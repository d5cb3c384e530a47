"""`task=deal_win_meddpicc`: the deal-win task with the MEDDPICC history and note features.

The same rows, labels, baselines and oracle as deal win (`DealWinBuilder`); only the features differ
(`features/meddpicc_deal.py`, one definition for training and scoring). Exports without the optional
`meddpicc_events` / `notes` tables are refused with the table named; `task=deal_win` works on them.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.datamodules.task_builders import DealWinBuilder
from fulqrun_ml.features.meddpicc_deal import DEAL_WIN_MEDDPICC_FEATURES, compute_deal_meddpicc_features
from fulqrun_ml.features.spec import FeatureSpec


class DealWinMeddpiccBuilder(DealWinBuilder):
    """Open deal -> closes won within the horizon, with MEDDPICC history and note cues as features."""

    def __init__(self, feature_spec: FeatureSpec = DEAL_WIN_MEDDPICC_FEATURES) -> None:
        super().__init__(feature_spec)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_deal_meddpicc_features(tables, index, with_sources=with_sources)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        now = open_deals_as_of(tables, tables.extracted_at)
        return now.merge(compute_deal_meddpicc_features(tables, now), on=["opportunity_id", "as_of"])
