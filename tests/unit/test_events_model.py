"""The event backbone (models/event_fusion.py) and its ONNX export: padding invariance, the three arms, and
parity between PyTorch and onnxruntime on real inputs built from the fixture by the datamodule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fulqrun_ml.data.event_fixture import write_event_fixture
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.models.embeddings import ModelConfigError
from fulqrun_ml.models.event_fusion import EventFusion
from fulqrun_ml.sequence.event_datamodule import EventTableDataModule
from fulqrun_ml.sequence.event_export import event_outputs, export_event_onnx
from fulqrun_ml.sequence.event_features import PADDING_AGE
from fulqrun_ml.tasks.binary import predict_logits


@pytest.fixture(scope="module")
def datamodule(tmp_path_factory):
    events, labels = write_event_fixture(tmp_path_factory.mktemp("events"), n_customers=60, seed=5)
    dm = EventTableDataModule(str(events), str(labels), "customer_id", "ts", "spend_next", "as_of", max_len=8)
    dm.setup()
    return dm


def build(dm: EventTableDataModule, mode: str = "fusion") -> EventFusion:
    torch.manual_seed(0)
    enc = dm.encoder
    return EventFusion(
        len(dm.spec.spec.numeric),
        dm.spec.cardinalities,
        enc.token_sizes,
        list(enc.value_fields),
        mode=mode,
        hidden_dims=(16,),
        max_len=enc.max_len,
        d_model=8,
        n_heads=2,
        n_layers=1,
    ).eval()


def arrays(dm: EventTableDataModule, split: str = "test") -> dict[str, np.ndarray]:
    return {**dm.spec.encode(dm.frames[split]), **dm.sequences[split]}


def test_the_datamodule_reads_the_fixture_by_time_with_a_regression_target(datamodule):
    assert datamodule.split_used == "time" and datamodule.target_kind == "regression"
    assert datamodule.leakage_audit["event_histories"]["violations"] == 0
    assert set(datamodule.encoder.token_fields) == {"seq_category", "seq_channel"}
    train, test = datamodule.frames["train"], datamodule.frames["test"]
    assert train["as_of"].max() < test["as_of"].min()


def test_extra_padding_changes_nothing_and_trimming_is_exact(datamodule):
    net = build(datamodule)
    batch = arrays(datamodule, "train")
    lengths = (batch["age_days"] != PADDING_AGE).sum(axis=1)
    k = datamodule.max_len // 2
    rows = lengths <= k
    assert rows.any() and k < datamodule.max_len
    sequence_keys = set(datamodule.encoder.sequence_fields)
    trimmed = {name: v[:, -k:] if name in sequence_keys else v for name, v in batch.items()}
    np.testing.assert_allclose(predict_logits(net, trimmed)[rows], predict_logits(net, batch)[rows], atol=1e-5)


def test_each_arm_reads_only_its_inputs(datamodule):
    batch = arrays(datamodule)
    shuffled = {k: v[::-1].copy() if k.startswith(("seq_", "delta", "age")) else v for k, v in batch.items()}
    aggregates = build(datamodule, "aggregates")
    np.testing.assert_array_equal(predict_logits(aggregates, batch), predict_logits(aggregates, shuffled))
    sequence = build(datamodule, "sequence")
    no_aggregates = {**batch, "continuous": np.zeros_like(batch["continuous"])}
    np.testing.assert_array_equal(predict_logits(sequence, batch), predict_logits(sequence, no_aggregates))
    fusion = build(datamodule, "fusion")
    assert not np.allclose(predict_logits(fusion, batch), predict_logits(fusion, shuffled))
    with pytest.raises(ModelConfigError, match="mode"):
        build(datamodule, "both")


def test_onnx_export_matches_pytorch(datamodule):
    """Regression here (the target scaling inside the graph); the binary graph's parity is checked by
    export_event_run on every export (tests/integration/test_events_serving.py)."""
    net = build(datamodule)
    frame, sequences, batch = datamodule.frames["test"], datamodule.sequences["test"], arrays(datamodule)
    scaling = TargetScaling.fit(datamodule.frames["train"]["label"], log1p=False)
    graph = export_event_onnx(net, datamodule.spec, datamodule.encoder, scaling=scaling)
    expected = scaling.decode(predict_logits(net, batch))
    np.testing.assert_allclose(event_outputs(graph, datamodule.spec, frame, sequences), expected, rtol=1e-4, atol=1e-3)
