"""Kaplan-Meier baselines of close timing: the pooled curve and one curve per stage, fitted on the training split.

The survival analogue of the regression task's "median days to close per stage": a model that knows only the
stage a deal is in. The estimator is statsmodels' `SurvfuncRight` (a maintained implementation; hand-written only
is the step lookup at our bin edges). A stage never seen in training gets the pooled curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from statsmodels.duration.survfunc import SurvfuncRight


def km_cdf_at(durations: np.ndarray, events: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The Kaplan-Meier P(closed by e_k) at the right edges e_1..e_K [K] (a right-continuous step function)."""
    d = np.asarray(durations, dtype=np.float64)
    ev = np.asarray(events, dtype=np.float64)
    if d.size == 0:
        raise ValueError("Kaplan-Meier needs at least one row")
    if ev.sum() == 0:  # no event: S = 1 everywhere (statsmodels needs an event to fit)
        return np.zeros(len(edges) - 1)
    fit = SurvfuncRight(d, ev)
    times, surv = np.asarray(fit.surv_times), np.asarray(fit.surv_prob)
    at = np.searchsorted(times, edges[1:], side="right") - 1
    return 1.0 - np.where(at >= 0, surv[np.maximum(at, 0)], 1.0)


@dataclass
class StageKaplanMeier:
    """Pooled and per-stage KM curves on a bin grid; `predict` gives each row its stage's curve."""

    edges: np.ndarray
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    by_stage: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, edges: np.ndarray, stage_column: str = "stage_index") -> StageKaplanMeier:
        d, ev = frame["duration_days"].to_numpy(), frame["label"].to_numpy()
        by_stage = {
            int(stage): km_cdf_at(group["duration_days"].to_numpy(), group["label"].to_numpy(), edges)
            for stage, group in frame.groupby(stage_column)
        }
        return cls(np.asarray(edges, dtype=np.float64), km_cdf_at(d, ev, edges), by_stage)

    def predict(self, frame: pd.DataFrame, stage_column: str = "stage_index") -> np.ndarray:
        """Per-stage curves [N, K]."""
        rows = [self.by_stage.get(int(s), self.pooled) for s in frame[stage_column].to_numpy()]
        return np.vstack(rows) if rows else np.zeros((0, len(self.edges) - 1))

    def predict_pooled(self, n: int) -> np.ndarray:
        return np.tile(self.pooled, (n, 1))

    def to_record(self) -> dict:
        return {"pooled": self.pooled.tolist(), "by_stage": {str(k): v.tolist() for k, v in self.by_stage.items()}}

    @classmethod
    def from_record(cls, record: dict, edges: np.ndarray) -> StageKaplanMeier:
        return cls(
            np.asarray(edges, dtype=np.float64),
            np.asarray(record["pooled"], dtype=np.float64),
            {int(k): np.asarray(v, dtype=np.float64) for k, v in record["by_stage"].items()},
        )
