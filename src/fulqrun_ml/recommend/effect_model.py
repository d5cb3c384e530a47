"""The DR-learner's final stage as a torch network: one backbone regressing every arm's doubly robust pseudo-outcome,
trained by Lightning like every other model, and an ensemble wrapper that exports to ONNX.

Why a network: it goes through the same spine (Hydra, W&B, run record, registry) and exports with the FeatureSpec's
preprocessing into one ONNX graph (raw deal columns -> uplift per arm), ready for Triton. Why an ensemble: members
are trained on Poisson-bootstrap weights of the rows (a cheap bootstrap of the final stage), and their spread is
the interval. The nuisances stay fixed across members, so the interval is too narrow by that much; the benchmark
measures its coverage against the simulator's true effects rather than claiming one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.regression import RegressionTask
from fulqrun_ml.tasks.supervised import TARGET

ROW = "row"  # the batch key carrying each row's index (for its bootstrap weight); not a network input
UPLIFT, UPLIFT_SD = "uplift", "uplift_sd"


class UpliftTask(RegressionTask):
    """MSE on the [N, K] pseudo-outcomes, with Poisson(1) bootstrap weights per row when `bootstrap_seed` is set
    (validation and test rows are unweighted)."""

    def __init__(
        self, net: nn.Module, optimizer: Any, scheduler: Any = None, bootstrap_seed: int | None = None, n_rows: int = 0
    ) -> None:
        super().__init__(net, optimizer, scheduler)
        weights = torch.ones(n_rows)
        if bootstrap_seed is not None:
            generator = torch.Generator().manual_seed(bootstrap_seed)
            weights = torch.poisson(torch.ones(n_rows), generator=generator)
        self.register_buffer("row_weights", weights, persistent=False)

    def _step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = {k: v for k, v in batch.items() if k not in (TARGET, ROW)}
        prediction = self.net(**inputs)
        errors = F.mse_loss(prediction, batch[TARGET], reduction="none").mean(dim=1)
        if self.training and len(self.row_weights):
            weights = self.row_weights[batch[ROW]]
            return prediction, (errors * weights).sum() / weights.sum().clamp(min=1.0)
        return prediction, errors.mean()


class EnsembleUplift(nn.Module):
    """Members' mean and standard deviation per arm: `uplift` and `uplift_sd`, [N, K] each."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = torch.stack([m(continuous=continuous, categorical=categorical) for m in self.members])
        return outputs.mean(dim=0), outputs.std(dim=0, unbiased=False)


def predict_uplift(model: EnsembleUplift, spec: FittedFeatureSpec, states: Any) -> tuple[np.ndarray, np.ndarray]:
    """(uplift, sd) for deal-state rows, in torch (the reference side of the ONNX parity check)."""
    arrays = spec.encode(states)
    with torch.no_grad():
        mean, sd = model.eval()(torch.from_numpy(arrays["continuous"]), torch.from_numpy(arrays["categorical"]))
    return mean.numpy().astype(np.float64), sd.numpy().astype(np.float64)


def fit_members(
    datamodule: pl.LightningDataModule,
    net_factory: Any,
    members: int,
    seed: int,
    max_epochs: int = 30,
    lr: float = 1e-3,
) -> EnsembleUplift:
    """Train `members` networks in process (the benchmark's loop; `fulqrun-ml train` trains the same task
    through train() with its callbacks and W&B): the same UpliftTask, early stopping on validation loss."""
    nets = []
    for m in range(members):
        pl.seed_everything(seed + m, workers=True)
        net = net_factory()
        task = UpliftTask(
            net,
            optimizer=lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=1e-4),
            bootstrap_seed=seed + m,
            n_rows=datamodule.sizes["train"],
        )
        trainer = pl.Trainer(
            max_epochs=max_epochs,
            accelerator="cpu",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[pl.callbacks.EarlyStopping("val/loss", patience=4)],
        )
        trainer.fit(task, datamodule=datamodule)
        nets.append(task.net.eval())
    return EnsembleUplift(nets)
