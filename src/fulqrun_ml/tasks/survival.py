"""Discrete-time survival (logistic hazard) as a LightningModule: when will an open deal close, if at all within
the horizon?

The backbone is any tabular network with `n_outputs = K`: one hazard logit per time bin, h_k = P(close in bin k |
still open at its start). The loss is the logistic-hazard negative log-likelihood (Gensheimer & Narasimhan 2019;
pycox's `LogisticHazard`): binary cross-entropy of each bin's hazard over the bins a row is at risk in, target 1
in the bin where it closed. A row still open at the horizon is censored there (administratively: every row is
followed to the horizon, see `survival_metrics.py`) and contributes "no close" in every bin.

The datamodule hands over `target` [N, 2] = (event 0/1, duration_days); binning happens here so the grid is a
property of the task (`task.bin_edges`), not of the data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection

from fulqrun_ml.tasks.supervised import (
    OptimizerFactory,
    SchedulerFactory,
    SupervisedTask,
    net_inputs,
    tensor_inputs,
)
from fulqrun_ml.tasks.survival_grid import torch_cdf, torch_restricted_mean, validate_bin_edges
from fulqrun_ml.tasks.survival_metrics import ConcordanceMetric

# What a survival run can monitor for early stopping / checkpointing (train() checks the callbacks).
MONITORED = ("val/loss", "val/concordance")
CLOSE_PROBABILITY = "close_probability"  # [N, K]: P(closed by the end of bin k)
EXPECTED_DAYS = "expected_days"  # [N]: restricted mean days to close within the horizon


def logistic_hazard_nll(logits: torch.Tensor, bins: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
    """Mean over rows of sum_{k <= bin} BCE(logit_k, 1[k == bin and event]); rows censored in `bin` are at risk
    through it (censoring at the end of the bin, which is where the horizon puts it)."""
    k = torch.arange(logits.shape[1], device=logits.device)[None, :]
    at_risk = (k <= bins[:, None]).to(logits.dtype)
    target = ((k == bins[:, None]) & (events[:, None] > 0.5)).to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * at_risk).sum(dim=1).mean()


class SurvivalCurves(nn.Module):
    """Backbone hazard logits -> (close_probability [N, K], expected_days [N]) with a temperature on the logits:
    the PyTorch side of the export parity check and the graph that is exported."""

    def __init__(self, net: nn.Module, edges: Sequence[float], temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        edges_t = torch.tensor(np.asarray(edges, dtype=np.float32))
        self.register_buffer("widths", edges_t[1:] - edges_t[:-1])
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cdf = torch_cdf(self.net(continuous=continuous, categorical=categorical), self.temperature)
        return cdf, torch_restricted_mean(cdf, self.widths)


class SurvivalTask(SupervisedTask):
    """K hazard logits out of the backbone, logistic-hazard NLL, Harrell's concordance on expected days."""

    loss_name = "loss"

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        bin_edges: Sequence[float] = tuple(range(0, 92, 7)),
        horizon_days: float = 91,
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        edges = validate_bin_edges(list(bin_edges), float(horizon_days))
        self.n_bins = len(edges) - 1
        edges_t = torch.tensor(edges, dtype=torch.float32)
        self.register_buffer("edges", edges_t)
        self.register_buffer("widths", edges_t[1:] - edges_t[:-1])

    def metrics(self, prefix: str) -> MetricCollection:
        return MetricCollection({"concordance": ConcordanceMetric()}, prefix=prefix)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        logits = self.net(**inputs)
        if logits.shape[-1] != self.n_bins:
            raise ValueError(f"the backbone gives {logits.shape[-1]} outputs but task.bin_edges define {self.n_bins}")
        return logits

    def bins(self, durations: torch.Tensor) -> torch.Tensor:
        """Right-closed bin of each duration (`survival_grid.bin_index` in torch)."""
        return torch.searchsorted(self.edges[1:], durations.float().contiguous()).clamp(max=self.n_bins - 1)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(**net_inputs(batch))
        target = batch["target"]
        return logits, logistic_hazard_nll(logits.float(), self.bins(target[:, 1]), target[:, 0])

    def _update_metrics(self, metrics: MetricCollection, logits: torch.Tensor, target: torch.Tensor) -> None:
        expected = torch_restricted_mean(torch_cdf(logits.float()), self.widths)
        metrics.update(expected, target)


def predict_hazard_logits(net: nn.Module, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Raw hazard logits [N, K] of a backbone on encoded arrays (inference mode)."""
    net.eval()
    with torch.inference_mode():
        logits = net(**tensor_inputs(arrays))
    return logits.float().numpy()


def predict_curves(
    net: nn.Module, arrays: dict[str, np.ndarray], edges: Sequence[float], temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(close_probability [N, K], expected_days [N]) exactly as the exported graph computes them."""
    curves = SurvivalCurves(net, edges, temperature).eval()
    with torch.inference_mode():
        cdf, expected = curves(**tensor_inputs(arrays))
    return cdf.numpy(), expected.numpy()
