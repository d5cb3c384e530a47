"""DP-SGD through Opacus as a Lightning callback, so private training is the ordinary train path plus one callback.

What the callback changes, and why each piece is needed for the guarantee Opacus' accountant states:
- Batches: Poisson sampling (each training row joins each step independently with rate q = batch_size / n), via
  Opacus' `UniformWithReplacementSampler`. The RDP accountant's bound assumes it; shuffled fixed-size batches
  would only approximate it.
- Gradients: `GradSampleModule` hooks on the backbone's own layers compute per-example gradients (the task keeps
  calling its `net`, so checkpoints, export and ONNX see the plain module); `DPOptimizer` clips each example's
  gradient to `max_grad_norm` and adds Gaussian noise with the multiplier that reaches the target ε over the
  planned steps (max_epochs × 1/q). Early stopping only spends less.
- Accounting: the accountant counts the steps actually taken; the spent ε (≤ target) and δ are what the run
  record, model card and W&B report.

What it does not cover (docs/security.md says so too): the FeatureSpec's fitted encoders (vocabularies, quantile
bins, scalers), early stopping / checkpoint selection and calibration use the data non-privately; the guarantee is
about the network's weights with respect to the training rows.

Backbones whose layers mix examples within a batch (BatchNorm) or have no per-example gradient are refused before
training, naming the layer and the reason.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from fulqrun_ml.privacy.settings import ACCOUNTANT, PrivacyConfigError, PrivacySettings

log = logging.getLogger(__name__)
PRIVACY_FILE = "privacy.json"


def check_backbone(net: nn.Module, sample: dict[str, torch.Tensor] | None = None) -> None:
    """Refuse a backbone DP-SGD cannot train, naming the layer: Opacus' validator (BatchNorm mixes examples, so
    one example's gradient depends on the others), then, with a `sample` batch, one per-example gradient pass
    (custom layers without a per-example gradient rule fail here rather than mid-training)."""
    errors = ModuleValidator.validate(net, strict=False)
    if errors:
        reasons = "; ".join(dict.fromkeys(str(e).split(". ")[0].rstrip(".") for e in errors))  # first sentences
        raise PrivacyConfigError(
            f"backbone {type(net).__name__} cannot train with DP-SGD (trainer.privacy): {reasons}. "
            "Backbones that can: model=mlp, mlp_plr, tabm"
        )
    if sample is None:
        return
    probe = GradSampleModule(net, loss_reduction="sum")
    try:
        probe(**sample).sum().backward()
        missing = [name for name, p in net.named_parameters() if p.requires_grad and p.grad_sample is None]
    except Exception as exc:  # any failure here means "no per-example gradients"; say which
        raise PrivacyConfigError(
            f"backbone {type(net).__name__} has no per-example gradients for DP-SGD: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        probe.remove_hooks()
        probe.zero_grad(set_to_none=True)
        for p in net.parameters():
            p.grad_sample = None
    if missing:
        raise PrivacyConfigError(f"backbone {type(net).__name__}: no per-example gradient for {missing[:5]}")


class DPSGD(pl.Callback):
    """Make one `trainer.fit` differentially private; `accounting` holds the spent budget after fit."""

    def __init__(self, settings: PrivacySettings, max_epochs: int, seed: int) -> None:
        self.settings, self.max_epochs, self.seed = settings, int(max_epochs), int(seed)
        self.accountant = RDPAccountant()
        self.accounting: dict[str, Any] | None = None
        self._grad_sample: GradSampleModule | None = None
        self._plan: dict[str, float] = {}

    def plan(self, n_train: int, batch_size: int) -> dict[str, float]:
        """Sample rate, steps, δ and the noise multiplier that spends the target ε over max_epochs."""
        if n_train < 2:
            raise PrivacyConfigError(f"trainer.privacy: DP-SGD needs training rows; this run has {n_train}")
        sample_rate = min(1.0, batch_size / n_train)
        steps_per_epoch = max(1, round(1 / sample_rate))
        delta = self.settings.delta if self.settings.delta is not None else 1.0 / (10 * n_train)
        if delta >= 1.0 / n_train:
            log.warning("trainer.privacy.delta=%g is not below 1/n=%g: one row could leak outright", delta, 1 / n_train)
        steps = steps_per_epoch * self.max_epochs
        noise = get_noise_multiplier(
            target_epsilon=self.settings.epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=ACCOUNTANT,
        )
        return {
            "n_train": n_train,
            "sample_rate": sample_rate,
            "steps_per_epoch": steps_per_epoch,
            "planned_steps": steps,
            "delta": delta,
            "noise_multiplier": noise,
        }

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if trainer.world_size > 1:
            raise PrivacyConfigError("trainer.privacy: DP-SGD runs on one process; drop trainer=ddp")
        if trainer.accumulate_grad_batches != 1:
            raise PrivacyConfigError("trainer.privacy: accumulate_grad_batches must be 1 (each step is one sample)")
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "_datasets", {}).get("train")
        if dataset is None or not hasattr(datamodule, "batch_size"):
            raise PrivacyConfigError(
                f"trainer.privacy: the datamodule {type(datamodule).__name__} has no whole-batch training set"
            )
        rows = dataset[list(range(min(2, len(dataset))))]
        check_backbone(pl_module.net, {k: v for k, v in rows.items() if k != "target"})
        self._plan = self.plan(len(dataset), int(datamodule.batch_size))
        generator = torch.Generator().manual_seed(self.seed)
        sampler = UniformWithReplacementSampler(
            num_samples=len(dataset),
            sample_rate=self._plan["sample_rate"],
            generator=generator,
            steps=self._plan["steps_per_epoch"],
        )
        # An instance attribute shadows the class's method for this fit only; teardown removes it.
        datamodule.train_dataloader = lambda: DataLoader(dataset, sampler=sampler, batch_size=None)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._grad_sample = GradSampleModule(pl_module.net, loss_reduction="mean")  # hooks live on `net`'s own layers
        expected = max(1, round(self._plan["sample_rate"] * self._plan["n_train"]))
        wrapped = []
        for optimizer in trainer.strategy.optimizers:
            private = DPOptimizer(
                optimizer,
                noise_multiplier=self._plan["noise_multiplier"],
                max_grad_norm=self.settings.max_grad_norm,
                expected_batch_size=expected,
            )
            private.attach_step_hook(self.accountant.get_optimizer_hook_fn(self._plan["sample_rate"]))
            wrapped.append(private)
        trainer.strategy.optimizers = wrapped
        log.info(
            "DP-SGD: target ε=%.3g δ=%.3g, noise multiplier %.3f, clip %.3g, q=%.4f",
            self.settings.epsilon,
            self._plan["delta"],
            self._plan["noise_multiplier"],
            self.settings.max_grad_norm,
            self._plan["sample_rate"],
        )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.accountant.history:
            pl_module.log("privacy/epsilon", self.spent_epsilon(), prog_bar=False)

    def spent_epsilon(self) -> float:
        if not self.accountant.history:
            return 0.0
        return float(self.accountant.get_epsilon(self._plan["delta"]))

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if datamodule is not None and "train_dataloader" in vars(datamodule):
            del datamodule.train_dataloader
        if self._grad_sample is not None:
            self._grad_sample.remove_hooks()
            for p in pl_module.net.parameters():
                p.grad_sample = None
            self._grad_sample = None
        steps = sum(n for _, _, n in self.accountant.history)
        self.accounting = {
            "mechanism": "DP-SGD (Opacus, Poisson sampling, per-example clipping, Gaussian noise)",
            "accountant": ACCOUNTANT,
            "target_epsilon": self.settings.epsilon,
            "epsilon": self.spent_epsilon(),
            "delta": self._plan["delta"],
            "max_grad_norm": self.settings.max_grad_norm,
            "noise_multiplier": self._plan["noise_multiplier"],
            "sample_rate": self._plan["sample_rate"],
            "steps": steps,
            "planned_steps": self._plan["planned_steps"],
            "n_train": self._plan["n_train"],
            "covers": "network weights w.r.t. training rows; not the fitted encoders, model selection or calibration",
        }
        if not math.isfinite(self.accounting["epsilon"]):
            raise PrivacyConfigError("trainer.privacy: the accountant returned a non-finite ε")


def write_accounting(run_dir: Path, accounting: dict[str, Any]) -> Path:
    """privacy.json in the run directory (copied into the version's lineage by the exporter via the record)."""
    path = Path(run_dir) / PRIVACY_FILE
    path.write_text(json.dumps(accounting, indent=2))
    return path
