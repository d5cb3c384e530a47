"""Holdout metrics, one definition for training logs and for reports.

Binary: the same torchmetrics objects score the model, the rep's probability and the oracle, so the numbers
in `reports/run.json` are comparable by construction. Regression (`regression_report`): MAE, RMSE, R^2 and
concordance in the task's own units, for the model and every baseline alike.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import stats
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision, BinaryCalibrationError
from torchmetrics.regression import MeanSquaredError

from fulqrun_ml.errors import FulqrunMLError

ECE_BINS = 15


def binary_metrics(prefix: str = "") -> MetricCollection:
    """AUC, Brier (mean squared error of probabilities), ECE (15 equal-width bins), accuracy at 0.5."""
    return MetricCollection(
        {
            "auc": BinaryAUROC(),
            "brier": MeanSquaredError(),
            "ece": BinaryCalibrationError(n_bins=ECE_BINS, norm="l1"),
            "accuracy": BinaryAccuracy(),
        },
        prefix=prefix,
    )


def update_binary_metrics(metrics: MetricCollection, probs: torch.Tensor, target: torch.Tensor) -> None:
    """Brier wants float targets, the classification metrics want integer ones."""
    for name, metric in metrics.items(keep_base=True):
        metric.update(probs, target.float() if name == "brier" else target.long())


def binary_report(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """All metrics plus log loss for one set of probabilities, as plain floats."""
    p = torch.as_tensor(np.array(probs, dtype=np.float64)).clamp(1e-7, 1 - 1e-7)
    y = torch.as_tensor(np.array(labels, dtype=np.float64))
    metrics = binary_metrics()
    update_binary_metrics(metrics, p.float(), y)
    report = {name: float(value) for name, value in metrics.compute().items()}
    report["log_loss"] = float(torch.nn.functional.binary_cross_entropy(p, y))
    report["n"] = len(y)
    return report


class MetricInputError(FulqrunMLError, ValueError):
    """Scores and labels that no metric can be computed on (mismatched, empty, a single class)."""


def _scores_and_labels(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise MetricInputError(f"probs has {p.size} rows but labels has {y.size}")
    if p.size == 0 or not np.isfinite(p).all():
        raise MetricInputError("probs must be a non-empty array of finite numbers")
    if not np.isin(y, (0.0, 1.0)).all():
        raise MetricInputError("labels must be 0 or 1")
    if y.min() == y.max():
        raise MetricInputError("labels hold a single class: ranking metrics are undefined")
    return p, y


def pr_auc(probs: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve as average precision (the step-wise sum sklearn also uses).

    Unlike ROC AUC it moves with the base rate, which is what a rep working the top of a list feels.
    """
    p, y = _scores_and_labels(probs, labels)
    return float(BinaryAveragePrecision()(torch.tensor(p), torch.tensor(y).long()))


def best_f1_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The probability cut-off with the highest F1 on these rows (call it on validation, apply it on test).

    Returned as the midpoint between the lowest score still predicted positive and the next lower score,
    so `p > t` and `p >= t` give the same predictions on the rows it was chosen on.
    """
    p, y = _scores_and_labels(probs, labels)
    scores = np.unique(p)[::-1]  # distinct scores, high to low: candidate "positive if p >= s" cut-offs
    order = np.argsort(-p, kind="stable")
    ranked_p, ranked_y = p[order], y[order]
    # True positives and predicted positives at each distinct cut-off (all rows with p >= s).
    last_of_score = np.searchsorted(-ranked_p, -scores, side="right") - 1
    tp = np.cumsum(ranked_y)[last_of_score]
    predicted = last_of_score + 1
    f1 = 2 * tp / (predicted + y.sum())
    best = int(np.argmax(f1))
    lower = scores[best + 1] if best + 1 < len(scores) else 0.0
    return float((scores[best] + lower) / 2)


def accuracy_at(probs: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Share of rows classified correctly when `p >= threshold` means positive."""
    p, y = _scores_and_labels(probs, labels)
    return float(np.mean((p >= threshold) == (y == 1)))


def lift_at(probs: np.ndarray, labels: np.ndarray, fraction: float = 0.1) -> float:
    """Win rate among the top `fraction` of rows by score divided by the overall win rate.

    "The deals this model ranks in its top 10% close at lift x the average rate." Ties at the cut are
    broken by row order (stable sort), so the top set always has exactly ceil(fraction * n) rows.
    """
    if not 0 < fraction <= 1:
        raise MetricInputError(f"fraction must be in (0, 1], got {fraction}")
    p, y = _scores_and_labels(probs, labels)
    top = np.argsort(-p, kind="stable")[: int(np.ceil(fraction * len(p)))]
    return float(y[top].mean() / y.mean())


def regression_report(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, R^2 and concordance (Harrell's C without censoring: the share of row pairs the predictions
    order like the targets, 0.5 = no ranking skill) in the target's own units, as plain floats."""
    pred = np.asarray(predictions, dtype=np.float64).reshape(-1)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    if pred.shape != y.shape or pred.size == 0 or not (np.isfinite(pred).all() and np.isfinite(y).all()):
        raise MetricInputError(f"need matching non-empty finite predictions and targets ({pred.size} vs {y.size})")
    errors = pred - y
    total = float(((y - y.mean()) ** 2).sum())
    # Kendall's tau-b via scipy (O(n log n)) gives concordance = (1 + tau) / 2 on untied pairs.
    tau = stats.kendalltau(pred, y).statistic if np.ptp(pred) > 0 and np.ptp(y) > 0 else 0.0
    return {
        "mae": float(np.abs(errors).mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "r2": float(1.0 - (errors**2).sum() / total) if total > 0 else 0.0,
        "concordance": float((1.0 + tau) / 2.0),
        "n": int(y.size),
    }


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """ECE exactly as torchmetrics' BinaryCalibrationError (l1, equal-width bins on the probability), for a
    batch of label vectors at once: `labels` [N] or [D, N] -> [] or [D]. Written with numpy because the
    floor below needs it for hundreds of label draws, which the metric object would do one by one."""
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    y = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    bins = np.clip(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1), p, side="left") - 1, 0, n_bins - 1)
    confidence = np.bincount(bins, weights=p, minlength=n_bins)
    hits = np.stack([np.bincount(bins, weights=row, minlength=n_bins) for row in y])
    ece = np.abs(hits - confidence).sum(axis=1) / len(p)
    return ece if np.ndim(labels) > 1 else ece[0]


def ece_noise_floor(probs: np.ndarray, draws: int = 400, seed: int = 0) -> dict[str, float]:
    """The ECE a *perfectly calibrated* model with these probabilities would show on this many rows: labels
    drawn from the probabilities themselves. An ECE target below this floor cannot be told apart from noise
    on the holdout (e.g. the default deal-win holdout's 2,062 rows put the floor near 0.02)."""
    p = np.clip(np.asarray(probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
    labels = np.random.default_rng(seed).random((draws, p.size)) < p
    eces = expected_calibration_error(p, labels)
    return {"mean": float(eces.mean()), "p90": float(np.quantile(eces, 0.9))}
