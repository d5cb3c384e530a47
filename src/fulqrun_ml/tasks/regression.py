"""Regression as a LightningModule: MSE on the standardised target around any backbone.

The backbone is the same plain nn.Module the binary task uses (one output per row); only the loss and the
metrics differ, so `model=...` works for close timing and user-table regressions unchanged. The datamodule
hands over the target already scaled (`features/target.py`); training metrics (`val/rmse`, `val/mae`) are in
those scaled units, holdout reports (`tasks/metrics.regression_report`) in the task's own units.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.binary import predict_logits
from fulqrun_ml.tasks.supervised import SupervisedTask, net_inputs

# What a regression run can monitor for early stopping / checkpointing (train() checks the callbacks).
MONITORED = ("val/rmse", "val/mae", "val/loss")


def regression_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}, prefix=prefix)


class RegressionTask(SupervisedTask):
    """One value per row out of the backbone, MSE on the standardised target, RMSE / MAE."""

    loss_name = "loss"

    def metrics(self, prefix: str) -> MetricCollection:
        return regression_metrics(prefix)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        prediction = self(**net_inputs(batch))
        return prediction, F.mse_loss(prediction, batch["target"])

    def _update_metrics(self, metrics: MetricCollection, prediction: torch.Tensor, target: torch.Tensor) -> None:
        metrics.update(prediction.float(), target.float())


def predict_values(net: torch.nn.Module, arrays: dict[str, np.ndarray], scaling: TargetScaling) -> np.ndarray:
    """Predictions in the task's units (the PyTorch side of the `prediction` export parity check)."""
    return scaling.decode(predict_logits(net, arrays))
