"""The real configs compose and instantiate (the lightning-hydra-template pattern)."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from fulqrun_ml.models.mlp import MLP
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.tasks.binary import BinaryClassificationTask


def test_train_config_composes_every_group(compose_train, tmp_path):
    cfg = compose_train(tmp_path)
    for group in ("data", "task", "model", "trainer", "logger", "callbacks", "paths"):
        assert group in cfg, group
    assert cfg.logger.wandb.offline is True
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.name == "deal_win_mlp"


def test_objects_instantiate_from_config(compose_train, tmp_path):
    cfg = compose_train(tmp_path)
    net = instantiate(cfg.model.net, n_continuous=4, cardinalities=[3, 5], _convert_="all")
    assert isinstance(net, MLP)
    task = instantiate(cfg.task.module, net=net)
    assert isinstance(task, BinaryClassificationTask)
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    out = task(continuous=torch.zeros(7, 4), categorical=torch.zeros(7, 2, dtype=torch.long))
    assert out.shape == (7,)


def test_gpu_trainer_config_asks_for_bf16(tmp_path, compose_train):
    cfg = compose_train(tmp_path, "trainer=gpu")
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "bf16-mixed"


def test_serve_config_composes():
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("serve")
    assert cfg.serving.backend == "python-ort" and cfg.serving.max_batch_size > 0
    assert cfg.model_name == "deal_win" and cfg.version == "production"


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment, compose_train, tmp_path):
    cfg = compose_train(Path(tmp_path), f"experiment={experiment}")
    assert cfg.model.net._target_
