"""Export a trained backbone plus its FeatureSpec as ONE ONNX graph: raw feature columns -> probability.

Steps: torch.onnx.export (the torch.export-based exporter, dynamic batch axis) of backbone + sigmoid;
the FeatureSpec compiled to a preprocessing graph; the two merged with `onnx.compose.merge_models`;
checked with the ONNX checker; then parity against PyTorch + Python encoders on held-out rows.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn

from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.features.onnx_graph import build_preprocessing_graph
from fulqrun_ml.features.spec import FittedFeatureSpec

log = logging.getLogger(__name__)
OUTPUT_NAME = "probability"
PARITY_ATOL = 1e-5


class ProbabilityModel(nn.Module):
    """Backbone logits -> calibrated probabilities sigmoid(logit / T) [N, 1]; the only wrapper export needs."""

    def __init__(self, net: nn.Module, temperature: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float32))

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(continuous, categorical) / self.temperature)


def export_network(net: nn.Module, spec: FittedFeatureSpec, temperature: float = 1.0) -> onnx.ModelProto:
    """The backbone (+ calibration), inputs `continuous` / `categorical`, with a dynamic batch axis."""
    wrapper = ProbabilityModel(net, temperature).eval()
    example = (
        torch.zeros(2, len(spec.spec.numeric), dtype=torch.float32),
        torch.zeros(2, len(spec.spec.categorical), dtype=torch.int64),
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(
            wrapper,
            example,
            str(path),
            input_names=["continuous", "categorical"],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch}, {0: batch}),
            dynamo=True,
            external_data=False,  # small models: one self-contained file travels more safely
            verbose=False,
        )
        return onnx.load(str(path))


def export_onnx(net: nn.Module, spec: FittedFeatureSpec, temperature: float = 1.0) -> onnx.ModelProto:
    """Preprocessing + network + calibration as one self-contained graph taking raw feature columns."""
    network = export_network(net, spec, temperature)
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    preprocessing = build_preprocessing_graph(spec, opset=opset, ir_version=network.ir_version)
    merged = onnx.compose.merge_models(
        preprocessing,
        network,
        io_map=[("continuous", "continuous"), ("categorical", "categorical")],
        prefix2="net/",
    )
    # merge_models prefixed the network's output too; give the graph its public output name back.
    for node in merged.graph.node:
        node.output[:] = [OUTPUT_NAME if o == f"net/{OUTPUT_NAME}" else o for o in node.output]
    merged.graph.output[0].name = OUTPUT_NAME
    merged.graph.name = "fulqrun_deal_win"
    unique_opsets = {(o.domain or "", o.version): o for o in merged.opset_import}
    del merged.opset_import[:]
    merged.opset_import.extend(unique_opsets.values())
    onnx.checker.check_model(merged, full_check=True)
    return merged


def raw_feeds(spec: FittedFeatureSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Raw feature columns as the graph's inputs: float32 [N, 1] and string [N, 1]."""
    feeds = {f.name: frame[f.name].to_numpy(dtype=np.float32).reshape(-1, 1) for f in spec.spec.numeric}
    feeds.update(
        {f.name: frame[f.name].astype(str).to_numpy(dtype=object).reshape(-1, 1) for f in spec.spec.categorical}
    )
    return feeds


def onnx_probabilities(
    model: onnx.ModelProto | bytes | Path, spec: FittedFeatureSpec, frame: pd.DataFrame
) -> np.ndarray:
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(
        str(source) if isinstance(source, Path) else source, providers=["CPUExecutionProvider"]
    )
    return session.run([OUTPUT_NAME], raw_feeds(spec, frame))[0].reshape(-1)


def check_parity(
    model: onnx.ModelProto,
    torch_probabilities: np.ndarray,
    spec: FittedFeatureSpec,
    frame: pd.DataFrame,
    atol: float = PARITY_ATOL,
) -> float:
    """Max |PyTorch - onnxruntime| over `frame`; raises ExportParityError above `atol`."""
    diff = float(np.max(np.abs(onnx_probabilities(model, spec, frame) - torch_probabilities)))
    if not diff <= atol:
        raise ExportParityError(f"ONNX output differs from PyTorch by {diff:.3g} (> {atol:g}) on {len(frame)} rows")
    log.info("export parity: max abs diff %.3g over %d rows", diff, len(frame))
    return diff
