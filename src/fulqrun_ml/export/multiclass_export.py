"""Export of a multiclass run: one ONNX graph from raw feature columns to `class_probability` [N, K].

The graph is the FeatureSpec's preprocessing, the backbone's K logits, the validation temperature and a softmax,
so serving runs no Python and the probabilities sum to one by construction. Parity with PyTorch is checked on
every holdout probability before anything is published; the version carries classes.json (output column k is
class k) and calibration.json next to the usual files (`package.publish_run`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
import pandas as pd
import torch
from torch import nn

from fulqrun_ml.export.onnx_export import _torch_to_onnx, check_parity, merge_with_preprocessing
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.run_record import RunRecord
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.tasks.multiclass import CLASSES_FILE, predict_class_probabilities

CLASS_PROBABILITY = "class_probability"


class ClassProbabilityModel(nn.Module):
    """Backbone logits / T -> softmax: [N, K] class probabilities."""

    def __init__(self, net: nn.Module, temperature: float) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("temperature", torch.tensor(float(temperature), dtype=torch.float32))

    def forward(self, continuous: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(continuous=continuous, categorical=categorical) / self.temperature, dim=-1)


def export_multiclass_onnx(net: nn.Module, spec: FittedFeatureSpec, temperature: float) -> onnx.ModelProto:
    """Preprocessing + backbone + temperature + softmax as one checked graph."""
    network = _torch_to_onnx(ClassProbabilityModel(net, temperature).eval(), spec, [CLASS_PROBABILITY])
    return merge_with_preprocessing(network, spec, public_names=(CLASS_PROBABILITY,), graph_name="fulqrun_multiclass")


def export_multiclass_run(run_dir: Path, models_dir: Path, name: str | None = None) -> tuple[ModelVersion, float]:
    """Export, check parity on every holdout probability, publish atomically. Returns the version and the gap."""
    from fulqrun_ml.export.package import load_calibration, load_trained_net, publish_run, raw_inputs

    run_dir = Path(run_dir)
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    classes = json.loads((run_dir / CLASSES_FILE).read_text())
    calibration = load_calibration(run_dir)
    temperature = float(calibration.get("temperature", 1.0))
    graph = export_multiclass_onnx(net, spec, temperature)
    reference = predict_class_probabilities(net, spec.encode(holdout), temperature)
    parity = check_parity(graph, reference.reshape(-1), spec, holdout, output=CLASS_PROBABILITY)
    record = RunRecord.load(run_dir)
    metrics: dict[str, Any] = json.loads((run_dir / "metrics.json").read_text())
    metrics["export_parity_max_abs_diff"] = parity
    model = metrics["model"]
    metadata = {
        "inputs": raw_inputs(spec),
        "outputs": [{"name": CLASS_PROBABILITY, "dtype": "float32", "shape": [-1, len(classes)]}],
        "classes": classes,
        "parity_max_abs_diff": parity,
        "calibration": calibration,
        "holdout_log_loss": model["log_loss"],
        "holdout_macro_f1": model["macro_f1"],
    }
    copies = ("feature_spec.json", "net_state.pt", CLASSES_FILE)
    version = publish_run(models_dir, name, run_dir, record, graph, copies, metrics, metadata, calibration=calibration)
    return version, parity
