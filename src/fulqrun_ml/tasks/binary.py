"""Binary classification around any backbone (one logit per row): the loss and metrics on top of
`SupervisedTask`, and the PyTorch-side predictions that export parity checks compare against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from fulqrun_ml.tasks.calibration import calibrator_from_record
from fulqrun_ml.tasks.metrics import binary_metrics, update_binary_metrics
from fulqrun_ml.tasks.supervised import (
    OptimizerFactory,
    SchedulerFactory,
    SupervisedTask,
    net_inputs,
    tensor_inputs,
)

__all__ = [
    "BinaryClassificationTask",
    "OptimizerFactory",
    "SchedulerFactory",
    "predict_logits",
    "predict_probabilities",
]


class BinaryClassificationTask(SupervisedTask):
    """Logits out of the backbone, binary cross-entropy, AUC / log loss / Brier / ECE / accuracy."""

    loss_name = "log_loss"

    def metrics(self, prefix: str) -> MetricCollection:
        return binary_metrics(prefix)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(**net_inputs(batch))
        return logits, F.binary_cross_entropy_with_logits(logits, batch["target"])

    def _update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor) -> None:
        update_binary_metrics(metrics, torch.sigmoid(logits), target)


def predict_logits(net: torch.nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Raw logits of a backbone on encoded arrays (inference mode, no gradients)."""
    net.eval()
    with torch.inference_mode():
        logits = net(**tensor_inputs(arrays))
    return logits.squeeze(-1).float().numpy()


def predict_probabilities(
    net: torch.nn.Module, arrays: dict[str, np.ndarray], calibration: float | dict[str, Any] = 1.0
) -> np.ndarray:
    """Calibrated probabilities, the PyTorch side of the export parity check. `calibration` is a temperature
    T (sigmoid(logit / T)) or a calibration.json record (temperature or isotonic)."""
    if isinstance(calibration, float | int):
        calibration = {"method": "temperature", "temperature": float(calibration)}
    calibrator = calibrator_from_record(calibration).eval()
    logits = torch.from_numpy(predict_logits(net, arrays)).reshape(-1, 1)
    with torch.inference_mode():
        return calibrator(logits).reshape(-1).numpy()
