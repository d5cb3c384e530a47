"""Live model performance: predictions joined to outcomes, rolling metrics, and estimates before labels exist.

A deal's outcome is known only when it closes, often months after it was scored. So each prediction is
joined to the outcome of its entity only if it was made *before* the close (a score produced after the
close could have seen the answer), and a week's realised AUC / log loss / Brier / ECE fill in slowly.

Until they do, confidence-based performance estimation (CBPE, as NannyML does it) reads the expected
metrics off the calibrated probabilities alone: if p is calibrated, the label is Bernoulli(p), so expected
accuracy at a threshold t is mean(p if p >= t else 1 - p), expected Brier mean(p (1 - p)), expected log loss
the mean binary entropy, expected ECE the ECE noise floor, and expected AUC the mean AUC over label draws
(also NannyML's closed form from the expected ROC curve). Once labels arrive, `compare_estimates` says how
far off the estimate was. The estimate is only as good as the calibration: a gap is itself an alarm.

ECE is reported against its noise floor (`tasks.metrics.ece_noise_floor`, the leaderboard's, plus a p99): the
ECE a perfectly calibrated model shows on this many rows, so a small week is not mistaken for decay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import integrate, stats

from fulqrun_ml.monitoring.drift import MonitoringInputError, window_groups
from fulqrun_ml.tasks.metrics import ECE_BINS, expected_calibration_error

PROB_CLIP = 1e-7  # as tasks.metrics.binary_report, so log losses agree with the leaderboard's


@dataclass(frozen=True)
class JoinColumns:
    """Column names of the prediction log and of the outcomes table (the defaults are the prediction log's)."""

    entity: str = "entity_id"
    predicted_at: str = "predicted_at"
    probability: str = "probability"
    closed_at: str = "closed_at"
    label: str = "won"


@dataclass(frozen=True)
class JoinSummary:
    predictions: int
    labelled: int
    unresolved: int  # entity not closed yet: CBPE only
    after_close_dropped: int  # made at or after the close: leak, excluded


def _require(frame: pd.DataFrame, columns: Sequence[str], which: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise MonitoringInputError(column, f"missing column in the {which}")


def join_outcomes(
    predictions: pd.DataFrame, outcomes: pd.DataFrame, columns: JoinColumns = JoinColumns()
) -> tuple[pd.DataFrame, JoinSummary]:
    """Predictions with a `label` column (1 won, 0 lost, NaN unresolved); post-close predictions dropped."""
    c = columns
    _require(predictions, [c.entity, c.predicted_at, c.probability], "predictions")
    _require(outcomes, [c.entity, c.closed_at, c.label], "outcomes")
    if outcomes[c.entity].duplicated().any():
        dup = outcomes.loc[outcomes[c.entity].duplicated(), c.entity].iloc[0]
        raise MonitoringInputError(c.entity, f"outcomes hold more than one row for entity {dup!r}")
    probs = pd.to_numeric(predictions[c.probability], errors="coerce")
    if probs.isna().any() or ((probs < 0) | (probs > 1)).any():
        raise MonitoringInputError(c.probability, "must be numbers in [0, 1]")
    raw = outcomes[c.label]
    if raw.dtype == object or pd.api.types.is_string_dtype(raw):  # CSV round trips write "True"/"False"
        raw = raw.astype(str).str.strip().str.lower().map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0})
    labels = pd.to_numeric(raw, errors="coerce").astype("float64")
    if not labels.isin([0.0, 1.0]).all():
        raise MonitoringInputError(c.label, "must be 0/1 or true/false")
    out = outcomes[[c.entity]].assign(_closed_at=_times(outcomes[c.closed_at], c.closed_at), _label=labels.values)
    joined = predictions.assign(_predicted_at=_times(predictions[c.predicted_at], c.predicted_at))
    joined = joined.merge(out, on=c.entity, how="left")
    after_close = joined["_closed_at"].notna() & (joined["_predicted_at"] >= joined["_closed_at"])
    joined = joined.loc[~after_close].reset_index(drop=True)
    joined["label"] = joined["_label"]
    joined = joined.drop(columns=["_label", "_closed_at", "_predicted_at"])
    labelled = int(joined["label"].notna().sum())
    summary = JoinSummary(len(predictions), labelled, len(joined) - labelled, int(after_close.sum()))
    return joined, summary


