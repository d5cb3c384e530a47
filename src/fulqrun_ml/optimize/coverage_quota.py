"""Territories whose open pipeline cannot reach quota: a Monte Carlo over the Poisson-binomial sum of deal
values, with beta-distributed segment win rates (coverage.py describes the rule; docs/optimize.md the use).

Why Monte Carlo and not a closed form: the bookings of a territory are a sum of *unequal* deal values times
Bernoulli outcomes whose probabilities share a random segment rate; the exact distribution is a convolution
over values that has no convenient form, while a few thousand vectorised draws give the interval and
P(reach quota) to within a percent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from fulqrun_ml.optimize.coverage import CoverageConfig
from fulqrun_ml.optimize.estimates import _logit, _sigmoid
from fulqrun_ml.optimize.problem import OptimizeError

CHUNK_CELLS = 4_000_000  # draws x deals per chunk (float64 probabilities: 32 MB)
MAX_PRIOR_STRENGTH = 1e4  # shrink_rates' "no between-segment signal": the rate is known as well as the prior


def win_probability_draws(
    pipeline: pd.DataFrame,
    rates: pd.DataFrame,
    draws: int,
    rng: np.random.Generator,
    predictions: pd.Series | None = None,
) -> np.ndarray:
    """[draws x deals] win probabilities: the model's (fixed) or the segment posterior's draws + stage shift."""
    if predictions is not None:
        p = predictions.reindex(pipeline["opportunity_id"].astype(str)).to_numpy(dtype=float)
        missing = np.isnan(p)
        if missing.any():
            example = pipeline["opportunity_id"].to_numpy()[missing][0]
            raise OptimizeError("opportunity_id", f"{int(missing.sum())} open deals have no prediction in the "
                                f"predictions file (e.g. {example}); score every open deal")  # fmt: skip
        return np.broadcast_to(p, (draws, len(p)))
    strength = float(rates["strength"].iloc[0]) if len(rates) else MAX_PRIOR_STRENGTH
    strength = strength if np.isfinite(strength) else MAX_PRIOR_STRENGTH
    alpha = rates["wins"].to_numpy(dtype=float) + strength * rates["prior"].to_numpy(dtype=float)
    beta = rates["deals"].to_numpy(dtype=float) - rates["wins"].to_numpy(dtype=float)
    beta = beta + strength * (1.0 - rates["prior"].to_numpy(dtype=float))
    segment_rate = rng.beta(np.clip(alpha, 1e-3, None), np.clip(beta, 1e-3, None), size=(draws, len(rates)))
    column = rates.index.get_indexer(pd.MultiIndex.from_frame(pipeline[["industry", "size"]]))
    prior = float(rates["prior"].iloc[0]) if len(rates) else 0.5
    draws = np.where(column >= 0, segment_rate[:, np.clip(column, 0, None)], prior)
    return _sigmoid(_logit(draws) + pipeline["shift"].to_numpy(dtype=float)[None, :])


def quota_risk(
    pipeline: pd.DataFrame,
    reps: pd.DataFrame,
    rates: pd.DataFrame,
    cfg: CoverageConfig,
    predictions: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per territory: open deals and value, bookings (expected and interval), quota, quota gap (and
    interval), P(reach quota), rank (lowest chance first)."""
    rep_index = pd.Index(reps["rep_id"])
    column = rep_index.get_indexer(pipeline["territory"])
    if (column < 0).any():
        raise OptimizeError("current_rep", "an open deal's account is owned by a rep not in the reps table")
    value = pipeline["value"].to_numpy(dtype=float)
    to_rep = csr_matrix((value, (np.arange(len(pipeline)), column)), shape=(len(pipeline), len(rep_index)))
    # Draws in chunks of at most CHUNK_CELLS draws x deals, so a 50k-account book stays within memory.
    rate_rng, outcome_rng = np.random.default_rng(cfg.seed), np.random.default_rng([cfg.seed, 1])
    chunk = max(1, min(cfg.draws, CHUNK_CELLS // max(len(pipeline), 1)))
    bookings, p_sum = np.empty((cfg.draws, len(rep_index))), np.zeros(len(pipeline))
    for start in range(0, cfg.draws, chunk):
        p = win_probability_draws(pipeline, rates, min(chunk, cfg.draws - start), rate_rng, predictions)
        won = outcome_rng.uniform(size=p.shape) < p
        bookings[start : start + len(p)] = np.asarray((to_rep.T @ won.T.astype(float)).T)  # [draws x reps]
        p_sum += p.sum(axis=0)
    expected = np.asarray(to_rep.T @ (p_sum / cfg.draws)).ravel()
    if cfg.quota is not None:
        quota = np.full(len(rep_index), float(cfg.quota))
        source = "config"
    elif "quota" in reps:
        quota = pd.to_numeric(reps["quota"], errors="coerce").to_numpy(dtype=float)
        if not (np.isfinite(quota) & (quota > 0)).all():
            raise OptimizeError("quota", "every rep's quota must be a positive number")
        source = "reps.quota"
    else:
        quota = np.full(len(rep_index), expected.sum() / len(rep_index) * cfg.quota_share)
        source = f"equal share x {cfg.quota_share}"
    tail = (1.0 - cfg.interval) / 2.0
    low, high = np.quantile(bookings, [tail, 1.0 - tail], axis=0)
    table = pd.DataFrame(
        {
            "rep_id": rep_index.to_numpy(),
            "open_deals": np.bincount(column, minlength=len(rep_index)),
            "open_value": np.bincount(column, value, minlength=len(rep_index)),
            "expected_bookings": expected,
            "bookings_low": low,
            "bookings_high": high,
            "quota": quota,
            "quota_source": source,
            "quota_gap": quota - expected,
            "quota_gap_low": quota - high,
            "quota_gap_high": quota - low,
            "p_reach_quota": (bookings >= quota[None, :]).mean(axis=0),
        }
    )
    table = table.sort_values(["p_reach_quota", "quota_gap"], ascending=[True, False], kind="stable")
    return table.assign(rank=np.arange(1, len(table) + 1)).reset_index(drop=True)
