"""Holdout evaluation of a multiclass model: log loss, macro-F1, accuracy, Brier and per-class calibration.

Why per-class calibration: a stage model is used as probabilities ("30% at risk next month"), so each class's
one-vs-rest reliability matters, not only the argmax. `classwise_ece` is the mean over classes of the
equal-width-bin ECE of P(class) against "is that class" (Kull et al. 2019). Baselines are class-probability
columns `<prefix><class>` (persistence, empirical transition counts, the simulator's oracle), scored by the
same code as the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score
from torch import nn

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.holdout import HoldoutEvaluation
from fulqrun_ml.tasks.multiclass import fit_temperature, predict_class_logits, softmax

ECE_BINS = 10


def ece(probabilities: np.ndarray, hits: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of one class's probabilities against its 0/1 outcomes (equal-width bins)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(probabilities[mask].mean() - hits[mask].mean())
    return float(total)


def multiclass_report(probabilities: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> dict[str, Any]:
    """Log loss, macro-F1, accuracy, multiclass Brier, per-class ECE and their mean, on [N, K] probabilities."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    labels = np.asarray(labels, dtype=int)
    onehot = np.eye(len(classes))[labels]
    picked = np.clip(p[np.arange(len(labels)), labels], 1e-12, None)
    per_class = {c: ece(p[:, k], onehot[:, k]) for k, c in enumerate(classes)}
    present = sorted(set(labels.tolist()) | set(p.argmax(axis=1).tolist()))
    return {
        "log_loss": float(-np.log(picked).mean()),
        "macro_f1": float(f1_score(labels, p.argmax(axis=1), labels=present, average="macro", zero_division=0)),
        "accuracy": float((p.argmax(axis=1) == labels).mean()),
        "brier": float(((p - onehot) ** 2).sum(axis=1).mean()),
        "classwise_ece": float(np.mean(list(per_class.values()))),
        "ece_by_class": per_class,
        "n": len(labels),
    }


def class_columns(prefix: str, classes: tuple[str, ...]) -> list[str]:
    return [f"{prefix}{c}" for c in classes]


def evaluate_multiclass(
    net: nn.Module,
    spec: FittedFeatureSpec,
    frames: dict[str, pd.DataFrame],
    baselines: dict[str, str],
    classes: tuple[str, ...],
) -> HoldoutEvaluation:
    """Temperature fitted on validation, then the model (calibrated and not) and every baseline on the test split."""
    val, holdout = frames["val"], frames["test"]
    temperature = fit_temperature(predict_class_logits(net, spec.encode(val)), val["label"].to_numpy())
    logits = predict_class_logits(net, spec.encode(holdout))
    labels = holdout["label"].to_numpy(dtype=int)
    probabilities = softmax(logits, temperature)
    metrics = {
        "model": multiclass_report(probabilities, labels, classes),
        "model_uncalibrated": multiclass_report(softmax(logits), labels, classes),
    }
    for who, prefix in baselines.items():
        columns = class_columns(prefix, classes)
        rows = holdout[columns].notna().all(axis=1).to_numpy()  # the oracle may not cover every row
        metrics[who] = multiclass_report(holdout.loc[rows, columns].to_numpy(), labels[rows], classes)
    calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "val"}
    return HoldoutEvaluation(metrics, {"model": probabilities}, calibration)
