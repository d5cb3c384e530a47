"""Export a trained backbone plus its FeatureSpec as ONE ONNX graph: raw feature columns -> one output.

Binary tasks output `probability` (backbone + calibration: temperature or isotonic, `tasks/calibration.py`);
regression tasks output `prediction` in the task's units (backbone + inverse target scaling,
`features/target.py`); survival tasks output `close_probability` [N, K] and `expected_days` [N] (backbone hazard
logits / T -> 1 - cumprod(1 - hazard) -> restricted mean, `tasks/survival.py::SurvivalCurves`).
Steps: torch.onnx.export (the torch.export-based exporter, dynamic batch axis) of the wrapped backbone; the
FeatureSpec compiled to a preprocessing graph; the two merged with
`onnx.compose.merge_models`; checked with the ONNX checker; then parity against PyTorch + Python encoders
on held-out rows.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from torch import nn

from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.features.onnx_graph import build_preprocessing_graph
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.calibration import TemperatureCalibrator, calibrator_from_record, isotonic_slopes
from fulqrun_ml.tasks.survival import CLOSE_PROBABILITY, EXPECTED_DAYS, SurvivalCurves

log = logging.getLogger(__name__)
OUTPUT_NAME = "probability"  # binary tasks
PREDICTION_OUTPUT = "prediction"  # regression tasks
PARITY_ATOL = 1e-5
PARITY_RTOL = 1e-5  # regression outputs are in task units (days, money): float32 error grows with size
INPUT_ROUNDING = 1e-6  # probability difference of float32 runtimes, amplified by an isotonic step's slope


class ProbabilityModel(nn.Module):
    """Backbone logits -> calibrated probabilities [N, 1]: sigmoid(logit / T), or `calibrator(logit)` for any
    calibration module (isotonic)."""

    def __init__(self, net: nn.Module, temperature: float = 1.0, calibrator: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net
        self.calibrator = calibrator if calibrator is not None else TemperatureCalibrator(temperature)

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.calibrator(self.net(continuous=continuous, categorical=categorical))


class PredictionModel(nn.Module):
    """Backbone output (scaled target) -> prediction in the task's units [N, 1]."""

    def __init__(self, net: nn.Module, scaling: TargetScaling) -> None:
        super().__init__()
        self.net = net
        self.log1p = scaling.log1p
        self.register_buffer("mean", torch.tensor(scaling.mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(scaling.std, dtype=torch.float32))

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        value = self.net(continuous=continuous, categorical=categorical) * self.std + self.mean
        return torch.expm1(value) if self.log1p else value


def output_name(target: TargetScaling | None) -> str:
    return OUTPUT_NAME if target is None else PREDICTION_OUTPUT


def torch_to_onnx(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: tuple[Any, ...],
) -> onnx.ModelProto:
    """torch.onnx.export (dynamo) of any wrapper into one self-contained graph: the one place every exporter
    (tabular, survival, sequence fusion, forecaster) turns a module into ONNX."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "net.onnx"
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,  # small models: one self-contained file travels more safely
            verbose=False,
        )
        return onnx.load(str(path))


def _torch_to_onnx(wrapper: nn.Module, spec: FittedFeatureSpec, outputs: list[str]) -> onnx.ModelProto:
    """A wrapper taking (continuous, categorical), dynamic batch axis."""
    example = (
        torch.zeros(2, len(spec.spec.numeric), dtype=torch.float32),
        torch.zeros(2, len(spec.spec.categorical), dtype=torch.int64),
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    return torch_to_onnx(wrapper, example, ["continuous", "categorical"], outputs, ({0: batch}, {0: batch}))


def export_survival_onnx(
    net: nn.Module, spec: FittedFeatureSpec, edges: list[float] | np.ndarray, temperature: float = 1.0
) -> onnx.ModelProto:
    """Preprocessing + backbone hazard logits + temperature + curve, one graph from raw feature columns to
    `close_probability` [N, K] (monotone in k by construction) and `expected_days` [N]."""
    wrapper = SurvivalCurves(net, edges, temperature).eval()
    outputs = (CLOSE_PROBABILITY, EXPECTED_DAYS)
    network = _torch_to_onnx(wrapper, spec, list(outputs))
    return merge_with_preprocessing(network, spec, public_names=outputs, graph_name="fulqrun_close_timing_survival")


def export_network(
    net: nn.Module,
    spec: FittedFeatureSpec,
    temperature: float = 1.0,
    calibration: dict | None = None,
    target: TargetScaling | None = None,
) -> onnx.ModelProto:
    """The backbone + calibration (binary) or + inverse target scaling (regression, `target`), inputs
    `continuous` / `categorical`, with a dynamic batch axis. `calibration` (a calibration.json record)
    takes precedence over `temperature`."""
    if target is not None:
        wrapper: nn.Module = PredictionModel(net, target).eval()
    elif calibration is not None:
        wrapper = ProbabilityModel(net, calibrator=calibrator_from_record(calibration)).eval()
    else:
        wrapper = ProbabilityModel(net, temperature).eval()
    return _torch_to_onnx(wrapper, spec, [output_name(target)])


def export_onnx(
    net: nn.Module,
    spec: FittedFeatureSpec,
    temperature: float = 1.0,
    calibration: dict | None = None,
    target: TargetScaling | None = None,
) -> onnx.ModelProto:
    """Preprocessing + network + calibration (or target scaling) as one self-contained graph taking raw
    feature columns; the output is `probability` for binary tasks and `prediction` for regression."""
    network = export_network(net, spec, temperature, calibration, target)
    output = output_name(target)
    return merge_with_preprocessing(network, spec, public_names=(output,), graph_name="fulqrun_deal_win")


def merge_with_preprocessing(
    network: onnx.ModelProto, spec: FittedFeatureSpec, public_names: tuple[str, ...], graph_name: str
) -> onnx.ModelProto:
    """The FeatureSpec's preprocessing graph feeding `network` at `continuous` / `categorical`, as one checked
    graph. merge_models prefixes every network tensor with `net/`; `public_names` (the network's own outputs
    and any inputs it takes besides the seam) get their public names back."""
    opset = next(o.version for o in network.opset_import if o.domain in ("", "ai.onnx"))
    preprocessing = build_preprocessing_graph(spec, opset=opset, ir_version=network.ir_version)
    merged = onnx.compose.merge_models(
        preprocessing,
        network,
        io_map=[("continuous", "continuous"), ("categorical", "categorical")],
        prefix2="net/",
    )
    public = {f"net/{name}": name for name in public_names}
    for value in (*merged.graph.input, *merged.graph.output):
        value.name = public.get(value.name, value.name)
    for node in merged.graph.node:
        node.input[:] = [public.get(i, i) for i in node.input]
        node.output[:] = [public.get(o, o) for o in node.output]
    merged.graph.name = graph_name
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


def isotonic_parity_atol(record: dict, uncalibrated: np.ndarray) -> np.ndarray:
    """Per-row parity tolerance of an isotonic graph: PARITY_ATOL plus the calibrator's local slope times the
    probability rounding two float32 runtimes may disagree by (the network's logits differ by ~1e-6 between
    PyTorch and onnxruntime; a near-vertical isotonic step turns that into a visible output difference)."""
    return PARITY_ATOL + INPUT_ROUNDING * isotonic_slopes(record, np.asarray(uncalibrated, dtype=np.float64))


def onnx_outputs(
    model: onnx.ModelProto | bytes | Path, spec: FittedFeatureSpec, frame: pd.DataFrame, output: str = OUTPUT_NAME
) -> np.ndarray:
    """The graph's `output` on the raw rows of `frame`, flattened to [N]."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    session = ort.InferenceSession(
        str(source) if isinstance(source, Path) else source, providers=["CPUExecutionProvider"]
    )
    return session.run([output], raw_feeds(spec, frame))[0].reshape(-1)


