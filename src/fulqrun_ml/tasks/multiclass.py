"""Multiclass classification (softmax over K classes) around any multi-output backbone.

Why its own task: a lifecycle stage is one of K outcomes whose probabilities must add up to one, so the
backbone gives K logits, the loss is cross-entropy and the metrics are multiclass log loss, macro-F1 and
accuracy during training; the holdout adds per-class calibration (`tasks/multiclass_metrics.py`). Calibration is
one temperature on the logits, fitted on the validation split (it keeps the argmax, so F1 is unchanged), and
lives inside the exported graph.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from fulqrun_ml.tasks.supervised import OptimizerFactory, SchedulerFactory, SupervisedTask, net_inputs, tensor_inputs

CLASSES_FILE = "classes.json"  # a multiclass run's (and version's) class names, in output order


class MulticlassLogLoss(Metric):
    """Mean cross-entropy of probabilities, accumulated over an epoch like the other torchmetrics."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        picked = probabilities.gather(1, target.long().reshape(-1, 1)).clamp_min(1e-12)
        self.total += -picked.log().sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp_min(1.0)


def multiclass_metrics(prefix: str, num_classes: int) -> MetricCollection:
    return MetricCollection(
        {
            "macro_f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
            "accuracy": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "nll": MulticlassLogLoss(),
        },
        prefix=prefix,
    )


class MulticlassClassificationTask(SupervisedTask):
    """K logits out of the backbone, cross-entropy; validation logs val/log_loss (the loss), macro-F1, accuracy."""

    loss_name = "log_loss"

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        self.num_classes = num_classes  # read by metrics(), which the base constructor calls
        super().__init__(net, optimizer, scheduler)

    def metrics(self, prefix: str) -> MetricCollection:
        return multiclass_metrics(prefix, self.num_classes)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.net(**inputs)  # [N, K]: no squeeze

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(**net_inputs(batch))
        return logits, F.cross_entropy(logits, batch["target"].long())

    def _update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor) -> None:
        probabilities = torch.softmax(logits.float(), dim=-1)
        metrics.update(probabilities, target.long())


def predict_class_logits(net: nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """[N, K] raw logits on encoded arrays (inference mode)."""
    net.eval()
    with torch.inference_mode():
        return net(**tensor_inputs(arrays)).float().numpy()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    weights = np.exp(scaled)
    return weights / weights.sum(axis=1, keepdims=True)


def predict_class_probabilities(net: nn.Module, arrays: dict[str, np.ndarray], temperature: float = 1.0) -> np.ndarray:
    """[N, K] calibrated class probabilities: the PyTorch side of the export parity check."""
    logits = torch.from_numpy(predict_class_logits(net, arrays)) / temperature
    return torch.softmax(logits, dim=-1).numpy()


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the validation log loss of softmax(logits / T) (bounded, 0.05..20)."""
    labels = np.asarray(labels, dtype=int)

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))[np.arange(len(labels)), labels]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
