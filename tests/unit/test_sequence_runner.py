"""`train task=deal_win_sequence`: the sequence-fusion pipeline end to end on tiny data, then export and publish."""

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from fulqrun_ml.errors import ExportParityError, FulqrunMLError
from fulqrun_ml.export.onnx_export import PARITY_ATOL
from fulqrun_ml.export.package import load_calibration, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.models.sequence_fusion import SequenceFusion
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.sequence.events import SequenceVocabulary
from fulqrun_ml.sequence.export import (
    check_fusion_parity,
    export_sequence_run,
    fusion_probabilities,
    sequence_fields,
)
from fulqrun_ml.sequence.task import predict_sequence_probabilities
from fulqrun_ml.training.pipeline import PipelineConfigError
from fulqrun_ml.training.train import train

MAX_LEN = 12
SMALL = [
    "experiment=deal_win_sequence_fusion",
    "data.source.n_opportunities=700",
    "data.snapshot_every_days=28",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    f"task.sequence.max_len={MAX_LEN}",
    "model.net.d_model=16",
    "model.net.n_layers=1",
]


@pytest.fixture(scope="module")
def sequence_run(tmp_path_factory, compose_train) -> dict:
    """One tiny fused run (+ ablation) with the configured W&B logger, offline."""
    root = tmp_path_factory.mktemp("sequence")
    return train(compose_train(root / "run", *SMALL, f"paths.root_dir={root}"))


def test_run_directory_metrics_and_lineage(sequence_run):
    run_dir = Path(sequence_run["run_dir"])
    for name in (
        "net_state.pt",
        "feature_spec.json",
        "sequence_vocab.json",
        "holdout.parquet",
        "open_deals.parquet",
        "holdout_sequences.npz",
        "open_deals_sequences.npz",
        "metrics.json",
        "calibration.json",
        "net_config.json",
        "run_info.json",
        "tabular_only/net_state.pt",
        "plots/calibration.png",
    ):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"model", "model_uncalibrated", "tabular_only", "rep", "oracle", "sequence_gain"}
    rows = sequence_run["sizes"]["test_rows"]
    for who in ("model", "tabular_only", "rep", "oracle"):
        assert metrics[who]["n"] == rows > 0 and 0.0 <= metrics[who]["auc"] <= 1.0
    assert metrics["sequence_gain"]["auc"] == pytest.approx(metrics["model"]["auc"] - metrics["tabular_only"]["auc"])
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["task"] == "deal_win_sequence" and len(info["data_hash"]) == 16 and info["wandb_run_id"]
    assert info["calibration"]["method"] == "platt"  # the task config's choice, applied to both arms and exported
    net_config = info["net_config"]
    assert net_config["use_sequence"] is True and net_config["max_len"] == MAX_LEN
    assert net_config["n_event_types"] == 7 and net_config["n_channels"] == 6  # 5 types / 4 channels + pad + unknown
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    with np.load(run_dir / "holdout_sequences.npz") as stored:
        assert stored["event_type"].shape == (len(holdout), MAX_LEN)


