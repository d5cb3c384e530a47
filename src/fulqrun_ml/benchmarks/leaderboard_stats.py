"""The statistics the leaderboard judges its claims with.

A single training run cannot say whether "TabM 0.7531 >= LightGBM 0.7510" is real: a second seed or a second
holdout of the same size moves AUC by about as much. So every claim is judged on two intervals:
- over training seeds: the mean of a metric and its 95% t-interval (n seeds, n - 1 degrees of freedom);
- over holdout rows: a paired percentile bootstrap of the difference between two rows. Each resample draws
  holdout rows with replacement and scores *both* rows on the same draw, so the rows' shared difficulty cancels
  and only the difference between the models varies. A resample is a vector of counts per row
  (multinomial), so every metric here is written with row weights; resample 0 is all ones (the point estimate).
  A row trained with several seeds is the seed-mean of its metric on each resample.
A claim is "met" when its interval lies on the good side, "not met" when it lies on the bad side, and
"inconclusive" when it spans the line. Choices (best network, best baseline) use the validation metric only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 1000
BOOTSTRAP_SEED = 0
BLOCK = 128  # resamples per AUC pass: memory O(BLOCK * rows)
CHUNK = 1024  # event rows per concordance pass: memory O(CHUNK * rows)
MET, NOT_MET, INCONCLUSIVE = "met", "not met", "inconclusive"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Mean, standard deviation and the t-interval of the mean over seeds (no interval from one value)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": int(x.size)}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * std / np.sqrt(x.size)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": int(x.size)}


def bootstrap_counts(rows: int, resamples: int = RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """[resamples + 1, rows] row counts: row 0 is the holdout itself (all ones), then multinomial resamples."""
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(rows, np.full(rows, 1.0 / rows), size=resamples)
    return np.vstack([np.ones((1, rows), dtype=np.int64), drawn]).astype(np.float64)


def _blocks(counts: np.ndarray) -> list[np.ndarray]:
    return [counts[i : i + BLOCK] for i in range(0, counts.shape[0], BLOCK)]


def weighted_auc(scores: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC per resample: the weighted share of (positive, negative) pairs ranked right, ties counting 1/2
    (the Mann-Whitney form; all-ones counts give scikit-learn's roc_auc_score). O(resamples * rows)."""
    order = np.argsort(np.asarray(scores, dtype=np.float64), kind="mergesort")
    s = np.asarray(scores, dtype=np.float64)[order]
    positive = np.asarray(labels)[order] > 0.5
    first = np.r_[True, s[1:] != s[:-1]]
    group = np.cumsum(first) - 1
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], s.size]
    out = []
    for block in _blocks(counts[:, order]):
        neg = block * ~positive
        pos = block * positive
        cum = np.concatenate([np.zeros((block.shape[0], 1)), np.cumsum(neg, axis=1)], axis=1)
        below = cum[:, starts[group]]
        tied = cum[:, ends[group]] - below
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        out.append((pos * (below + 0.5 * tied)).sum(axis=1) / np.where(pairs > 0, pairs, np.nan))
    return np.concatenate(out)


def weighted_mean(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The mean of a per-row quantity (squared error, Brier score, ...) on each resample."""
    return counts @ np.asarray(values, dtype=np.float64) / counts.sum(axis=1)


def weighted_concordance(
    predicted_times: Sequence[np.ndarray], durations: np.ndarray, events: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """Harrell's C per resample (as `tasks.survival_metrics.harrell_concordance`), averaged over prediction
    sets (seeds). Comparable pairs depend only on the labels, so the seed-mean of C on a resample is
    c'K̄c / c'Lc with K̄ the seed-mean concordance matrix; built CHUNK event rows at a time."""
    d = np.asarray(durations, dtype=np.float64)
    times = [np.asarray(t, dtype=np.float64) for t in predicted_times]
    c = counts.astype(np.float32)
    numerator = np.zeros(c.shape[0])
    denominator = np.zeros(c.shape[0])
    events_at = np.flatnonzero(np.asarray(events).astype(bool))
    for start in range(0, events_at.size, CHUNK):
        i = events_at[start : start + CHUNK]
        comparable = d[None, :] > d[i, None]  # [chunk, N]: j closes (or is censored) after i's observed close
        concordant = np.zeros(comparable.shape, dtype=np.float32)
        for p in times:
            concordant += comparable & (p[i, None] < p[None, :])
            concordant += 0.5 * (comparable & (p[i, None] == p[None, :]))
        concordant /= len(times)
        numerator += (c[:, i] * (c @ concordant.T)).sum(axis=1, dtype=np.float64)
        denominator += (c[:, i] * (c @ comparable.T.astype(np.float32))).sum(axis=1, dtype=np.float64)
    return numerator / np.where(denominator > 0, denominator, np.nan)


def paired_difference(a: np.ndarray, b: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Difference a - b (and ratio a / b) on the full holdout (resample 0) with percentile intervals over the
    paired resamples (1..B) of the same rows."""
    tail = (1 - confidence) / 2
    diff, ratio = a - b, a / b
    return {
        "diff": float(diff[0]),
        "ci95": [float(v) for v in np.nanquantile(diff[1:], [tail, 1 - tail])],
        "ratio": float(ratio[0]),
        "ratio_ci95": [float(v) for v in np.nanquantile(ratio[1:], [tail, 1 - tail])],
        "resamples": int(a.size - 1),
    }


def judge_difference(ci: Sequence[float] | None, greater_is_better: bool) -> str:
    """ "a at least as good as b" on the interval of a - b: met when the whole interval favours a, not met when
    it all favours b, inconclusive when it spans 0 (or there is no interval)."""
    if ci is None:
        return INCONCLUSIVE
    lo, hi = (ci[0], ci[1]) if greater_is_better else (-ci[1], -ci[0])
    return MET if lo > 0 else NOT_MET if hi < 0 else INCONCLUSIVE


def judge_threshold(ci: Sequence[float] | None, target: float, greater_is_better: bool) -> str:
    """A value against a fixed target (ECE <= 0.02, AUC ratio >= 0.97) on its interval."""
    if ci is None:
        return INCONCLUSIVE
    lo, hi = ci[0], ci[1]
    if greater_is_better:
        return MET if lo >= target else NOT_MET if hi < target else INCONCLUSIVE
    return MET if hi <= target else NOT_MET if lo > target else INCONCLUSIVE


def select_best(rows: Sequence[dict[str, Any]], metric: str, greater_is_better: bool) -> dict[str, Any] | None:
    """The row with the best *validation* metric (`val_<metric>`): choosing on the holdout would make the
    holdout's comparison optimistic for whatever was chosen. None when there is no row."""
    if not rows:
        return None
    key = f"val_{metric}"
    missing = [r["name"] for r in rows if r.get(key) is None]
    if missing:
        raise ValueError(f"rows {missing} have no {key}: the leaderboard chooses on validation only")
    return (max if greater_is_better else min)(rows, key=lambda r: r[key])
