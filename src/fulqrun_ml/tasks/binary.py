"""Binary classification as a LightningModule: loss, metrics and optimisation around any backbone.

The backbone (a plain nn.Module returning one logit per row) and the optimizer factory arrive from Hydra,
so `model=...` swaps networks without touching this file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from fulqrun_ml.tasks.calibration import calibrator_from_record
from fulqrun_ml.tasks.metrics import binary_metrics, update_binary_metrics

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class BinaryClassificationTask(pl.LightningModule):
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
        self.val_metrics = binary_metrics("val/")
        self.test_metrics = binary_metrics("test/")

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.net(continuous, categorical).squeeze(-1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["continuous"], batch["categorical"])
        return logits, F.binary_cross_entropy_with_logits(logits, batch["target"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        _, loss = self._step(batch)
        self.log("train/log_loss", loss, prog_bar=True, batch_size=batch["target"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], metrics: MetricCollection, prefix: str) -> None:
        logits, loss = self._step(batch)
        probs = torch.sigmoid(logits)
        update_binary_metrics(metrics, probs, batch["target"])
        self.log(f"{prefix}log_loss", loss, prog_bar=True, batch_size=batch["target"].shape[0])

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
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/log_loss"}}


def predict_logits(net: torch.nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Raw logits of a backbone on encoded arrays (inference mode, no gradients)."""
    net.eval()
    with torch.inference_mode():
        logits = net(torch.from_numpy(arrays["continuous"]), torch.from_numpy(arrays["categorical"]))
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
