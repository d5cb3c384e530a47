"""An event-table model as ONE ONNX graph: raw aggregate columns + event sequence tensors -> probability/prediction.

The aggregates enter as raw columns through the FeatureSpec's preprocessing graph (`merge_with_preprocessing`),
as in every tabular export; the sequence fields are the model-ready [batch, length] arrays of
`EventEncoder.sequences` (tokens int64, values and gaps float32; dynamic batch and length axes up to max_len).
Binary models end in their calibration (`probability`), regression models undo the target scaling
(`prediction`). Parity against PyTorch is checked on the run's holdout before anything is published, through the
registry's atomic `publish_version`; the version ships sequence_vocab.json, which the Triton tensor backend
reads for index bounds and the length limit and clients read to build their inputs.
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
    PARITY_RTOL,
    PREDICTION_OUTPUT,
    isotonic_parity_atol,
    merge_with_preprocessing,
    raw_feeds,
    torch_to_onnx,
)
from fulqrun_ml.export.package import (
    finished_run,
    load_calibration,
    load_target_scaling,
    load_trained_net,
    publish_run,
    raw_inputs,
)
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.event_features import EventEncoder
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import calibrator_from_record

log = logging.getLogger(__name__)
EVENT_RUN_FILES = ("net_state.pt", "feature_spec.json", "sequence_vocab.json", "holdout.parquet")
EVENT_RUN_FILES += ("holdout_sequences.npz", "metrics.json")


class EventOutputModel(nn.Module):
    """The network's output made final: calibrated probability (binary) or prediction in target units
    (regression), with the sequence tensors as positional inputs (ONNX needs a fixed list)."""

    def __init__(
        self,
        net: nn.Module,
        fields: tuple[str, ...],
        calibration: dict[str, Any] | None,
        scaling: TargetScaling | None,
    ) -> None:
        super().__init__()
        self.net = net
        self.fields = fields
        self.calibrator = calibrator_from_record(calibration) if scaling is None else None
        self.scaling = scaling

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor, *sequences: torch.Tensor) -> torch.Tensor:
        out = self.net(continuous=continuous, categorical=categorical, **dict(zip(self.fields, sequences, strict=True)))
        if self.scaling is None:
            return self.calibrator(out)
        value = out * self.scaling.std + self.scaling.mean
        return torch.expm1(value) if self.scaling.log1p else value


def export_event_onnx(
    net: nn.Module,
    spec: FittedFeatureSpec,
    encoder: EventEncoder,
    calibration: dict[str, Any] | None = None,
    scaling: TargetScaling | None = None,
) -> onnx.ModelProto:
    """Preprocessing + network + calibration (or target scaling) as one checked graph."""
    fields = encoder.sequence_fields
    wrapper = EventOutputModel(net, fields, calibration, scaling).eval()
    n, length = 2, min(3, encoder.max_len)
    tokens = set(encoder.token_fields)
    sequences = tuple(torch.zeros(n, length, dtype=torch.int64 if f in tokens else torch.float32) for f in fields)
    example = (
        torch.zeros(n, len(spec.spec.numeric), dtype=torch.float32),
        torch.zeros(n, len(spec.spec.categorical), dtype=torch.int64),
        *sequences,
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    seq_len = torch.export.Dim("length", min=1, max=encoder.max_len)
    dynamic = ({0: batch}, {0: batch}, tuple({0: batch, 1: seq_len} for _ in fields))
    output = OUTPUT_NAME if scaling is None else PREDICTION_OUTPUT
    network = torch_to_onnx(wrapper, example, ["continuous", "categorical", *fields], [output], dynamic)
    return merge_with_preprocessing(network, spec, public_names=(*fields, output), graph_name="fulqrun_events")


def event_outputs(
    model: onnx.ModelProto | bytes, spec: FittedFeatureSpec, frame: pd.DataFrame, sequences: dict[str, np.ndarray]
) -> np.ndarray:
    """onnxruntime outputs for raw aggregate rows and their sequence arrays."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    feeds = {**raw_feeds(spec, frame), **{k: np.ascontiguousarray(v) for k, v in sequences.items() if k in wanted}}
    missing = sorted(wanted - set(feeds))
    if missing:
        raise FulqrunMLError(f"missing required input(s) {missing}")
    return session.run(None, feeds)[0].reshape(-1)


def export_event_run(
    run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
) -> tuple[ModelVersion, float]:
    """Export a finished event run (tabular-only `options` refused), check parity on its holdout, publish."""
    run_dir = Path(run_dir)
    record = finished_run(run_dir, EVENT_RUN_FILES, options, "event-table run")
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    encoder = EventEncoder.load(run_dir / "sequence_vocab.json")
    net = load_trained_net(run_dir, spec)
    scaling = load_target_scaling(run_dir)
    calibration = load_calibration(run_dir) if scaling is None else None
    holdout = read_snapshot(run_dir / "holdout.parquet")
    sequences = read_snapshot_arrays(run_dir / "holdout_sequences.npz")
    graph = export_event_onnx(net, spec, encoder, calibration, scaling)
    arrays = {**spec.encode(holdout), **sequences}
    onnx_values = event_outputs(graph, spec, holdout, sequences)
    if scaling is None:
        expected = predict_probabilities(net, arrays, calibration)
        atol: float | np.ndarray = PARITY_ATOL
        if calibration.get("method") == "isotonic":
            atol = isotonic_parity_atol(calibration, predict_probabilities(net, arrays))
    else:
        expected = scaling.decode(predict_logits(net, arrays))
        atol = PARITY_ATOL + PARITY_RTOL * np.abs(expected)
    gaps = np.abs(onnx_values - expected)
    parity = float(gaps.max()) if len(gaps) else 0.0
    if not np.all(gaps <= np.asarray(atol)):
        raise ExportParityError(f"ONNX output differs from PyTorch by {parity:.3g} on {len(holdout)} holdout rows")
    log.info("event export parity: max abs diff %.3g over %d rows", parity, len(holdout))

    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    metrics["export_parity_max_abs_diff"] = parity
    tokens = set(encoder.token_fields)
    sequence_inputs = [
        {"name": f, "dtype": "int64" if f in tokens else "float32", "shape": ["batch", "length"]}
        for f in encoder.sequence_fields
    ]
    output = OUTPUT_NAME if scaling is None else PREDICTION_OUTPUT
    metadata = {
        "inputs": raw_inputs(spec) + sequence_inputs,
        "outputs": [{"name": output, "dtype": "float32"}],
        "parity_max_abs_diff": parity,
        "sequence": {"max_len": encoder.max_len, "vocabulary_file": "sequence_vocab.json"},
    }
    if scaling is None:
        metadata["holdout_auc"] = metrics["model"]["auc"]
        metadata["calibration"] = calibration
    copies = ["feature_spec.json", "sequence_vocab.json", "net_state.pt"]
    copies += [f for f in ("column_types.json", "target.json") if (run_dir / f).is_file()]
    version = publish_run(
        models_dir, name, run_dir, record, graph, tuple(copies), metrics, metadata, calibration=calibration
    )
    return version, parity
