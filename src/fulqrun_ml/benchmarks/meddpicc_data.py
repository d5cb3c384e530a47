"""The MEDDPICC ablation's data: one simulated CRM per seed as deal-win rows with every feature family.

Rows are the deal-win task's own (`snapshots.deal_win_snapshots` on the default grid: every 14 days after a
60-day warm-up, 180-day horizon) split by time with the label embargo (`time_split`, 15% / 15%). Each row
carries the tabular features (`compute_deal_features`), the MEDDPICC history features
(`compute_meddpicc_features`), the keyword note features (`compute_note_features`) and the oracle
probability (the simulator's Bayes posterior, `oracle_win_probability`), which is never a feature.
The note embeddings are added by `meddpicc_text.py`: they need the encoder, which this module does not load.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import oracle_win_probability, simulate_crm
from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates, time_split
from fulqrun_ml.features.deal_features import compute_deal_features
from fulqrun_ml.features.meddpicc_features import compute_meddpicc_features
from fulqrun_ml.features.meddpicc_notes import compute_note_features

KEYS = ["opportunity_id", "as_of"]
ORACLE = "oracle_probability"


@dataclass(frozen=True)
class CRMSize:
    """The simulated CRM of each seed (small enough for a few minutes on two shared cores)."""

    opportunities: int = 3000
    companies: int = 600
    reps: int = 16
    days: int = 730


@dataclass(frozen=True)
class AblationData:
    """One seed's rows (train / val / test, embargoed rows dropped) and its CRM (the notes for embedding)."""

    seed: int
    frame: pd.DataFrame
    tables: CRMTables
    val_start: pd.Timestamp


def build_ablation_data(seed: int, size: CRMSize = CRMSize()) -> AblationData:
    """Simulate, snapshot, split and featurise one seed's CRM (see the module docstring)."""
    crm = simulate_crm(
        n_opportunities=size.opportunities, n_companies=size.companies, n_reps=size.reps, days=size.days, seed=seed
    )
    tables = crm.tables
    dates = snapshot_dates(tables, every_days=14, warmup_days=60, horizon_days=180)
    snaps = deal_win_snapshots(tables, dates, horizon_days=180)
    split = time_split(dates, 0.15, 0.15)
    snaps = snaps.assign(split=split.assign(snaps).to_numpy())
    snaps = snaps[snaps["split"] != "embargoed"].reset_index(drop=True)
    index = snaps[KEYS]
    frame = snaps.merge(compute_deal_features(tables, index), on=KEYS)
    frame = frame.merge(compute_meddpicc_features(tables, index), on=KEYS)
    frame = frame.merge(compute_note_features(tables, index), on=KEYS)
    truth = crm.latent.set_index("opportunity_id")["true_win_probability"].reindex(frame["opportunity_id"])
    frame[ORACLE] = oracle_win_probability(truth.to_numpy(dtype=np.float64), frame["stage_index"].to_numpy())
    return AblationData(seed=seed, frame=frame, tables=tables, val_start=split.val_start)
