"""DP-SGD through the one train path: `trainer.privacy.*` is parsed with errors naming the key, backbones with
batch statistics or attention refuse with the reason, and a private run spends (≈ but ≤) the target ε, accounted
step by step, with ε and δ in the run record, the model card of the published version and the W&B run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from fulqrun_ml.export.package import export_run
from fulqrun_ml.privacy.dp_sgd import PRIVACY_FILE, check_backbone
from fulqrun_ml.privacy.settings import PrivacyConfigError, privacy_settings, trainer_kwargs
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train
from fulqrun_ml.training.wandb_offline import load_offline_run

SMALL = ["data.source.n_opportunities=900", "data.source.n_companies=200", "data.source.n_reps=8"]


def config(tmp_path: Path, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.root_dir={tmp_path}",
                *SMALL,
                "trainer.max_epochs=2",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


def test_settings_default_off_and_bad_values_name_the_key():
    assert privacy_settings({"privacy": {"epsilon": None}}) is None
    assert privacy_settings({"privacy": {"epsilon": "inf"}}) is None  # ε = ∞ is the non-private baseline
    assert privacy_settings({"max_epochs": 3}) is None
    settings = privacy_settings({"privacy": {"epsilon": 3, "delta": 1e-5}})
    assert (settings.epsilon, settings.delta, settings.max_grad_norm) == (3.0, 1e-5, 1.0)
    for section, message in [
        ({"epsilon": -1}, r"epsilon=-1.0 must be > 0"),
        ({"epsilon": "three"}, r"trainer.privacy.epsilon='three' is not a number"),
        ({"epsilon": 3, "delta": 2}, r"delta=2.0 must be in \(0, 1\)"),
        ({"epsilon": 3, "max_grad_norm": 0}, r"max_grad_norm=0.0 must be > 0"),
        ({"epsilon": 3, "sigma": 1}, r"unknown keys \['sigma'\]"),
    ]:
        with pytest.raises(PrivacyConfigError, match=message):
            privacy_settings({"privacy": section})
    trainer_cfg = OmegaConf.create({"max_epochs": 2, "privacy": {"epsilon": 3}})
    assert "privacy" not in trainer_kwargs(trainer_cfg) and trainer_kwargs(trainer_cfg).max_epochs == 2


@pytest.mark.parametrize(
    ("model", "reason"), [("resnet", "BatchNorm cannot support"), ("ft_transformer", "nn.MultiheadAttention")]
)
def test_backbones_that_cannot_be_private_refuse_with_the_reason(model, reason):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"])
    net = instantiate({**OmegaConf.to_container(cfg.model.net, resolve=True), "n_continuous": 3, "cardinalities": [4]})
    with pytest.raises(PrivacyConfigError, match=rf"{type(net).__name__} cannot train with DP-SGD.*{reason}"):
        check_backbone(net)


def test_the_mlp_has_per_example_gradients():
    from fulqrun_ml.models.mlp import MLP

    net = MLP(n_continuous=3, cardinalities=[4])
    check_backbone(net, {"continuous": torch.randn(2, 3), "categorical": torch.tensor([[1], [2]])})
    assert all(getattr(p, "grad_sample", None) is None for p in net.parameters())  # the probe leaves no state


def test_a_private_run_spends_its_budget_and_records_it_everywhere(tmp_path):
    cfg = config(tmp_path, "model=mlp", "trainer.privacy.epsilon=2", "trainer.privacy.delta=1e-4")
    record = train(cfg)
    privacy = record["extra"]["privacy"]
    assert privacy["delta"] == 1e-4 and privacy["noise_multiplier"] > 0.5
    assert privacy["steps"] == privacy["planned_steps"] > 0  # every optimiser step went through the accountant
    assert 1.8 < privacy["epsilon"] <= 2.0 + 1e-6
    assert json.loads((Path(record["run_dir"]) / PRIVACY_FILE).read_text()) == privacy
    version, _ = export_run(Path(record["run_dir"]), tmp_path / "models", "deal_win")
    card = (version.path / "MODEL_CARD.md").read_text()
    assert "## Privacy" in card and f"ε = {privacy['epsilon']:.3g} at δ = 0.0001" in card
    (wandb_dir,) = Path(record["run_dir"]).glob("wandb/offline-run-*")
    assert load_offline_run(wandb_dir).history["privacy/epsilon"] == pytest.approx(privacy["epsilon"])


def test_a_private_run_refuses_a_batchnorm_backbone_and_resume_before_training(tmp_path):
    with pytest.raises(PrivacyConfigError, match="ResNet cannot train with DP-SGD"):
        train(config(tmp_path, "model=resnet", "trainer.privacy.epsilon=3", "logger=none"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    with pytest.raises(PrivacyConfigError, match="ckpt_path: a DP-SGD run cannot resume"):
        train(config(tmp_path, "model=mlp", "trainer.privacy.epsilon=3", "logger=none", "ckpt_path=last"))
