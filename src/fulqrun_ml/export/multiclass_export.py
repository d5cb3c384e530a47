"""Export of a multiclass run: one ONNX graph from raw feature columns to `class_probability` [N, K].

The graph is the FeatureSpec's preprocessing, the backbone's K logits, the validation temperature and a softmax,
so serving runs no Python and the probabilities sum to one by construction. Parity with PyTorch is checked on
every holdout probability before anything is published; the version carries classes.json (output column k is
class k) and calibration.json next to the usual files (`package.publish_run`).
"""

from __future__ import annotations

import onnx
import torch
from torch import nn

from fulqrun_ml.export.onnx_export import _torch_to_onnx, merge_with_preprocessing
from fulqrun_ml.features.spec import FittedFeatureSpec

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
