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
# tabular runs in `make test`; the other pipelines share its launcher and sampler path (extended)
@pytest.mark.parametrize(
    "pipeline", [p if p == "tabular" else pytest.param(p, marks=pytest.mark.extended) for p in sorted(DDP_RUNS)]
)
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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_multi_node_ddp_under_torchrun_two_launchers_one_model(tmp_path):
    """Two torchrun launchers on one host stand in for two nodes: Lightning must join them into one world of 2
    (global ranks 0 and 1), and only global rank 0 may write the run directory."""
    out, port = tmp_path / "run", _free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
                "--master-addr=127.0.0.1", f"--master-port={port}"]  # fmt: skip
    train = [
        "-m", "fulqrun_ml.cli", "train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.num_nodes=2", "trainer.precision=32-true", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "logger=none", f"paths.output_dir={out}", f"paths.root_dir={tmp_path}", *TINY_DATA,
    ]  # fmt: skip
    nodes = [
        subprocess.Popen(
            [*torchrun, f"--node-rank={rank}", *train], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for rank in (0, 1)
    ]
    logs = [node.communicate(timeout=600)[0].decode() for node in nodes]
    for node, log in zip(nodes, logs, strict=True):
        assert node.returncode == 0, log[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in logs[1], "node 1 must hold global rank 1 of a world of 2"
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["config"]["trainer"]["num_nodes"] == 2
    assert json.loads((out / "metrics.json").read_text())["model"]["auc"] > 0.6
