"""What one organisation does with the global model, inside its own process: train locally, evaluate locally.

Why Lightning here and not Flower: `flwr` 1.42 needs `rich` < 15, and the project pins rich 15 (../shared/
DEPENDENCIES.md). Relaxing a shared pin for one feature would move typer, packaging and fastapi for everyone. FedAvg
and FedProx are small algorithms, so the local step is the project's own LightningModule (`task.module`, the
recipe `fulqrun-ml train` uses) on the organisation's own datamodule, run by a Lightning Trainer for
`local_epochs`. The federation protocol around it is in client.py and server.py.

FedProx adds (mu / 2) ||w - w_global||^2 to the local loss. Its gradient is mu (w - w_global), and
`FedProxCallback` adds exactly that to each parameter's gradient after backward, so the task's loss and
logging stay untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from fulqrun_ml.datamodules.tabular import ORACLE_COLUMN, TabularDataModuleBase
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.binary import predict_probabilities


class FedProxCallback(pl.Callback):
    """Adds mu (w - w_global) to every trainable parameter's gradient: the proximal term's gradient."""

    def __init__(self, mu: float, global_params: Mapping[str, torch.Tensor]) -> None:
        self.mu = float(mu)
        self.global_params = {k: v.detach().clone() for k, v in global_params.items()}

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.mu <= 0:
            return
        for name, param in pl_module.net.named_parameters():
            if param.grad is not None and name in self.global_params:
                param.grad.add_(param.detach() - self.global_params[name], alpha=self.mu)


def build_net(model_net: DictConfig | Mapping[str, Any], spec: FittedFeatureSpec) -> torch.nn.Module:
    """The configured backbone sized by the (federated) FeatureSpec, as the tabular pipeline builds it."""
    return instantiate(
        model_net, n_continuous=len(spec.spec.numeric), cardinalities=spec.cardinalities, _convert_="all"
    )


def train_locally(
    module_cfg: DictConfig,
    net: torch.nn.Module,
    datamodule: TabularDataModuleBase,
    epochs: int,
    mu: float,
    seed: int,
) -> torch.nn.Module:
    """`epochs` of the task's recipe on this organisation's training split, from the weights `net` holds now."""
    pl.seed_everything(seed, workers=True)
    anchor = {k: v for k, v in net.named_parameters()}
    net.train()  # evaluation left it in eval mode; Lightning keeps the mode it finds (dropout would stay off)
    module = instantiate(module_cfg, net=net)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[FedProxCallback(mu, anchor)],
    )
    trainer.fit(module, datamodule=datamodule)
    return module.net.eval()


def split_metrics(net: torch.nn.Module, spec: FittedFeatureSpec, frame: pd.DataFrame) -> dict[str, float | None]:
    """AUC, log loss, Brier on one split of this organisation, next to the simulator's oracle where it exists.
    Only these scalars leave the organisation; AUC is None when the split holds one class only."""
    labels = frame["label"].to_numpy(dtype=np.float64)
    if len(frame) == 0:
        return {"n": 0, "positives": 0, "auc": None, "log_loss": None, "brier": None, "base_rate": None}
    probs = np.clip(predict_probabilities(net, spec.encode(frame)), 1e-7, 1 - 1e-7)
    both = 0 < labels.sum() < len(labels)
    out: dict[str, float | None] = {
        "n": len(frame),
        "positives": int(labels.sum()),
        "base_rate": float(labels.mean()),
        "auc": float(roc_auc_score(labels, probs)) if both else None,
        "log_loss": float(log_loss(labels, probs, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, probs)),
    }
    if ORACLE_COLUMN in frame:
        oracle = np.clip(frame[ORACLE_COLUMN].to_numpy(dtype=np.float64), 1e-7, 1 - 1e-7)
        out["oracle_auc"] = float(roc_auc_score(labels, oracle)) if both else None
        out["oracle_log_loss"] = float(log_loss(labels, oracle, labels=[0, 1]))
    return out


def use_spec(datamodule: TabularDataModuleBase, spec: FittedFeatureSpec) -> None:
    """Re-encode this organisation's splits with the federation's FeatureSpec (replacing its local fit)."""
    datamodule.spec = spec
    datamodule._build_datasets()
