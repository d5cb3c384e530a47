"""When does a deal that will be won close? Per-stage cumulative incidence of a won close (Aalen-Johansen).

Why not the close-timing Kaplan-Meier curve (`tasks/kaplan_meier.py`) times P(win): on the simulator (and in
B2B sales) lost deals close early and won deals late, so win and timing are not independent; multiplying the
all-closes curve by P(win) put ~40% too much won revenue in the first period of a backtest. Treating the close as
two competing events (won, lost) and reading the won one's cumulative incidence F_won(t) gives
P(close in period k | won) = (F_won(e_k) - F_won(e_{k-1})) / F_won(t_max), still from censored snapshots (deals
open at the origin are censored there), which the deal's own P(win) then scales.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


def won_cumulative_incidence(durations: np.ndarray, closed: np.ndarray, won: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Aalen-Johansen F_won at times `at`: sum over event times t_j <= at of S(t_j-) * d_won_j / n_j, with S the
    all-closes Kaplan-Meier survival and n_j the rows still open (not closed, not censored) just before t_j."""
    d = np.asarray(durations, dtype=np.float64)
    closed = np.asarray(closed, dtype=bool)
    won = np.asarray(won, dtype=bool) & closed
    if not closed.any():
        return np.zeros(len(at))
    times, inverse = np.unique(d[closed], return_inverse=True)
    events = np.bincount(inverse, minlength=len(times)).astype(np.float64)
    wins = np.bincount(inverse, weights=won[closed].astype(np.float64), minlength=len(times))
    order = np.sort(d)
    at_risk = len(d) - np.searchsorted(order, times, side="left")  # rows with duration >= t_j
    hazard = events / at_risk
    survival_before = np.concatenate([[1.0], np.cumprod(1.0 - hazard)[:-1]])
    cif = np.cumsum(survival_before * wins / at_risk)
    idx = np.searchsorted(times, np.asarray(at, dtype=np.float64), side="right") - 1
    return np.where(idx >= 0, cif[np.maximum(idx, 0)], 0.0)


def _conditional(frame: pd.DataFrame, edges: np.ndarray) -> np.ndarray:
    d, closed, won = (frame[c].to_numpy() for c in ("duration_days", "label", "won"))
    cif = won_cumulative_incidence(d, closed > 0, won, np.append(edges, d.max() if len(d) else 0.0))
    total = cif[-1]
    if total <= 0:
        return np.zeros(len(edges) - 1)
    return np.clip(np.diff(cif[:-1]) / total, 0.0, 1.0)


@dataclass
class WonTimingCurves:
    """P(close in period k | won) per stage on the period grid `edges` (days after the origin); a stage never
    seen gets the pooled curve."""

    edges: np.ndarray
    pooled: np.ndarray = field(default_factory=lambda: np.zeros(0))
    by_stage: dict[int, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, frame: pd.DataFrame, edges: np.ndarray) -> WonTimingCurves:
        """`frame`: duration_days (to the close or the censoring), label (1 closed), won, stage_index."""
        edges = np.asarray(edges, dtype=np.float64)
        by_stage = {int(s): _conditional(g, edges) for s, g in frame.groupby("stage_index")}
        return cls(edges, _conditional(frame, edges), by_stage)

    def predict(self, stage_index: np.ndarray) -> np.ndarray:
        """[N, H + 1]: P(close in 1..H | won), then P(later | won)."""
        rows = [self.by_stage.get(int(s), self.pooled) for s in stage_index]
        inside = np.vstack(rows) if rows else np.zeros((0, len(self.edges) - 1))
        return np.concatenate([inside, np.clip(1.0 - inside.sum(axis=1, keepdims=True), 0.0, 1.0)], axis=1)