def onnx_probabilities(
    model: onnx.ModelProto | bytes | Path, spec: FittedFeatureSpec, frame: pd.DataFrame
) -> np.ndarray:
    return onnx_outputs(model, spec, frame, OUTPUT_NAME)


def check_parity(
    model: onnx.ModelProto,
    torch_values: np.ndarray,
    spec: FittedFeatureSpec,
    frame: pd.DataFrame,
    atol: float | np.ndarray = PARITY_ATOL,
    output: str = OUTPUT_NAME,
) -> float:
    """Max |PyTorch - onnxruntime| over `frame`; raises ExportParityError above `atol` (probabilities; a per-row
    array where a calibrator amplifies input rounding, see `isotonic_parity_atol`) or above
    `atol + PARITY_RTOL * |value|` (regression predictions, which are in the task's units)."""
    onnx_values = onnx_outputs(model, spec, frame, output)
    torch_values = np.asarray(torch_values, dtype=np.float64)
    gaps = np.abs(onnx_values - torch_values)
    diff = float(np.max(gaps))
    rtol = PARITY_RTOL if output in (PREDICTION_OUTPUT, EXPECTED_DAYS) else 0.0
    if not np.all(gaps <= np.asarray(atol) + rtol * np.abs(torch_values)):
        raise ExportParityError(
            f"ONNX output differs from PyTorch by {diff:.3g} (> {np.min(atol):g}) on {len(frame)} rows"
        )
    log.info("export parity (%s): max abs diff %.3g over %d rows", output, diff, len(frame))
    return diff
