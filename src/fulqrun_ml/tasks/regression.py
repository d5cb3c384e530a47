"""Regression as a LightningModule: MSE on the standardised target around any backbone.

The backbone is the same plain nn.Module the binary task uses (one output per row); only the loss and the
metrics differ, so `model=...` works for close timing and user-table regressions unchanged. The datamodule
hands over the target already scaled (`features/target.py`); training metrics (`val/rmse`, `val/mae`) are in
those scaled units, holdout reports (`tasks/metrics.regression_report`) in the task's own units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.binary import OptimizerFactory, SchedulerFactory, predict_logits

# What a regression run can monitor for early stopping / checkpointing (train() checks the callbacks).
MONITORED = ("val/rmse", "val/mae", "val/loss")


def regression_metrics(prefix: str) -> MetricCollection:
    return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError()}, prefix=prefix)


class RegressionTask(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metrics = regression_metrics("val/")
        self.test_metrics = regression_metrics("test/")

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.net(continuous, categorical).squeeze(-1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        prediction = self(batch["continuous"], batch["categorical"])
        return prediction, F.mse_loss(prediction, batch["target"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["target"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, prefix: str) -> None:
        prediction, loss = self._step(batch)
        metrics.update(prediction.float(), batch["target"].float())
        self.log(f"{prefix}loss", loss, prog_bar=True, batch_size=batch["target"].shape[0])

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val/")

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test/")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}


def predict_values(net: torch.nn.Module, arrays: dict[str, np.ndarray], scaling: TargetScaling) -> np.ndarray:
    """Predictions in the task's units (the PyTorch side of the `prediction` export parity check)."""
    return scaling.decode(predict_logits(net, arrays))
