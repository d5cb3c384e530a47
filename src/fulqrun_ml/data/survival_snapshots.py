"""Point-in-time rows of the close-timing survival task: every deal open at as_of, closed or not.

Unlike `snapshots.deal_win_snapshots` (and the close-timing regression built on it), a deal still open at the
horizon is kept: it is censored there. Dropping it would train only on deals that close soon and make every
prediction optimistic. Censoring is administrative only: `snapshots.snapshot_dates` ends the grid one horizon
before extraction, so every row is followed for the whole horizon (no inverse-probability-of-censoring weights
are needed); an as_of whose horizon runs past extraction is refused here as well, whatever grid is passed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.snapshots import open_deals_as_of

CLOSED_STAGES = ("closed_won", "closed_lost")


def close_timing_survival_snapshots(
    tables: CRMTables, as_of_dates: list[pd.Timestamp], horizon_days: int
) -> pd.DataFrame:
    """One row per deal open at each as_of: `label` = 1 if it closes (won or lost) within the horizon, else 0;
    `duration_days` = days from as_of to that close, or exactly `horizon_days` when censored; `label_time` = the
    close, or the horizon's end; `won` = closed won within the horizon. Features come from `features/`."""
    closes = tables.stage_history[tables.stage_history["to_stage"].isin(CLOSED_STAGES)]
    horizon = pd.Timedelta(days=horizon_days)
    rows = []
    for as_of in as_of_dates:
        horizon_end = as_of + horizon
        if horizon_end > tables.extracted_at:
            raise ValueError(
                f"as_of {as_of} + horizon_days={horizon_days} runs past extracted_at {tables.extracted_at}: "
                "its rows would be censored early"
            )
        open_now = open_deals_as_of(tables, as_of)
        # The first close strictly after as_of (a reopened deal may have closed before).
        later = closes[closes["changed_at"] > as_of].sort_values("changed_at", kind="stable")
        first = later.groupby("opportunity_id", sort=False).first()
        closed_at = first["changed_at"].reindex(open_now["opportunity_id"]).to_numpy()
        outcome = first["to_stage"].reindex(open_now["opportunity_id"]).to_numpy()
        event = pd.notna(closed_at) & (closed_at <= horizon_end)
        days = (pd.Series(closed_at) - as_of).dt.total_seconds().to_numpy() / 86400.0
        rows.append(
            open_now.assign(
                label=event.astype(np.float32),
                duration_days=np.where(event, days, float(horizon_days)),
                label_time=pd.Series(np.where(event, closed_at, horizon_end)).to_numpy(),
                won=(event & (outcome == "closed_won")).astype(np.float32),
            )
        )
    return pd.concat(rows, ignore_index=True)
