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
from typing import ClassVar

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


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def reference(request, tmp_path_factory, compose_train) -> dict:
    """One uninterrupted run per pipeline, exported: the resume test's reference and the warm start's parent."""
    overrides, arm = PIPELINES[request.param]
    root = tmp_path_factory.mktemp(request.param)
    full = train(compose_train(root / "full", *FAST, *overrides))
    version, _ = load_pipeline(full["run_dir"]).export(full["run_dir"], root / "models", "parent")
    return {"pipeline": request.param, "overrides": overrides, "arm": arm, "full": full, "version": version}


def test_resume_after_an_interruption_is_bit_identical(reference, tmp_path, compose_train):
    overrides, arm, full = reference["overrides"], reference["arm"], reference["full"]
    interrupted = tmp_path / "interrupted"
    arm_root = interrupted / arm if arm != "model" else interrupted
    with pytest.raises(Interrupt):
        train(compose_train(interrupted, *FAST, *overrides, *_interrupt(arm_root)))
    assert not (interrupted / "run_info.json").exists()
    resumed = train(compose_train(interrupted, *FAST, *overrides, "ckpt_path=last"))
    assert resumed["metrics"] == full["metrics"]
    for key, value in _weights(Path(full["run_dir"])).items():
        assert torch.equal(value, _weights(interrupted)[key]), key
    assert resumed["resumed_from"] == str(interrupted / "checkpoints" / "last.ckpt")
    if arm != "model":  # the model's arm had finished: it was loaded from its best checkpoint, not retrained
        assert (interrupted / ARM_DONE_FILE).is_file()
        assert resumed["epochs"] == full["epochs"]


class InitialWeights(pl.Callback):
    """Keeps every arm's weights as training starts, by the arm's directory (a config callback reaches every arm)."""

    seen: ClassVar[dict[str, dict[str, torch.Tensor]]] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state = {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()}
        InitialWeights.seen[Path(trainer.default_root_dir).name] = state


def test_init_from_starts_every_arm_from_the_parent(reference, tmp_path, compose_train):
    version = reference["version"]
    models_dir = version.path.parent.parent
    capture = [f"+callbacks.initial._target_={__name__}.InitialWeights"]
    overrides = [*FAST, *reference["overrides"], f"paths.models_dir={models_dir}", "init_from=parent@1", *capture]
    InitialWeights.seen.clear()
    child = train(compose_train(tmp_path / "child", *overrides))
    assert child["parent"]["version"] == version.version == 1
    parent_state = torch.load(version.path / "net_state.pt", weights_only=True)
    # Forecast: member i from the parent's member i. Sequence fusion: the fused model only (the ablation starts
    # fresh, as documented). Tabular: its one arm.
    expected = {"child": "members.0." if reference["pipeline"] == "forecast" else ""}
    if reference["pipeline"] == "forecast":
        expected["member_1"] = "members.1."
    for arm, prefix in expected.items():
        state = InitialWeights.seen[arm]
        assert all(torch.equal(value, parent_state[prefix + key]) for key, value in state.items()), arm
    if reference["pipeline"] == "sequence_fusion":
        ablation = InitialWeights.seen["tabular_only"]
        assert not all(torch.equal(v, parent_state[k]) for k, v in ablation.items() if k in parent_state)


@pytest.mark.parametrize(
    ("overrides", "method"),
    [
        (["task=deal_win", "task.calibration=isotonic"], "isotonic"),
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
