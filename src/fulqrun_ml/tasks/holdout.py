"""Holdout evaluation of a trained backbone, one function per target kind, shared by every tabular task.

Binary: calibration (temperature, Platt or isotonic) is fitted on the validation split (censoring-weighted;
the record's `fitted_on` hashes the labels and weights it received), then the model, the model before
calibration and every baseline column (rep, oracle, ...) are scored on the test split by the same metric code.
Regression: the model's predictions (decoded to the task's units) next to each baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from fulqrun_ml.data.snapshots import WEIGHT_COLUMN
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import CalibrationMethod, fit_calibration
from fulqrun_ml.tasks.metrics import binary_report, regression_report
from fulqrun_ml.tasks.regression import predict_values


@dataclass(frozen=True)
class HoldoutEvaluation:
    metrics: dict[str, dict[str, float]]  # who -> metric -> value; "model" first
    scores: dict[str, np.ndarray]  # who -> holdout scores (probabilities or predictions), for plots
    calibration: dict[str, Any] | None  # the calibration.json record (binary only)


def evaluate_binary(
    net: nn.Module,
    spec: FittedFeatureSpec,
    frames: dict[str, pd.DataFrame],
    baselines: dict[str, str],
    method: CalibrationMethod = "temperature",
) -> HoldoutEvaluation:
    val, holdout = frames["val"], frames["test"]
    # The censoring weights of the time split where the datamodule made them (user tables have none).
    weights = val[WEIGHT_COLUMN].to_numpy() if WEIGHT_COLUMN in val else None
    logits = predict_logits(net, spec.encode(val))
    calibration = fit_calibration(method, logits, val["label"].to_numpy(), split="val", weights=weights)
    encoded = spec.encode(holdout)
    labels = holdout["label"].to_numpy()
    probabilities = predict_probabilities(net, encoded, calibration)
    metrics = {
        "model": binary_report(probabilities, labels),
        "model_uncalibrated": binary_report(predict_probabilities(net, encoded), labels),
    }
    scores = {"model": probabilities}
    for who, column in baselines.items():
        metrics[who] = binary_report(holdout[column].to_numpy(), labels)
        scores[who] = holdout[column].to_numpy()
    return HoldoutEvaluation(metrics, scores, calibration)


def evaluate_regression(
    net: nn.Module,
    spec: FittedFeatureSpec,
    scaling: TargetScaling,
    frames: dict[str, pd.DataFrame],
    baselines: dict[str, str],
) -> HoldoutEvaluation:
    holdout = frames["test"]
    targets = holdout["label"].to_numpy(dtype=np.float64)
    predictions = predict_values(net, spec.encode(holdout), scaling)
    metrics = {"model": regression_report(predictions, targets)}
    scores = {"model": predictions}
    for who, column in baselines.items():
        metrics[who] = regression_report(holdout[column].to_numpy(), targets)
        scores[who] = holdout[column].to_numpy()
    return HoldoutEvaluation(metrics, scores, None)