def _times(values: pd.Series, column: str) -> pd.Series:
    times = pd.to_datetime(values, utc=True, errors="coerce")
    if times.isna().any():
        raise MonitoringInputError(column, f"{int(times.isna().sum())} values are not timestamps")
    return times


def rank_auc(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ROC AUC by the Mann-Whitney rank formula (ties count half), for one label vector [N] or many [D, N]."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    ranks = stats.rankdata(p)
    n_pos = y.sum(axis=1)
    n_neg = y.shape[1] - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (y @ ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return auc if np.ndim(labels) > 1 else auc[0]


def calibration_curve(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Equal-width bins (the ECE's own): range, rows, mean predicted probability and observed win rate."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, probs, side="left") - 1, 0, n_bins - 1)
    curve = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            curve.append(
                {
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "n": int(mask.sum()),
                    "mean_probability": float(probs[mask].mean()),
                    "win_rate": float(labels[mask].mean()),
                }
            )
    return curve


def ece_floor(probs: np.ndarray, draws: int = 400, seed: int = 0) -> dict[str, float]:
    """`tasks.metrics.ece_noise_floor` (the leaderboard's: same draws, same mean and p90) plus its p99."""
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
    labels = np.random.default_rng(seed).random((draws, p.size)) < p
    eces = expected_calibration_error(p, labels)
    return {"mean": float(eces.mean()), "p90": float(np.quantile(eces, 0.9)), "p99": float(np.quantile(eces, 0.99))}


def realised_metrics(probs: np.ndarray, labels: np.ndarray, noise_floor_draws: int = 400) -> dict[str, Any]:
    """AUC (None with a single class), log loss, Brier, accuracy at 0.5, ECE with its noise floor, the curve."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    y = np.asarray(labels, dtype=np.float64)
    if p.size == 0:
        raise MonitoringInputError("label", "no labelled predictions")
    auc = float(rank_auc(p, y)) if 0 < y.sum() < y.size else None
    ece = float(expected_calibration_error(p, y))
    floor = ece_floor(p, draws=noise_floor_draws)
    return {
        "n": int(y.size),
        "auc": auc,
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": float(np.mean((p - y) ** 2)),
        "accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "ece": ece,
        "ece_noise_floor": floor["mean"],
        "ece_noise_floor_p90": floor["p90"],
        "ece_noise_floor_p99": floor["p99"],
        # > 0: an ECE a perfectly calibrated model shows in under 1% of weeks. p99 rather than p90 because
        # weeks x segments make many looks: at p90 + 0.02, 2-3% of calibrated weeks of 100-200 rows would page.
        "ece_excess": ece - floor["p99"],
        "win_rate": float(y.mean()),
        "mean_probability": float(p.mean()),
        "calibration_curve": calibration_curve(p, y),
    }


def expected_auc_closed_form(probs: np.ndarray) -> float:
    """NannyML's CBPE AUC: the area under the expected ROC curve, TPR(t) = sum_{p>=t} p / sum p and
    FPR(t) = sum_{p>=t} (1 - p) / sum (1 - p). A ratio of expectations, close to the Monte Carlo mean."""
    p = np.sort(np.asarray(probs, dtype=np.float64))[::-1]
    tpr = np.concatenate([[0.0], np.cumsum(p) / p.sum()])
    fpr = np.concatenate([[0.0], np.cumsum(1 - p) / (1 - p).sum()])
    return float(integrate.trapezoid(tpr, fpr))


def estimate_performance(
    probs: np.ndarray, draws: int = 200, threshold: float = 0.5, seed: int = 0
) -> dict[str, float]:
    """CBPE: metrics expected if the probabilities are calibrated, with a 90% band for AUC from label draws."""
    p = np.clip(np.asarray(probs, dtype=np.float64), PROB_CLIP, 1 - PROB_CLIP)
    if p.size == 0:
        raise MonitoringInputError("probability", "no predictions to estimate from")
    labels = np.random.default_rng(seed).random((draws, p.size)) < p
    aucs = rank_auc(p, labels)
    aucs = aucs[np.isfinite(aucs)]  # a draw with a single class has no AUC
    floor = ece_floor(p, draws=draws, seed=seed)
    return {
        "n": int(p.size),
        "auc": float(aucs.mean()) if aucs.size else float("nan"),
        "auc_p05": float(np.quantile(aucs, 0.05)) if aucs.size else float("nan"),
        "auc_p95": float(np.quantile(aucs, 0.95)) if aucs.size else float("nan"),
        "auc_closed_form": expected_auc_closed_form(p),
        "accuracy": float(np.mean(np.where(p >= threshold, p, 1 - p))),
        "brier": float(np.mean(p * (1 - p))),
        "log_loss": float(-np.mean(p * np.log(p) + (1 - p) * np.log(1 - p))),
        "ece": floor["mean"],
        "win_rate": float(p.mean()),
    }


COMPARED = ("auc", "accuracy", "brier", "log_loss", "win_rate")


def compare_estimates(estimated: dict[str, float], realised: dict[str, Any]) -> dict[str, Any]:
    """How far the pre-label estimate was from the realised metric: realised - estimated, per metric."""
    errors = {
        m: float(realised[m] - estimated[m])
        for m in COMPARED
        if realised.get(m) is not None and np.isfinite(estimated.get(m, np.nan))
    }
    inside = realised.get("auc") is not None and estimated["auc_p05"] <= realised["auc"] <= estimated["auc_p95"]
    return {"error": errors, "abs_error": {m: abs(v) for m, v in errors.items()}, "auc_within_band": bool(inside)}


@dataclass(frozen=True)
class WindowPerformance:
    window_start: str
    window_end: str
    segment: str
    n: int
    n_labelled: int
    estimated: dict[str, float]
    realised: dict[str, Any] | None = None  # None while fewer than min_samples labels have arrived
    comparison: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def performance_by_window(
    joined: pd.DataFrame,
    frequency: str = "W-SUN",
    segment_column: str | None = None,
    columns: JoinColumns = JoinColumns(),
    min_samples: int = 100,
    noise_floor_draws: int = 400,
    cbpe_draws: int = 200,
) -> list[WindowPerformance]:
    """Per prediction-time window, and per segment value ("all" first): CBPE on every prediction, realised
    metrics and the estimate's error once `min_samples` of the window's predictions have outcomes."""
    if segment_column is not None:
        _require(joined, [segment_column], "predictions")
    results = []
    for start, end, rows in window_groups(joined, columns.predicted_at, frequency):
        segments = [("all", rows)]
        if segment_column is not None:
            segments += [(str(k), g) for k, g in rows.groupby(rows[segment_column].astype(str), sort=True)]
        for name, seg in segments:
            probs = seg[columns.probability].to_numpy(dtype=np.float64)
            estimated = estimate_performance(probs, draws=cbpe_draws)
            labelled = seg[seg["label"].notna()]
            realised = comparison = None
            if len(labelled) >= min_samples:
                realised = realised_metrics(
                    labelled[columns.probability].to_numpy(dtype=np.float64),
                    labelled["label"].to_numpy(dtype=np.float64),
                    noise_floor_draws,
                )
                comparison = compare_estimates(estimated, realised)
            results.append(
                WindowPerformance(start, end, name, len(seg), len(labelled), estimated, realised, comparison)
            )
    return results


def performance_to_dict(windows: list[WindowPerformance], summary: JoinSummary) -> dict[str, Any]:
    """JSON-ready: the join counts, every window, and the mean absolute CBPE error over compared windows."""
    compared = [w.comparison["abs_error"] for w in windows if w.comparison]
    mean_abs = {
        m: float(np.mean([c[m] for c in compared if m in c])) for m in COMPARED if any(m in c for c in compared)
    }
    return {"join": asdict(summary), "windows": [asdict(w) for w in windows], "cbpe_mean_abs_error": mean_abs}
