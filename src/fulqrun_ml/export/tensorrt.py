"""`fulqrun-ml export --tensorrt`: a TensorRT engine (`model.plan`) for GPU hosts running Triton.

TensorRT cannot run the string LabelEncoders of our preprocessing, so the one published graph is split at
its seam (the `continuous` / `categorical` tensors the FeatureSpec graph hands the network):

  preprocess.onnx   raw columns -> encoded tensors      served by onnxruntime on CPU instances
  network.onnx      encoded tensors -> probability       compiled by TensorRT into model.plan (GPU)

Triton chains them with an ensemble (see `serving/deploy.py`, `tensorrt_ensemble_configs`), so clients still
send raw CRM fields. The split is exact (the two halves are sub-graphs of model.onnx; a test checks the
chained halves against the whole in onnxruntime); the engine is built with an optimisation profile over
the batch axis and checked against onnxruntime within an FP16 tolerance before it is published.

The engine is specific to the GPU model and TensorRT version it was built with, which are recorded in
`tensorrt.json`; rebuild on the serving host's GPU. Building needs the `tensorrt` Python package and a
CUDA GPU; neither is installable on the CPU machines this project is tested on, so those tests are
skipped with that reason.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from fulqrun_ml.errors import FulqrunMLError

log = logging.getLogger(__name__)
PREPROCESS_FILE = "preprocess.onnx"
NETWORK_FILE = "network.onnx"
PLAN_FILE = "model.plan"
REPORT_FILE = "tensorrt.json"
SEAM = ("continuous", "categorical")
# FP16 engines differ from the FP32 graph by rounding; probabilities are compared at this tolerance.
FP16_ATOL = 2e-2


class TensorRTUnavailableError(FulqrunMLError):
    """The machine cannot build engines: no `tensorrt` package or no CUDA GPU."""


def tensorrt_unavailable_reason() -> str | None:
    """Why an engine cannot be built here, or None when it can (tests skip with this reason)."""
    if importlib.util.find_spec("tensorrt") is None:
        return "the `tensorrt` Python package is not installed (it needs an NVIDIA GPU host)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    return None


def split_graph(model: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(preprocess, network): the published graph cut at the FeatureSpec -> network seam."""
    raw_inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    produced = {name for node in model.graph.node for name in node.output}
    missing = [name for name in SEAM if name not in produced]
    if missing:
        raise FulqrunMLError(f"the graph has no {', '.join(missing)} tensor to split at; export it again")
    extractor = onnx.utils.Extractor(model)
    preprocess = extractor.extract_model(raw_inputs, list(SEAM))
    network = extractor.extract_model(list(SEAM), outputs)
    for part in (preprocess, network):
        onnx.checker.check_model(part, full_check=True)
    return preprocess, network


def write_split(model_path: Path, out_dir: Path) -> tuple[Path, Path]:
    preprocess, network = split_graph(onnx.load(str(model_path)))
    paths = (out_dir / PREPROCESS_FILE, out_dir / NETWORK_FILE)
    for part, path in zip((preprocess, network), paths, strict=True):
        path.write_bytes(part.SerializeToString())
    return paths


def build_engine(
    network_path: Path, plan_path: Path, max_batch_size: int = 1024, fp16: bool = True, opt_batch_size: int = 64
) -> dict[str, Any]:
    """Compile network.onnx into a serialized TensorRT engine with a dynamic batch axis."""
    reason = tensorrt_unavailable_reason()
    if reason:
        raise TensorRTUnavailableError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(network_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FulqrunMLError(f"TensorRT could not parse {network_path.name}: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        width = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *width), (opt_batch_size, *width), (max_batch_size, *width))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise FulqrunMLError("TensorRT failed to build the engine (see the TensorRT log above)")
    plan_path.write_bytes(bytes(engine))
    return {
        "tensorrt_version": trt.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "precision": "fp16" if fp16 else "fp32",
        "max_batch_size": max_batch_size,
        "opt_batch_size": opt_batch_size,
        "plan_bytes": plan_path.stat().st_size,
    }


def run_engine(plan_path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Probabilities from a serialized engine (torch CUDA tensors as the I/O buffers)."""
    import tensorrt as trt
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    buffers = {name: torch.from_numpy(np.ascontiguousarray(value)).cuda() for name, value in feeds.items()}
    for name, tensor in buffers.items():
        context.set_input_shape(name, tuple(tensor.shape))
    output_name = next(
        engine.get_tensor_name(i)
        for i in range(engine.num_io_tensors)
        if engine.get_tensor_mode(engine.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT
    )
    output = torch.empty(tuple(context.get_tensor_shape(output_name)), dtype=torch.float32, device="cuda")
    buffers[output_name] = output
    for name, tensor in buffers.items():
        context.set_tensor_address(name, tensor.data_ptr())
    stream = torch.cuda.Stream()
    if not context.execute_async_v3(stream.cuda_stream):
        raise FulqrunMLError("TensorRT execution failed")
    stream.synchronize()
    return output.cpu().numpy().reshape(-1)


def export_tensorrt(version_dir: Path, raw_feeds: dict[str, np.ndarray], max_batch_size: int = 1024) -> dict:
    """Split model.onnx in `version_dir` (a staging directory), build model.plan, check it against
    onnxruntime on `raw_feeds` (holdout rows), write tensorrt.json. Raises before anything is published
    when the engine disagrees by more than FP16_ATOL."""
    preprocess_path, network_path = write_split(version_dir / "model.onnx", version_dir)
    report = build_engine(network_path, version_dir / PLAN_FILE, max_batch_size)
    rows = min(len(next(iter(raw_feeds.values()))), max_batch_size)
    feeds = {name: value[:rows] for name, value in raw_feeds.items()}
    encoded = ort.InferenceSession(str(preprocess_path), providers=["CPUExecutionProvider"]).run(list(SEAM), feeds)
    expected = ort.InferenceSession(str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, feeds
    )[0]
    got = run_engine(version_dir / PLAN_FILE, dict(zip(SEAM, encoded, strict=True)))
    report["max_abs_diff_vs_onnxruntime"] = float(np.max(np.abs(got - expected.reshape(-1))))
    report["rows_checked"] = rows
    if not report["max_abs_diff_vs_onnxruntime"] <= FP16_ATOL:
        raise FulqrunMLError(
            f"the TensorRT engine differs from onnxruntime by {report['max_abs_diff_vs_onnxruntime']:.3g} "
            f"(> {FP16_ATOL}); not publishing"
        )
    (version_dir / REPORT_FILE).write_text(json.dumps(report, indent=2))
    log.info("TensorRT engine: %s", report)
    return report
