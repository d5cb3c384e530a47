"""`task=deal_win_meddpicc` and `task=lead_conversion_intent`: deal win with the MEDDPICC history and note
features, lead conversion with the lead intent score and its note cues.

The same rows, labels, baselines and oracles as deal win / lead conversion; only the features differ
(`features/meddpicc_deal.py`, `features/meddpicc_intent.py`, one definition for training and scoring). Deal win
refuses exports without the optional `meddpicc_events` / `notes` tables, naming them (`task=deal_win` works on
them); without lead notes the intent score is 0.5 for every lead ("no notes"), so it carries nothing.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.datamodules.task_builders import DECIDED_LEAD_STATUSES, DealWinBuilder, LeadConversionBuilder
from fulqrun_ml.features.meddpicc_deal import DEAL_WIN_MEDDPICC_FEATURES, compute_deal_meddpicc_features
from fulqrun_ml.features.meddpicc_intent import LEAD_INTENT_ALL_FEATURES, compute_lead_intent_features
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


class LeadConversionIntentBuilder(LeadConversionBuilder):
    """Undecided lead -> converted within the horizon, with the intent score and note cues as features."""

    def __init__(self, feature_spec: FeatureSpec = LEAD_INTENT_ALL_FEATURES) -> None:
        super().__init__(feature_spec)

    def features(self, tables: CRMTables, index: pd.DataFrame, with_sources: bool = False):
        return compute_lead_intent_features(tables, index, with_sources=with_sources)

    def scoring_rows(self, tables: CRMTables, horizon_days: int) -> pd.DataFrame:
        leads, now = tables.leads, tables.extracted_at
        decided = leads["status"].isin(DECIDED_LEAD_STATUSES) & (leads["updated_at"] <= now)
        index = pd.DataFrame({"lead_id": leads.loc[~decided & (leads["created_at"] <= now), "id"], "as_of": now})
        return index.merge(compute_lead_intent_features(tables, index), on=["lead_id", "as_of"])
