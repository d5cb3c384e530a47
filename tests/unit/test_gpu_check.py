"""scripts/gpu_check.py, the one command a lent GPU machine runs: exercised here on CPU with tiny data, so
the GPU session only spends device time on measuring. Its CUDA rows are checked where a GPU exists."""

import runpy

import pytest
import torch

from fulqrun_ml.project import REPO_ROOT

gpu_check = runpy.run_path(str(REPO_ROOT / "scripts" / "gpu_check.py"))
TINY = ("data.source.n_opportunities=500", "data.source.n_companies=150", "data.source.n_reps=6")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    prepared = tmp_path_factory.mktemp("prepared")
    gpu_check["prepare"](prepared, ("mlp", "sequence_fusion"), TINY)
    return gpu_check["run"](prepared, prepared / "out", ("mlp", "sequence_fusion"), gpu_steps=8, cpu_steps=8)


def test_every_backbone_is_trained_and_timed_on_cpu(report):
    cpu_rows = [r for r in report["training"] if r["device"] == "cpu"]
    assert [r["model"] for r in cpu_rows] == ["mlp", "sequence_fusion"]
    for row in cpu_rows:
        assert row["samples_per_s"] > 0 and 0 < row["final_train_loss"] < 5 and 0 <= row["val_auc"] <= 1
    engines = {(r["model"], r["engine"], r["batch"]) for r in report["inference"]}
    for batch in (1, 1024):
        assert {("mlp", "torch_cpu", batch), ("mlp", "onnxruntime_cpu", batch)} <= engines
        assert ("sequence_fusion", "torch_cpu", batch) in engines  # with its activity sequences as inputs
    assert report["machine"]["cpu_count"] >= 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_rows_and_graph_replay_match_eager(report):
    assert {r["batch_size"] for r in report["training"] if r["device"] == "cuda"} == {256, 4096}
    graphs = [r for r in report["inference"] if r["engine"] == "torch_cuda_graph"]
    assert graphs and all(r["max_abs_diff_vs_eager"] < 1e-5 for r in graphs)
