"""Training leaves a complete run directory; export publishes a version whose graph matches PyTorch."""

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.export.onnx_export import PARITY_ATOL, check_parity, export_onnx, onnx_probabilities
from fulqrun_ml.export.package import load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.training.train import train

RUN_FILES = (
    "net_state.pt",
    "feature_spec.json",
    "holdout.parquet",
    "open_deals.parquet",
    "metrics.json",
    "run_info.json",
    "calibration.json",
)


def test_run_directory_is_complete(trained_run):
    run_dir = Path(trained_run["run_dir"])
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    info = json.loads((run_dir / "run_info.json").read_text())
    assert len(info["data_hash"]) == 16 and info["git_commit"] and info["wandb_run_id"]
    metrics = trained_run["metrics"]
    assert set(metrics) == {"model", "model_uncalibrated", "rep", "oracle"}
    for who in metrics.values():
        assert 0.0 <= who["auc"] <= 1.0 and 0.0 <= who["ece"] <= 1.0 and who["n"] == trained_run["sizes"]["test_rows"]
    # The tiny model must already beat a coin; the oracle must beat the rep's stage-based guess.
    assert metrics["model"]["auc"] > 0.6
    assert metrics["oracle"]["auc"] > metrics["rep"]["auc"]


def test_wandb_offline_run_recorded_config_and_metrics_without_pii(trained_run, tiny_crm):
    run_dir = Path(trained_run["run_dir"])
    runs = list((run_dir / "wandb").glob(f"offline-run-*-{trained_run['wandb_run_id']}/run-*.wandb"))
    assert len(runs) == 1
    blob = runs[0].read_bytes()
    assert trained_run["data_hash"].encode() in blob  # lineage logged as config
    assert b"holdout/model/auc" in blob and b"val/auc" in blob
    assert b"@company" not in blob and b"+1-555-" not in blob  # contact emails / phones never logged


def test_export_parity_on_holdout(trained_run):
    run_dir = Path(trained_run["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    graph = export_onnx(net, spec)
    torch_probs = predict_probabilities(net, spec.encode(holdout))
    assert check_parity(graph, torch_probs, spec, holdout) <= PARITY_ATOL
    with pytest.raises(ExportParityError):
        check_parity(graph, torch_probs + 1e-3, spec, holdout)


def test_graph_takes_raw_columns_and_any_batch_size(published):
    version, _ = published
    model = onnx.load(version.path / "model.onnx")
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    assert [i.name for i in model.graph.input] == spec.spec.names
    assert [o.name for o in model.graph.output] == ["probability"]
    rows = pd.read_parquet(
        Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "open_deals.parquet"
    )
    for n in (1, 3, len(rows)):
        probs = onnx_probabilities(version.path / "model.onnx", spec, rows.head(n))
        assert probs.shape == (n,) and np.all((probs > 0) & (probs < 1))


def test_version_directory_holds_model_spec_metrics_lineage(published):
    version, parity = published
    assert {
        "calibration.json",
        "feature_spec.json",
        "lineage.json",
        "metadata.json",
        "metrics.json",
        "model.onnx",
    } <= {p.name for p in version.path.iterdir()}
    lineage = json.loads((version.path / "lineage.json").read_text())
    for key in ("config", "data_hash", "git_commit", "wandb_run_id", "run_dir"):
        assert lineage[key], key
    assert version.metadata["parity_max_abs_diff"] == parity <= PARITY_ATOL
    assert json.loads((version.path / "metrics.json").read_text())["export_parity_max_abs_diff"] == parity


def test_same_config_same_metrics(compose_train, tmp_path):
    """Reproducibility: same config, seed and data -> the same holdout metrics (CPU, deterministic)."""
    overrides = ("logger=none", "trainer.max_epochs=2", "trainer.enable_progress_bar=false")
    first = train(compose_train(tmp_path / "a", *overrides))
    second = train(compose_train(tmp_path / "b", *overrides))
    assert first["data_hash"] == second["data_hash"]
    assert first["metrics"]["model"] == second["metrics"]["model"]
