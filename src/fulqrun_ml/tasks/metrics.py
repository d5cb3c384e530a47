"""Binary-classification metrics, one definition for training logs and for reports.

The same torchmetrics objects score the model, the rep's probability and the oracle, so the numbers
in `reports/run.json` are comparable by construction.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryCalibrationError
from torchmetrics.regression import MeanSquaredError

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
