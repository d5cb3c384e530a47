"""Lead intent's lift on lead conversion: the lead features, + the intent score, + the score and its cue shares.

Rows are the lead-conversion task's own (`lead_conversion_snapshots`: undecided leads every 14 days after a
60-day warm-up, converted within 60 days), split by time 50/25/25 with every row embargoed by its full horizon
(as `LeadConversionBuilder` does). The oracle is the Bayes posterior given the simulator's lead truth and the
lead's age (`lead_oracle_probability`), on the same holdout rows. Arms are scored by `meddpicc.run_seed`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.snapshots import snapshot_dates, time_split
from fulqrun_ml.data.task_snapshots import lead_conversion_snapshots
from fulqrun_ml.datamodules.task_builders import lead_oracle_probability
from fulqrun_ml.features.lead_features import LEAD_FEATURES
from fulqrun_ml.features.meddpicc_intent import (
    LEAD_INTENT_ALL_FEATURES,
    LEAD_INTENT_FEATURES,
    compute_lead_intent_features,
)
from fulqrun_ml.features.spec import FeatureSpec

HORIZON_DAYS = 60
ORACLE = "oracle_probability"
LEAD_ARMS: dict[str, FeatureSpec] = {
    "lead": LEAD_FEATURES,
    "lead+intent_score": LEAD_INTENT_FEATURES,
    "lead+intent_score+cues": LEAD_INTENT_ALL_FEATURES,
}


def build_lead_frame(seed: int, leads: int, opportunities: int, companies: int, reps: int) -> pd.DataFrame:
    """One seed's lead-conversion rows with every feature, the split and the oracle (see the docstring)."""
    crm = simulate_crm(n_opportunities=opportunities, n_companies=companies, n_reps=reps, n_leads=leads, seed=seed)
    tables = crm.tables
    dates = snapshot_dates(tables, every_days=14, warmup_days=60, horizon_days=HORIZON_DAYS)
    snaps = lead_conversion_snapshots(tables, dates, HORIZON_DAYS)
    split = time_split(dates, 0.25, 0.25)
    embargoed = snaps.assign(label_time=snaps["as_of"] + pd.Timedelta(days=HORIZON_DAYS))
    snaps = snaps.assign(split=split.assign(embargoed).to_numpy())
    snaps = snaps[snaps["split"] != "embargoed"].reset_index(drop=True)
    frame = snaps.merge(compute_lead_intent_features(tables, snaps[["lead_id", "as_of"]]), on=["lead_id", "as_of"])
    assert crm.lead_latent is not None
    truth = crm.lead_latent.set_index("lead_id")["true_conversion_probability"].reindex(frame["lead_id"])
    frame[ORACLE] = lead_oracle_probability(
        truth.to_numpy(dtype=np.float64), frame["lead_age_days"].to_numpy(dtype=np.float64), HORIZON_DAYS
    )
    return frame
