"""Effect estimates -> ranked next best actions for open deals, each with its uplift, interval and a plain reason.

Why this module is thin: the SDK, the CLI and the served endpoint must rank and explain the same way, and the
Triton Python stub may import only numpy. So the ranking itself lives once, in `serving/nba_rank.py` (numpy, the
layer below), and this module only adapts it to DataFrames: deal states in, one row per deal and rank out. An
action's uplift is the sum of its components' estimated effects against the reference action (a routine email in
3-7 days, afternoon, no content), in win probability and in expected revenue (x the deal's value); its interval
adds the components' ensemble spreads in quadrature. Only actions whose every component reps have used for similar
deals (the support mask) are ranked first, and only action fields are ever set (`check_actionable`).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_actions import COMPONENTS
from fulqrun_ml.recommend.actions import check_actionable
from fulqrun_ml.serving.nba_files import SUPPORT_FLOOR, Z95
from fulqrun_ml.serving.nba_rank import ActionSpace

FACT_COLUMNS = ("value", "stage", "size", "industry", "meddpicc_gaps")


@cache
def action_space() -> ActionSpace:
    """The simulator's action space as the served ranking sees it (built once: 336 combinations)."""
    return ActionSpace({c: list(arms) for c, arms in COMPONENTS.items()}, SUPPORT_FLOOR, Z95)


def rank_actions(
    states: pd.DataFrame, uplift: np.ndarray, sd: np.ndarray, support: np.ndarray, k: int = 5
) -> pd.DataFrame:
    """The top-k supported actions per deal by estimated uplift in win probability (the same order as expected
    revenue for one deal, since its value is fixed), one row per deal and rank."""
    check_actionable(COMPONENTS)
    facts = states[list(FACT_COLUMNS)].to_dict(orient="records")
    ranked = action_space().rank(np.asarray(uplift), np.asarray(sd), np.asarray(support, dtype=bool), facts, k)
    ids = states["opportunity_id"].to_numpy()
    return pd.DataFrame([{"opportunity_id": ids[r], **row} for r, rows in enumerate(ranked) for row in rows])
