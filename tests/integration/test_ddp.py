"""trainer=ddp: two real processes (CPU, gloo) train one model through the CLI; each reads its own share of
the rows, gradients are all-reduced, and only rank 0 writes the run directory."""

import json
import subprocess
import sys

import pytest
import torch

from fulqrun_ml.datamodules.loaders import batch_loader
from fulqrun_ml.datamodules.tabular import BatchDictDataset
from tests.conftest import TINY_DATA


class _Trainer:
    def __init__(self, world_size: int, global_rank: int) -> None:
        self.world_size, self.global_rank = world_size, global_rank


def _rows(loader) -> list[int]:
    return [int(r) for batch in loader for r in batch["row"]]


def test_ddp_shards_are_disjoint_cover_every_row_and_reshuffle_each_epoch():
    dataset = BatchDictDataset({"row": torch.arange(103).numpy()})
    loaders = [batch_loader(dataset, 16, shuffle=True, trainer=_Trainer(2, rank)) for rank in (0, 1)]
    shards = [_rows(loader) for loader in loaders]
    assert len(shards[0]) == len(shards[1]) == 52  # padded to equal length: both processes run the same steps
    assert set(shards[0]) | set(shards[1]) == set(range(103))
    assert len(set(shards[0]) & set(shards[1])) <= 1  # only the padding row may repeat
    loaders[0].sampler.set_epoch(1)  # what Lightning calls at each epoch start
    assert _rows(loaders[0]) != shards[0]
    single = _rows(batch_loader(dataset, 16, shuffle=False))
    assert single == list(range(103))


DDP_RUNS = {  # pipeline -> overrides and the headline number its two processes must still reach
    "tabular": ([], lambda m: m["model"]["auc"] > 0.6),
    "sequence_fusion": (
        [
            "task=deal_win_sequence",
            "model=sequence_fusion",
            "task.sequence.max_len=16",
            "task.sequence.ablation=false",
            "data.source.n_opportunities=900",
        ],
        lambda m: m["model"]["auc"] > 0.6,
    ),
    "forecast": (
        ["task=revenue_forecast", "model=nbeats", "data.level=organization", "model.ensemble=2", "model.net.hidden=32"],
        lambda m: 0 < m["organization"]["model"]["wape"] < 1,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("pipeline", sorted(DDP_RUNS))
def test_ddp_training_on_two_cpu_processes(pipeline, tmp_path):
    overrides, good_enough = DDP_RUNS[pipeline]
    out = tmp_path / "run"
    command = [
        sys.executable, "-m", "fulqrun_ml.cli", "train", "trainer=ddp", "trainer.accelerator=cpu",
        "trainer.devices=2", "trainer.precision=32-true", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "logger=none", f"paths.output_dir={out}", f"paths.root_dir={tmp_path}", *TINY_DATA, *overrides,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["pipeline"].endswith(pipeline.title().replace("_", "") + "Pipeline")
    assert good_enough(json.loads((out / "metrics.json").read_text()))
    assert "ddp" in json.dumps(info["config"]["trainer"])
