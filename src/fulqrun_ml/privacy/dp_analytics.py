"""Differentially private cross-organisation segment win rates (Laplace mechanism).

WHY hand-written: opacus (the DP library installed here) only privatises SGD; it has no
aggregate-query mechanisms, and the Laplace mechanism on a histogram is a few lines whose
sensitivity we must state ourselves anyway.

Sensitivity: neighbouring datasets differ by one deal. A deal belongs to exactly one segment,
so it changes that segment's deal count by 1 and its win count by at most 1: the L1
sensitivity of the released (counts, wins) vector is 2. Adding Laplace(2/epsilon) noise to
every count and win count is epsilon-DP for the whole table (parallel composition over the
disjoint segments). Win rates are post-processing of the noisy counts, so they cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

L1_SENSITIVITY = 2.0


class DPAnalyticsError(ValueError):
    """Bad input to a DP aggregate, with the offending field named."""


def dp_segment_win_rates(
    frame: pd.DataFrame,
    segment_col: str,
    won_col: str,
    epsilon: float,
    rng: np.random.Generator,
    segments: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-segment deal count, win count and win rate, each released with epsilon-DP Laplace noise.

    ``segments`` should be the public list of segments (e.g. the vocabulary): taking it from the
    data would leak which segments exist. Noisy counts are clipped to >= 1 only for the rate.
    """
    if not np.isfinite(epsilon) or epsilon <= 0:
        raise DPAnalyticsError(f"epsilon must be a positive finite number, got {epsilon!r}")
    for col in (segment_col, won_col):
        if col not in frame.columns:
            raise DPAnalyticsError(f"column {col!r} missing from the input frame")
    won = frame[won_col]
    bad = ~won.isin([0, 1, True, False])
    if bad.any():
        raise DPAnalyticsError(f"column {won_col!r} must be 0/1, row {int(np.flatnonzero(bad.to_numpy())[0])} is not")
    keys = list(segments) if segments is not None else sorted(frame[segment_col].astype(str).unique())
    grouped = frame.assign(_w=won.astype(int)).groupby(frame[segment_col].astype(str))["_w"]
    counts = grouped.count().reindex(keys, fill_value=0).to_numpy(dtype=float)
    wins = grouped.sum().reindex(keys, fill_value=0).to_numpy(dtype=float)
    scale = L1_SENSITIVITY / epsilon
    noisy_counts = counts + rng.laplace(0.0, scale, size=len(keys))
    noisy_wins = wins + rng.laplace(0.0, scale, size=len(keys))
    rate = np.clip(noisy_wins, 0.0, None) / np.clip(noisy_counts, 1.0, None)
    return pd.DataFrame(
        {
            "segment": keys,
            "deals": noisy_counts,
            "wins": noisy_wins,
            "win_rate": np.clip(rate, 0.0, 1.0),
            "epsilon": epsilon,
        }
    )
