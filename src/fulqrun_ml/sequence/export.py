"""The fused model as ONE ONNX graph: raw tabular feature columns + sequence tensors -> calibrated probability.

The tabular half reuses the deal-win export unchanged: the fitted FeatureSpec is compiled into the graph
(`features.onnx_graph`) and merged in front of the network, so tabular inputs are the same raw columns the
deal-win graph takes. The sequence inputs are the model-ready arrays of `SequenceVocabulary.transform`
(`event_type`, `channel`[, `direction`] int64 and `delta_days`, `age_days` float32, each [batch, length] with
a dynamic batch axis and a dynamic length axis up to max_len, left-padded); the vocabulary travels with the
version as `sequence_vocab.json`. Parity against PyTorch is checked on the holdout before anything is
published, and publishing goes through the registry's atomic `publish_version`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn

from fulqrun_ml.data.snapshot_files import read_snapshot, read_snapshot_arrays
from fulqrun_ml.errors import ExportParityError, FulqrunMLError
from fulqrun_ml.export.onnx_export import (
    OUTPUT_NAME,
    PARITY_ATOL,
    isotonic_parity_atol,
    merge_with_preprocessing,
    raw_feeds,
    torch_to_onnx,
)
from fulqrun_ml.export.package import finished_run, load_calibration, load_trained_net, publish_run, raw_inputs
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.events import TIME_FIELDS, SequenceVocabulary
from fulqrun_ml.sequence.task import predict_sequence_probabilities
from fulqrun_ml.tasks.calibration import calibrator_from_record

log = logging.getLogger(__name__)
SEQUENCE_RUN_FILES = ("net_state.pt", "feature_spec.json", "sequence_vocab.json")
SEQUENCE_RUN_FILES += ("holdout.parquet", "holdout_sequences.npz", "metrics.json")


def sequence_fields(vocabulary: SequenceVocabulary) -> tuple[str, ...]:
    """The graph's sequence inputs, in order: the token fields the vocabulary knows, then the gaps."""
    return (*vocabulary.known, *TIME_FIELDS)


class FusionProbabilityModel(nn.Module):
    """calibrated probability [N, 1] of the fused logit (the run's calibration record: temperature, Platt or
    isotonic), with the sequence tensors as positional inputs (ONNX needs a fixed list)."""

    def __init__(self, net: nn.Module, fields: tuple[str, ...], calibration: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.fields = fields
        self.calibrator = calibrator_from_record(calibration)

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor, *sequences: torch.Tensor) -> torch.Tensor:
        inputs = dict(zip(self.fields, sequences, strict=True))
        return self.calibrator(self.net(continuous=continuous, categorical=categorical, **inputs))


