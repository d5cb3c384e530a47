"""Point-in-time rows of the customer lifecycle tasks (optional tables `account_states` and `surveys`).

- lifecycle stage: each customer whose recorded stage at as_of is not `churned`; the label is its recorded
  stage at as_of + horizon (an index into LIFECYCLE_STAGES), known at as_of + horizon.
- CSAT: each customer that answers a survey within (as_of, as_of + horizon]; the label is the first such score,
  known when it was answered. `survey_id` identifies the answer (for the simulator's expected score), never a
  feature.

Both refuse, with the table's name, a CRM without the table they need, and use only horizons that ended before
extraction (labels not yet observed are left out).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator_lifecycle import STAGES as LIFECYCLE_STAGES
from fulqrun_ml.data.simulator_lifecycle import TICK_DAYS
from fulqrun_ml.errors import DataContractError

ABSORBING = "churned"


def require_table(tables: CRMTables, name: str, task: str) -> pd.DataFrame:
    """The optional table a task needs, or an error naming it (an export without it cannot train the task)."""
    frame = getattr(tables, name, None)
    if frame is None or len(frame) == 0:
        raise DataContractError(
            f"task {task} needs the optional table '{name}', which this CRM source does not have (or has empty); "
            f"simulate it with data.source.lifecycle=true or export {name}.csv|parquet"
        )
    return frame


def stages_as_of(states: pd.DataFrame, company_ids: np.ndarray, as_of: pd.Timestamp) -> pd.Series:
    """Each company's recorded stage at as_of (the newest change at or before it); NaN where none yet."""
    known = states[states["changed_at"] <= as_of].sort_values("changed_at", kind="stable")
    return known.groupby("company_id")["to_stage"].last().reindex(company_ids)


def lifecycle_stage_snapshots(tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """(company_id, as_of, stage_now, label, label_time): customers not churned at as_of, labelled with their
    stage index at as_of + horizon."""
    states = require_table(tables, "account_states", "lifecycle_stage")
    companies = states["company_id"].unique()
    index = {stage: i for i, stage in enumerate(LIFECYCLE_STAGES)}
    rows = []
    for as_of in as_of_dates:
        horizon_end = as_of + pd.Timedelta(days=horizon_days)
        if horizon_end > tables.extracted_at:
            continue
        now = stages_as_of(states, companies, as_of)
        now = now[now.notna() & (now != ABSORBING)]
        later = stages_as_of(states, now.index.to_numpy(), horizon_end)
        rows.append(
            pd.DataFrame(
                {
                    "company_id": now.index.to_numpy(),
                    "as_of": as_of,
                    "stage_now": now.to_numpy(),
                    "label": later.map(index).to_numpy(dtype=np.int64),
                    "label_time": horizon_end,
                }
            )
        )
    columns = ["company_id", "as_of", "stage_now", "label", "label_time"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def csat_snapshots(tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int) -> pd.DataFrame:
    """(company_id, as_of, survey_id, label, label_time): the first survey each company answers within the
    horizon after as_of, its score as the label."""
    surveys = require_table(tables, "surveys", "csat").sort_values("responded_at", kind="stable")
    rows = []
    for as_of in as_of_dates:
        horizon_end = as_of + pd.Timedelta(days=horizon_days)
        if horizon_end > tables.extracted_at:
            continue
        window = surveys[(surveys["responded_at"] > as_of) & (surveys["responded_at"] <= horizon_end)]
        first = window.groupby("company_id", sort=False).head(1)
        rows.append(
            pd.DataFrame(
                {
                    "company_id": first["company_id"].to_numpy(),
                    "as_of": as_of,
                    "survey_id": first["id"].to_numpy(),
                    "label": pd.to_numeric(first["score"]).to_numpy(dtype=np.float32),
                    "label_time": first["responded_at"].to_numpy(),
                }
            )
        )
    columns = ["company_id", "as_of", "survey_id", "label", "label_time"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def true_next_stage(transitions: pd.DataFrame, frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """[N, 5] the simulator's TRUE probabilities of each row's stage at as_of + horizon: the transition drawn at
    the one tick inside (as_of, as_of + horizon]. None where the horizon is not one tick (then the truth is a
    product of transitions whose drivers lie in the future, which the story does not record)."""
    if horizon_days != TICK_DAYS:
        return None
    keyed = frame[["company_id", "as_of"]].reset_index().merge(transitions, on="company_id", how="left")
    inside = (keyed["tick"] > keyed["as_of"]) & (keyed["tick"] <= keyed["as_of"] + pd.Timedelta(days=horizon_days))
    keyed = keyed[inside].drop_duplicates("index").set_index("index").reindex(range(len(frame)))
    return keyed[[f"p_{s}" for s in LIFECYCLE_STAGES]].to_numpy(dtype=np.float64)
