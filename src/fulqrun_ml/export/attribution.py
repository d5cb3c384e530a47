"""Offline reasons with captum, the reference the served `reasons` must agree with.

The server (serving/python_ort/model.py) ablates each raw field to the training baseline inside one
onnxruntime call. Here the same question is asked of the PyTorch model through captum's FeatureAblation
on the encoded inputs, with baselines = the encoded raw baseline. The two must match within tolerance;
a test checks it against a real Triton server.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from captum.attr import FeatureAblation
from torch import nn

from fulqrun_ml.export.onnx_export import ProbabilityModel
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.calibration import calibrator_from_record


def ablation_effects(
    net: nn.Module, spec: FittedFeatureSpec, frame: pd.DataFrame, calibration: float | dict[str, Any] = 1.0
) -> pd.DataFrame:
    """Per record and field: probability minus probability with that field at its baseline value.
    `calibration` is a temperature or a calibration.json record (temperature, Platt or isotonic), as exported."""
    if isinstance(calibration, float | int):
        calibration = {"method": "temperature", "temperature": float(calibration)}
    model = ProbabilityModel(net, calibrator=calibrator_from_record(calibration)).eval()
    encoded = spec.encode(frame)
    baseline = spec.encode(pd.DataFrame([spec.raw_baseline()]))
    continuous = torch.from_numpy(encoded["continuous"])
    categorical = torch.from_numpy(encoded["categorical"])
    n_cont = continuous.shape[1]
    masks = (
        torch.arange(n_cont).unsqueeze(0),
        torch.arange(n_cont, n_cont + categorical.shape[1]).unsqueeze(0),
    )
    with torch.no_grad():
        effects = FeatureAblation(lambda c, k: model(continuous=c, categorical=k).squeeze(-1)).attribute(
            (continuous, categorical),
            baselines=(torch.from_numpy(baseline["continuous"]), torch.from_numpy(baseline["categorical"])),
            feature_mask=masks,
        )
    values = np.concatenate([effects[0].numpy(), effects[1].numpy().astype(np.float32)], axis=1)
    return pd.DataFrame(values, columns=spec.spec.names, index=frame.index)
