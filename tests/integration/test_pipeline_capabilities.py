"""Every capability of the one `train()` works for every pipeline: resume, warm start, calibration dispatch.

Each pipeline (tabular, sequence fusion with its ablation arm, forecast with ensemble members) is run through the
same checks on tiny data:
- `ckpt_path=last` after an interruption in a *later* arm gives a bit-identical run (metrics and weights), and the
  arms that had finished are loaded, not retrained;
- `init_from=<name>@<version>` starts every arm from the parent's weights;
- the configured `task.calibration` is the one applied (and recorded), and one the kind cannot apply is refused.
(DDP per pipeline: test_ddp.py.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.registry.run_record import RunRecord
from fulqrun_ml.training.pipeline import PipelineConfigError
from fulqrun_ml.training.train import ARM_DONE_FILE, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = [
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.max_epochs=3",
    "callbacks.early_stopping.patience=10",
    "data.source.n_opportunities=700",
]
# pipeline -> (overrides, the arm an interruption hits: the last one, so earlier arms must be reloaded)
PIPELINES = {
    "tabular": (["task=deal_win"], "model"),
    "sequence_fusion": (
        ["task=deal_win_sequence", "model=sequence_fusion", "task.sequence.max_len=16"],
        "tabular_only",
    ),
    "forecast": (
        ["task=revenue_forecast", "model=nbeats", "data.level=organization", "model.ensemble=2", "model.net.hidden=16"],
        "member_1",
    ),
}


class Interrupt(RuntimeError):
    pass


class InterruptArm(pl.Callback):
    """Dies at the start of epoch `epoch` of the arm trained in `root` (its last.ckpt of the epoch before exists),
    as a killed job would; configured as a callback, so every arm carries it and only one fires."""

    def __init__(self, root: str, epoch: int = 2) -> None:
        self.root, self.epoch = Path(root).resolve(), epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if Path(trainer.default_root_dir).resolve() == self.root and trainer.current_epoch == self.epoch:
            raise Interrupt(f"interrupted {self.root} at epoch {self.epoch}")


def _interrupt(root: Path) -> list[str]:
    return [f"+callbacks.interrupt._target_={__name__}.InterruptArm", f"+callbacks.interrupt.root={root}"]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "net_state.pt", weights_only=True)


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_resume_after_an_interruption_is_bit_identical(pipeline, tmp_path, compose_train):
    overrides, arm = PIPELINES[pipeline]
    full = train(compose_train(tmp_path / "full", *FAST, *overrides))
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        train(
            compose_train(
                interrupted, *FAST, *overrides, *_interrupt(interrupted / arm if arm != "model" else interrupted)
            )
        )
    assert not (interrupted / "run_info.json").exists()
    resumed = train(compose_train(interrupted, *FAST, *overrides, "ckpt_path=last"))
    assert resumed["metrics"] == full["metrics"]
    for key, value in _weights(Path(full["run_dir"])).items():
        assert torch.equal(value, _weights(interrupted)[key]), key
    assert resumed["resumed_from"] == str(interrupted / "checkpoints" / "last.ckpt")
    if arm != "model":  # the model's arm had finished: it was loaded from its best checkpoint, not retrained
        assert (interrupted / ARM_DONE_FILE).is_file()
        assert resumed["epochs"] == full["epochs"]


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_init_from_starts_every_arm_from_the_parent(pipeline, tmp_path, compose_train):
    overrides, _ = PIPELINES[pipeline]
    models_dir = tmp_path / "models"
    parent = train(compose_train(tmp_path / "parent", *FAST, *overrides, f"paths.models_dir={models_dir}"))
    version, _ = load_pipeline(parent["run_dir"]).export(parent["run_dir"], models_dir, "parent")
    seen: dict[str, torch.Tensor] = {}

    class Capture(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            seen.update({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})

    cfg = compose_train(tmp_path / "child", *FAST, *overrides, f"paths.models_dir={models_dir}", "init_from=parent@1")
    child = train(cfg, extra_callbacks=[Capture()])
    assert child["parent"]["version"] == version.version == 1
    parent_state = torch.load(version.path / "net_state.pt", weights_only=True)
    prefix = "members.0." if pipeline == "forecast" else ""
    for key, value in seen.items():
        assert torch.equal(value, parent_state[prefix + key]), key


@pytest.mark.parametrize(
    ("overrides", "method"),
    [
        (["task=deal_win", "task.calibration=isotonic"], "isotonic"),
        (["task=deal_win", "task.calibration=temperature"], "temperature"),
        (["task=deal_win_sequence", "model=sequence_fusion", "task.sequence.max_len=16", "task.calibration=platt",
          "task.sequence.ablation=false"], "platt"),
        (["task=deal_win_sequence", "model=sequence_fusion", "task.sequence.max_len=16", "task.calibration=isotonic",
          "task.sequence.ablation=false"], "isotonic"),
    ],
)  # fmt: skip
def test_the_configured_calibration_is_applied_recorded_and_exported(overrides, method, tmp_path, compose_train):
    result = train(compose_train(tmp_path / "run", *FAST, *overrides))
    record = RunRecord.load(result["run_dir"])
    assert record.calibration["method"] == method
    assert json.loads((Path(result["run_dir"]) / "calibration.json").read_text())["method"] == method
    assert result["metrics"]["model"] != result["metrics"]["model_uncalibrated"]
    version, parity = load_pipeline(record).export(result["run_dir"], tmp_path / "models")
    assert version.metadata["calibration"]["method"] == method
    assert version.metadata["parity_max_abs_diff"] == parity
    assert parity < 1e-4 or method == "isotonic"  # isotonic: a per-row tolerance from the calibrator's slope


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["task=close_timing_survival", "task.calibration=platt"], "task.calibration=platt"),
        (["task=close_timing", "task.calibration=platt"], "task.calibration=platt"),
        (["task=revenue_forecast", "model=nbeats", "task.calibration=isotonic"], "task.calibration=isotonic"),
        (["task=deal_win", "model=nbeats"], "model=nbeats"),
        (["task=deal_win", "model=sequence_fusion"], "model=sequence_fusion"),
    ],
)
def test_what_a_pipeline_cannot_do_is_refused_by_key(overrides, key, tmp_path, compose_train):
    with pytest.raises(PipelineConfigError, match=re.escape(key)):
        train(compose_train(tmp_path / "run", *FAST, *overrides))
