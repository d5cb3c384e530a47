"""Quantile forecasting as a LightningModule: pinball loss over every horizon and quantile.

The loss is measured on windows divided by their own scale (the same `window_scale` the network uses),
so a rep's and an organization's windows weigh alike and the gradient does not depend on the currency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from fulqrun_ml.models.forecaster import window_scale

OptimizerFactory = Callable[..., torch.optim.Optimizer]
FORECAST_INPUTS = ("history", "calendar", "series")  # the forecaster's keyword inputs = batch keys = graph inputs


def forecast_inputs(windows: Mapping[str, Any]) -> dict[str, Any]:
    """The forecaster's inputs out of a window batch or window arrays (which also hold the target, origins)."""
    return {key: windows[key] for key in FORECAST_INPUTS}


def pinball_loss(target: torch.Tensor, predicted: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Mean quantile (pinball) loss; target [B, H], predicted [B, H, Q]; NaN targets (past the data) ignored."""
    mask = torch.isfinite(target)
    diff = torch.where(mask, target, torch.zeros_like(target)).unsqueeze(-1) - predicted
    loss = torch.maximum(quantiles * diff, (quantiles - 1.0) * diff)
    return (loss * mask.unsqueeze(-1)).sum() / (mask.sum().clamp_min(1) * quantiles.numel())


class QuantileForecastTask(pl.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        quantiles: Sequence[float],
        optimizer: OptimizerFactory,
        min_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.min_scale = min_scale
        self.register_buffer("levels", torch.tensor(list(quantiles), dtype=torch.float32), persistent=False)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Quantiles [B, H, Q] for the window batch's inputs as keywords (`history`, `calendar`, `series`)."""
        return self.net(**inputs)

    def _loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        predicted = self(**forecast_inputs(batch))
        scale = window_scale(batch["history"], self.min_scale).unsqueeze(-1)
        loss = pinball_loss(batch["target"] / scale.squeeze(-1), predicted / scale, self.levels)
        return loss, predicted, scale

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._loss(batch)
        self.log("train/pinball", loss, prog_bar=True, batch_size=batch["target"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, torch.Tensor], prefix: str) -> None:
        loss, predicted, _ = self._loss(batch)
        n = batch["target"].shape[0]
        target = batch["target"]
        mask = torch.isfinite(target)
        centre = predicted[..., int(torch.argmin((self.levels - 0.5).abs()))]
        error = torch.where(mask, (target - centre).abs(), torch.zeros_like(target)).sum()
        total = torch.where(mask, target.abs(), torch.zeros_like(target)).sum().clamp_min(1e-6)
        self.log(f"{prefix}pinball", loss, prog_bar=True, batch_size=n)
        # Batch-level WAPE averaged over batches: a monitoring signal; the reported WAPE is the backtest's.
        self.log(f"{prefix}wape", error / total, batch_size=n)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val/")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test/")

    def configure_optimizers(self) -> Any:
        return self.optimizer_factory(params=self.parameters())


@torch.no_grad()
def predict_quantiles(net: nn.Module, windows: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Quantiles [N, H, Q] (NumPy) for window arrays, in eval mode, batched."""
    net.eval()
    out = []
    for start in range(0, len(windows["history"]), batch_size):
        part = slice(start, start + batch_size)
        out.append(net(**{k: torch.as_tensor(v[part]) for k, v in forecast_inputs(windows).items()}).numpy())
    return np.concatenate(out)
