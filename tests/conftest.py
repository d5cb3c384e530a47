"""Shared fixtures: a tiny simulated CRM, a composed config, one trained + published tiny model.

Expensive things (training, export) run once per session and are shared read-only by the tests.
Configs are composed from the real `configs/` with `hydra.compose`, as `fulqrun-ml train` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fulqrun_ml.data.simulator import SimulatedCRM, simulate_crm
from fulqrun_ml.export.package import export_run
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.training.train import train

TINY_DATA = [
    "data.source.n_opportunities=1500",
    "data.source.n_companies=300",
    "data.source.n_reps=10",
]
FAST_TRAINER = ["trainer.max_epochs=3", "trainer.enable_progress_bar=false"]


@pytest.fixture(scope="session")
def tiny_crm() -> SimulatedCRM:
    return simulate_crm(n_opportunities=1500, n_companies=300, n_reps=10, seed=3)


@pytest.fixture(scope="session")
def compose_train() -> Callable[..., DictConfig]:
    def _compose(output_dir: Path, *overrides: str) -> DictConfig:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose("train", overrides=[f"paths.output_dir={output_dir}", *TINY_DATA, *overrides])

    return _compose


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, compose_train) -> dict:
    """A tiny model trained with the real W&B logger in offline mode."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_train(root / "run", *FAST_TRAINER, f"paths.root_dir={root}")
    return train(cfg)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, trained_run: dict) -> tuple[ModelVersion, float]:
    models_dir = tmp_path_factory.mktemp("models")
    return export_run(Path(trained_run["run_dir"]), models_dir, "deal_win")
