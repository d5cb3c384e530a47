"""What every supervised task shares as a LightningModule: the backbone, optimisation, and the
validation/test loops that update a torchmetrics collection and log it once per epoch.

A task (binary.py, regression.py) adds only its loss (`_step`), how predictions update its metrics
(`_update_metrics`) and the names of both; the backbone and optimizer factory arrive from Hydra, so
`model=...` swaps networks without touching a task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import MetricCollection

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
TARGET = "target"  # the one batch key that is not a network input


def net_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A batch's network inputs: every key but the target. Batch keys are the backbone's keyword arguments and
    the exported graph's input names, so no task lists them and a new input needs no task change."""
    return {key: value for key, value in batch.items() if key != TARGET}


def tensor_inputs(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Encoded arrays (`FittedFeatureSpec.encode`) as the backbone's keyword inputs, sharing memory."""
    return {key: torch.from_numpy(np.asarray(value)) for key, value in arrays.items() if key != TARGET}


class SupervisedTask(pl.LightningModule):
    loss_name: ClassVar[str] = "loss"  # logged as train/<loss_name>, val/<loss_name>, test/<loss_name>

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.val_metrics = self.metrics("val/")
        self.test_metrics = self.metrics("test/")

    def metrics(self, prefix: str) -> MetricCollection:
        raise NotImplementedError

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs, loss) of one batch."""
        raise NotImplementedError

    def _update_metrics(self, metrics: MetricCollection, outputs: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """The backbone's outputs for keyword inputs named as in the batch, one value per row."""
        return self.net(**inputs).squeeze(-1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        self.log(f"train/{self.loss_name}", loss, prog_bar=True, batch_size=batch["target"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, prefix: str) -> None:
        outputs, loss = self._step(batch)
        self._update_metrics(metrics, outputs, batch["target"])
        self.log(f"{prefix}{self.loss_name}", loss, prog_bar=True, batch_size=batch["target"].shape[0])

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
        monitor = f"val/{self.loss_name}"
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}
