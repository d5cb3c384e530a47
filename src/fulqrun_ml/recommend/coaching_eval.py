"""Coaching against the simulator's true rep x stage skills: Spearman rank correlation, next to raw win rates.

Per stage, reps are ranked by the estimate and by the truth (`CoachingWorld.skill_effect`); the score is the
mean over the four stages of Spearman's rho. Three estimates share the ranking: the raw conversion rate (the
baseline: unadjusted, unshrunk), the mix-adjusted but unshrunk effect, and the adjusted, shrunk effect (ours).
A rank correlation weights every rep alike, so the small reps - where shrinkage matters - count fully.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from fulqrun_ml.data.simulator_coaching import CoachingWorld
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.recommend.coaching import CoachingConfig, fit_stage_effects

ESTIMATES = {"raw_win_rate": "raw_rate", "adjusted_unshrunk": "unshrunk_effect", "adjusted_shrunk": "effect"}


def evaluate_coaching(world: CoachingWorld, config: CoachingConfig) -> dict:
    """Mean over stages of Spearman(estimate, truth) for each estimate, plus the fitted tau^2 vs the true one."""
    effects = fit_stage_effects(world.deals, config)
    cells = effects.cells
    truth = world.skill_effect.stack()
    cells = cells.assign(truth=truth.reindex(list(zip(cells["rep_id"], cells["stage"], strict=True))).to_numpy())
    out: dict = {"tau2_fitted": effects.tau2, "n_cells": len(cells),
                 "deals_per_cell_median": float(cells["n"].median())}  # fmt: skip
    for name, column in ESTIMATES.items():
        rhos = {stage: float(stats.spearmanr(group[column], group["truth"]).statistic)
                for stage, group in cells.groupby("stage") if len(group) > 2}  # fmt: skip
        out[name] = {"spearman_mean_over_stages": float(np.mean(list(rhos.values()))),
                     "per_stage": {stage: rhos[stage] for stage in OPEN_STAGES if stage in rhos}}  # fmt: skip
    return out
