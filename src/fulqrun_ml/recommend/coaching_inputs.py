"""The deals table coaching reads, from a CRM export: each deal's rep, segment and the furthest stage reached.

A closed deal's furthest open stage comes from its `stage_history` (the last open stage it entered; a won deal
converted out of all of them); an open deal's current stage is its `stage`. This is the same table the
simulator's coaching world (`data/simulator_coaching.py`) produces, so one estimator reads both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import FieldValidationError


def crm_coaching_deals(tables: CRMTables) -> pd.DataFrame:
    """opportunity_id, rep_id, industry, size, value, meddpicc_score, closed, stage_reached, won, current_stage."""
    opps = tables.opportunities
    if opps.empty:
        raise FieldValidationError("opportunities", "the CRM has no deals")
    index = {s: i for i, s in enumerate(OPEN_STAGES)}
    history = tables.stage_history.assign(k=tables.stage_history["to_stage"].map(index))
    furthest = history.dropna(subset=["k"]).groupby("opportunity_id")["k"].max()
    company = tables.companies.set_index("id").reindex(opps["company_id"])
    closed = opps["stage"].isin(["closed_won", "closed_lost"]).to_numpy()
    won_now = opps["stage"].eq("closed_won").to_numpy()
    current = opps["stage"].map(index)
    reached = furthest.reindex(opps["id"]).to_numpy()
    reached = np.where(np.isnan(reached), current.fillna(0).to_numpy(), reached).astype(int)
    won = pd.array(won_now, dtype="boolean")
    won[~closed] = pd.NA
    return pd.DataFrame(
        {
            "opportunity_id": opps["id"].to_numpy(),
            "rep_id": opps["assigned_to"].to_numpy(),
            "industry": company["industry"].fillna("unknown").to_numpy(),
            "size": company["size"].fillna("unknown").to_numpy(),
            "value": pd.to_numeric(opps["value"], errors="coerce").to_numpy(dtype=float),
            "meddpicc_score": pd.to_numeric(opps["meddpicc_score"], errors="coerce").to_numpy(dtype=float),
            "closed": closed,
            "stage_reached": np.where(won_now, len(OPEN_STAGES), reached),
            "won": won,
            "current_stage": opps["stage"].to_numpy(),
        }
    )