def export_fusion_network(
    net: nn.Module, spec: FittedFeatureSpec, vocabulary: SequenceVocabulary, calibration: dict[str, Any] | None = None
) -> onnx.ModelProto:
    """Network + calibration; inputs `continuous`, `categorical` and the sequence fields, dynamic batch/length."""
    fields = sequence_fields(vocabulary)
    wrapper = FusionProbabilityModel(net, fields, calibration).eval()
    n, length = 2, min(3, vocabulary.max_len)
    sequences = tuple(torch.zeros(n, length, dtype=torch.float32 if f in TIME_FIELDS else torch.int64) for f in fields)
    example = (
        torch.zeros(n, len(spec.spec.numeric), dtype=torch.float32),
        torch.zeros(n, len(spec.spec.categorical), dtype=torch.int64),
        *sequences,
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    seq_len = torch.export.Dim("length", min=1, max=vocabulary.max_len)
    # torch.export groups *sequences into one element, so their shapes come as one nested tuple.
    dynamic = ({0: batch}, {0: batch}, tuple({0: batch, 1: seq_len} for _ in fields))
    return torch_to_onnx(wrapper, example, ["continuous", "categorical", *fields], [OUTPUT_NAME], dynamic)


def export_fusion_onnx(
    net: nn.Module, spec: FittedFeatureSpec, vocabulary: SequenceVocabulary, calibration: dict[str, Any] | None = None
) -> onnx.ModelProto:
    """Preprocessing + network as one checked graph: raw feature columns and sequence tensors in."""
    network = export_fusion_network(net, spec, vocabulary, calibration)
    public = (*sequence_fields(vocabulary), OUTPUT_NAME)  # its extra inputs and its output keep their names
    return merge_with_preprocessing(network, spec, public_names=public, graph_name="fulqrun_deal_win_sequence")


def fusion_probabilities(
    model: onnx.ModelProto | bytes | Path,
    spec: FittedFeatureSpec,
    frame: pd.DataFrame,
    sequences: dict[str, np.ndarray],
) -> np.ndarray:
    """onnxruntime probabilities for raw feature rows and their model-ready sequence arrays."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(
        str(source) if isinstance(source, Path) else source, providers=["CPUExecutionProvider"]
    )
    wanted = {i.name for i in session.get_inputs()}
    feeds = {**raw_feeds(spec, frame), **{k: np.ascontiguousarray(v) for k, v in sequences.items() if k in wanted}}
    missing = sorted(wanted - set(feeds))
    if missing:
        raise FulqrunMLError(f"missing required input(s) {missing}")
    return session.run([OUTPUT_NAME], feeds)[0].reshape(-1)


def check_fusion_parity(
    model: onnx.ModelProto,
    torch_probabilities: np.ndarray,
    spec: FittedFeatureSpec,
    frame: pd.DataFrame,
    sequences: dict[str, np.ndarray],
    atol: float | np.ndarray = PARITY_ATOL,
) -> float:
    """Max |PyTorch - onnxruntime| over the rows; raises ExportParityError above `atol` (a per-row array where an
    isotonic calibrator amplifies input rounding)."""
    gaps = np.abs(fusion_probabilities(model, spec, frame, sequences) - torch_probabilities)
    diff = float(np.max(gaps)) if len(gaps) else 0.0
    if not np.all(gaps <= np.asarray(atol)):
        raise ExportParityError(
            f"ONNX output differs from PyTorch by {diff:.3g} (> {np.min(atol):g}) on {len(frame)} rows"
        )
    log.info("sequence export parity: max abs diff %.3g over %d rows", diff, len(frame))
    return diff


def export_sequence_run(
    run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
) -> tuple[ModelVersion, float]:
    """Export a finished sequence run (tabular-only `options` refused), check parity on its holdout, publish."""
    run_dir = Path(run_dir)
    record = finished_run(run_dir, SEQUENCE_RUN_FILES, options, "sequence-fusion run")
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    vocabulary = SequenceVocabulary.load(run_dir / "sequence_vocab.json")
    net = load_trained_net(run_dir, spec)
    calibration = load_calibration(run_dir)
    holdout = read_snapshot(run_dir / "holdout.parquet")
    sequences = read_snapshot_arrays(run_dir / "holdout_sequences.npz")
    graph = export_fusion_onnx(net, spec, vocabulary, calibration)
    arrays = {**spec.encode(holdout), **sequences}
    torch_probs = predict_sequence_probabilities(net, arrays, calibration)
    atol: float | np.ndarray = PARITY_ATOL
    if calibration.get("method") == "isotonic":  # a steep isotonic piece amplifies float rounding
        atol = isotonic_parity_atol(calibration, predict_sequence_probabilities(net, arrays))
    parity = check_fusion_parity(graph, torch_probs, spec, holdout, sequences, atol=atol)

    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    metrics["export_parity_max_abs_diff"] = parity

    sequence_inputs = [
        {"name": f, "dtype": "float32" if f in TIME_FIELDS else "int64", "shape": ["batch", "length"]}
        for f in sequence_fields(vocabulary)
    ]
    metadata = {
        "inputs": raw_inputs(spec) + sequence_inputs,
        "outputs": [{"name": OUTPUT_NAME, "dtype": "float32"}],
        "holdout_auc": metrics["model"]["auc"],
        "parity_max_abs_diff": parity,
        "calibration": calibration,
        "sequence": {"max_len": vocabulary.max_len, "vocabulary_file": "sequence_vocab.json"},
    }

    copies = ("feature_spec.json", "sequence_vocab.json", "net_state.pt")
    # The calibration as applied (a run from before calibration records exports T = 1).
    version = publish_run(models_dir, name, run_dir, record, graph, copies, metrics, metadata, calibration=calibration)
    return version, parity