def test_saved_weights_reproduce_the_reported_metrics(sequence_run):
    run_dir = Path(sequence_run["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    assert isinstance(net, SequenceFusion) and net.sequence is not None
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    with np.load(run_dir / "holdout_sequences.npz") as stored:
        arrays = {**spec.encode(holdout), **{k: stored[k] for k in stored.files}}
    probs = predict_sequence_probabilities(net, arrays, load_calibration(run_dir))
    from fulqrun_ml.tasks.metrics import binary_report

    assert binary_report(probs, holdout["label"].to_numpy())["auc"] == pytest.approx(
        sequence_run["metrics"]["model"]["auc"], abs=1e-6
    )
    ablation_config = json.loads((run_dir / "tabular_only" / "net_config.json").read_text())
    assert ablation_config["use_sequence"] is False
    tabular = SequenceFusion(
        len(spec.spec.numeric), spec.cardinalities, **{k: v for k, v in ablation_config.items() if k != "_target_"}
    )
    tabular.load_state_dict(torch.load(run_dir / "tabular_only" / "net_state.pt", weights_only=True))


def test_wandb_offline_run_has_both_arms(sequence_run):
    run_dir = Path(sequence_run["run_dir"])
    runs = list((run_dir / "wandb").glob(f"offline-run-*-{sequence_run['wandb_run_id']}/run-*.wandb"))
    assert len(runs) == 1
    blob = runs[0].read_bytes()
    assert b"holdout/model/auc" in blob and b"holdout/tabular_only/auc" in blob and b"val/auc" in blob
    assert b"@company" not in blob and b"+1-555-" not in blob


@pytest.fixture(scope="module")
def published(sequence_run, tmp_path_factory):
    """The run exported once (dynamo export is the slow part) and published to a temporary registry."""
    models_dir = tmp_path_factory.mktemp("models")
    version, parity = export_sequence_run(Path(sequence_run["run_dir"]), models_dir, "deal_win_sequence")
    return models_dir, version, parity


def test_onnx_graph_matches_pytorch_for_any_batch_and_length(sequence_run, published):
    _, version, parity = published
    run_dir = Path(sequence_run["run_dir"])
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    vocab = SequenceVocabulary.load(version.path / "sequence_vocab.json")
    calibration = load_calibration(version.path)
    net = load_trained_net(run_dir, spec)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    with np.load(run_dir / "holdout_sequences.npz") as stored:
        sequences = {k: stored[k] for k in stored.files}
    graph = onnx.load(version.path / "model.onnx")
    onnx.checker.check_model(graph)
    names = [i.name for i in graph.graph.input]
    assert names == [*spec.spec.names, *sequence_fields(vocab)]
    assert [o.name for o in graph.graph.output] == ["probability"]
    torch_probs = predict_sequence_probabilities(net, {**spec.encode(holdout), **sequences}, calibration)
    assert check_fusion_parity(graph, torch_probs, spec, holdout, sequences) == pytest.approx(parity)
    assert parity <= PARITY_ATOL
    with pytest.raises(ExportParityError):
        check_fusion_parity(graph, torch_probs + 1e-3, spec, holdout, sequences)
    # Shorter sequences (fewer left-padding columns) and single rows give the same answers.
    for n, length in ((1, MAX_LEN), (5, 4), (len(holdout), 1)):
        short = {k: v[:n, -length:] for k, v in sequences.items()}
        expected = predict_sequence_probabilities(net, {**spec.encode(holdout.head(n)), **short}, calibration)
        got = fusion_probabilities(graph, spec, holdout.head(n), short)
        assert got.shape == (n,) and np.max(np.abs(got - expected)) <= PARITY_ATOL
    with pytest.raises(FulqrunMLError, match="age_days"):
        fusion_probabilities(graph, spec, holdout.head(2), {k: v[:2] for k, v in sequences.items() if k != "age_days"})


def test_export_publishes_a_complete_version(published):
    models_dir, version, parity = published
    assert version.version == 1
    for name in (
        "model.onnx",
        "feature_spec.json",
        "sequence_vocab.json",
        "net_state.pt",
        "net_config.json",
        "calibration.json",
        "metrics.json",
        "lineage.json",
        "metadata.json",
        "MODEL_CARD.md",
    ):
        assert (version.path / name).is_file(), name
    stored = get_version(models_dir, "deal_win_sequence")
    inputs = {i["name"]: i for i in stored.metadata["inputs"]}
    assert inputs["event_type"]["dtype"] == "int64" and inputs["age_days"]["shape"] == ["batch", "length"]
    assert json.loads((version.path / "metrics.json").read_text())["export_parity_max_abs_diff"] == parity
    lineage = json.loads((version.path / "lineage.json").read_text())
    assert lineage["extra"]["sequence"]["max_len"] == MAX_LEN and lineage["data_hash"] == stored.metadata["data_hash"]


def test_pipeline_refuses_a_model_without_sequence_inputs(compose_train, tmp_path):
    cfg = compose_train(tmp_path / "run", "task=deal_win_sequence", "model=mlp", "logger=none")
    with pytest.raises(
        PipelineConfigError, match="model=mlp is a tabular backbone; task=deal_win_sequence trains sequence"
    ):
        train(cfg)
