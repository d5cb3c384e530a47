"""The pipeline plugin: what differs between a tabular model, a sequence fusion and a forecaster.

`train()` (train.py) owns everything the three share: seeding, callbacks, loggers and W&B, resume, warm start,
DDP ranks, calibration dispatch and the run record. A pipeline supplies only what is its own: its datamodule,
the networks it trains ("arms": the model, ensemble members, an ablation), its LightningModule, its evaluation,
its extra run files, its exporter and its headline. It is chosen by `_target_` in the task config
(`task.pipeline`), and recorded by class path in the run record so export and everything downstream find the
same plugin again. The shape follows `benchmarks/leaderboard_kinds.SectionKind`: a small object per kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig
from torch import nn

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.models import backbone_family
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.training.warm_start import warm_start


class PipelineConfigError(FulqrunMLError, ValueError):
    """The composed config asks a pipeline for something it does not support; the message names the key."""


@dataclass(frozen=True)
class Capabilities:
    """What a pipeline supports for a target kind; `train()` refuses anything else with the key's name."""

    resume: bool = True
    warm_start: bool = True
    ddp: bool = True
    # Networks with parameters a step may leave without gradient (an N-BEATS block's unused backcast) need DDP
    # to look for them, at some cost per step; the others skip that search.
    ddp_unused_parameters: bool = False
    calibration: tuple[str, ...] = ()  # the `task.calibration` values it can apply (empty: the kind has none)
    default_calibration: str | None = None


@dataclass
class Arm:
    """One network a run trains. The first arm is the model; others are ensemble members or ablations, trained
    by the same loop with their own seed and checkpoint directory (`<run dir>/<subdir>/checkpoints`)."""

    name: str
    seed: int
    subdir: str
    build: Callable[[], tuple[nn.Module, dict[str, Any]]]  # -> (network, its full constructor config)


@dataclass
class FittedArm:
    arm: Arm
    net: nn.Module
    net_config: dict[str, Any]
    epochs: int
    best_checkpoint: str


@dataclass
class Evaluation:
    """What a pipeline's evaluation hands back to `train()` for the run directory and the record."""

    metrics: dict[str, Any]
    net: nn.Module  # what net_state.pt holds (an ensemble wraps its members)
    net_config: dict[str, Any]
    calibration: dict[str, Any] | None = None
    scores: dict[str, np.ndarray] | None = None  # binary: holdout scores per who, for plots and W&B
    extra: dict[str, Any] = field(default_factory=dict)  # pipeline facts for the run record
    # What only `write_artifacts` turns into run files (backtest arrays, an ablation's weights, ...); never recorded.
    artifacts: dict[str, Any] = field(default_factory=dict)


class Pipeline(ABC):
    """One way of turning a composed config into a finished run directory and a published version."""

    # Backbone families (`FAMILY` of the model class) this pipeline can train.
    families: ClassVar[tuple[str, ...]]

    def __init__(self, **options: Any) -> None:
        self.options = options

    @property
    def path(self) -> str:
        """The dotted class path recorded in the run record (what `load_pipeline` instantiates)."""
        return f"{type(self).__module__}.{type(self).__qualname__}"

    def check(self, cfg: DictConfig) -> None:
        """Fail fast, before any data is built, on a backbone this pipeline cannot train."""
        target = cfg.model.net.get("_target_", "")
        family, _ = backbone_family(target)
        if family not in self.families:
            raise PipelineConfigError(
                f"model={cfg.model.get('name', target)} is a {family} backbone; task={cfg.task.name} trains "
                f"{' or '.join(self.families)} backbones (model.net._target_={target!r})"
            )

    @abstractmethod
    def capabilities(self, kind: str) -> Capabilities:
        """What this pipeline supports for a target kind."""

    @abstractmethod
    def build_datamodule(self, cfg: DictConfig) -> pl.LightningDataModule:
        """The datamodule for `cfg.data` (not yet set up)."""

    @abstractmethod
    def target_kind(self, cfg: DictConfig, datamodule: pl.LightningDataModule) -> str:
        """binary | regression | survival | forecast, known once the datamodule is set up."""

    @abstractmethod
    def arms(self, cfg: DictConfig, datamodule: pl.LightningDataModule, kind: str) -> list[Arm]:
        """The networks to train, the model first."""

    @abstractmethod
    def build_module(
        self, cfg: DictConfig, net: nn.Module, datamodule: pl.LightningDataModule, kind: str
    ) -> pl.LightningModule:
        """The LightningModule that trains `net`."""

    def default_monitor(self, kind: str) -> tuple[str, str]:
        """(metric, mode) for checkpoint/early-stopping callbacks whose config leaves `monitor` unset."""
        return {"binary": ("val/log_loss", "min"), "regression": ("val/rmse", "min")}.get(kind, ("val/loss", "min"))

    def warm_start(self, net: nn.Module, net_config: dict[str, Any], arm: Arm, parent: Any, init_from: str) -> None:
        """Copy a parent version's weights into an arm's network (train() loads and checks the parent, and asks
        for every arm: a pipeline whose other arms have no counterpart in the parent leaves them as they are)."""
        warm_start(net, parent, net_config, init_from)

    @abstractmethod
    def evaluate(
        self,
        cfg: DictConfig,
        datamodule: pl.LightningDataModule,
        fitted: list[FittedArm],
        kind: str,
        calibration: str | None,
    ) -> Evaluation:
        """Calibrate on validation with the dispatched method and score the model and its baselines."""

    @abstractmethod
    def write_artifacts(self, out: Path, datamodule: pl.LightningDataModule, evaluation: Evaluation) -> None:
        """The run files only this pipeline has (feature spec, holdout rows, conformal offsets, ...)."""

    def compatibility_spec(self, datamodule: pl.LightningDataModule) -> Any:
        """The fitted feature spec a warm-start parent must match (None: no feature check)."""
        return getattr(datamodule, "spec", None)

    def data_window(self, datamodule: pl.LightningDataModule) -> dict[str, dict[str, Any]]:
        """The time range and row count of each split, recorded in lineage and on the model card (user tables
        without a time column record row counts only)."""
        window: dict[str, dict[str, Any]] = {}
        for split, frame in datamodule.frames.items():
            if len(frame):
                window[split] = {"rows": len(frame)}
                if "as_of" in frame:
                    window[split] |= {"from": str(frame["as_of"].min().date()), "to": str(frame["as_of"].max().date())}
        return window

    @abstractmethod
    def export(
        self, run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
    ) -> tuple[ModelVersion, float]:
        """Export the run, check parity, publish a version; returns it and the parity gap."""

    @abstractmethod
    def headline(self, metrics: dict[str, Any]) -> str:
        """The line a person reads first (AUC, RMSE, C-index, WAPE ...)."""

    @abstractmethod
    def objective(self, metrics: dict[str, Any]) -> float:
        """The value sweeps maximise (higher is better)."""
