"""Post-hoc calibration fitted on the validation split: temperature (default), Platt or isotonic.

Why temperature by default: a single parameter cannot overfit a small calibration split, keeps the ranking
(AUC) unchanged, and exports as one Div node. Isotonic (`task.calibration=isotonic`) fixes any monotone
miscalibration, at the price of a step function that needs more validation rows and may tie scores.
Platt (`platt`: sigmoid(a * logit + b)) adds the intercept temperature lacks: it corrects a base-rate shift
between training and deployment without touching the ranking.
All three fit with per-row weights when given: the validation split's censoring weights
(`data/snapshots.py::TimeSplit.censoring_weights`), so calibration targets the uncensored label mix.
All are fitted on the validation split (later in time than training), never on the holdout, and the record
says so from the data itself: `fitted_on` holds the split's name, its row count and a hash of the labels and
weights the fit actually received (`rows_hash`), so a fit on any other rows shows in the record. All are
plain torch modules mapping logits to probabilities, so the same object scores in PyTorch and is exported
into the ONNX graph by the ordinary exporter (no hand-built graph surgery).

Isotonic in a graph: sklearn's fitted function is piecewise linear through its thresholds (x_i, y_i) and
constant outside them, which is exactly y = y_0 + sum_i slope_i * clip(x - x_i, 0, x_{i+1} - x_i):
elementary Sub / Max / Min / Mul / ReduceSum ops.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.isotonic import IsotonicRegression
from torch import nn

CalibrationMethod = Literal["temperature", "platt", "isotonic"]
CALIBRATION_METHODS = ("temperature", "platt", "isotonic")


def _fit_logit_map(
    logits: np.ndarray, labels: np.ndarray, weights: np.ndarray | None, with_bias: bool, max_iter: int = 200
) -> tuple[float, float]:
    """Minimise the (weighted) validation log loss of sigmoid(logit / T + b) with L-BFGS; returns (T, b)."""
    z = torch.as_tensor(np.array(logits, dtype=np.float64))
    y = torch.as_tensor(np.array(labels, dtype=np.float64))
    w = None if weights is None else torch.as_tensor(np.array(weights, dtype=np.float64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=with_bias)
    params = [log_t, bias] if with_bias else [log_t]
    optimizer = torch.optim.LBFGS(params, lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z / log_t.exp() + bias, y, weight=w)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0)), float(bias.detach())


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, max_iter: int = 200, weights: np.ndarray | None = None
) -> float:
    """Minimise validation log loss over log T with L-BFGS; returns T (> 0)."""
    return _fit_logit_map(logits, labels, weights, with_bias=False, max_iter=max_iter)[0]


def fit_isotonic(
    probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> IsotonicRegression:
    """A monotone map of uncalibrated probabilities to observed rates, clipped outside the fitted range."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    return iso.fit(
        np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.float64), sample_weight=weights
    )


def rows_hash(labels: np.ndarray, weights: np.ndarray | None = None) -> str:
    """sha256 of the rows a calibrator is fitted on: their labels and (when given) their weights, as float64
    in row order. Anyone holding the split can recompute it, and a fit on other rows gives another hash."""
    digest = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.float64).tobytes())
    if weights is not None:
        digest.update(b"weights")
        digest.update(np.ascontiguousarray(weights, dtype=np.float64).tobytes())
    return digest.hexdigest()


def fit_calibration(
    method: CalibrationMethod,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    split: str,
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """The calibration record stored with the run and the model version (calibration.json).

    `split` names the rows passed in (always "val" in training); `fitted_on` records it with the row count
    and `rows_hash` of exactly the labels and weights this fit used, so the record cannot claim a split the
    data did not come from."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"task.calibration must be one of {', '.join(CALIBRATION_METHODS)}, got {method!r}")
    if weights is not None and (len(weights) != len(labels) or not np.all(np.isfinite(weights) & (weights > 0))):
        raise ValueError("calibration weights must be finite, positive and one per validation row")
    record: dict[str, Any] = {
        "method": method,
        "fitted_on": {"split": split, "rows": len(labels), "hash": rows_hash(labels, weights)},
        "weighted": weights is not None,
    }
    if method == "temperature":
        record["temperature"] = fit_temperature(logits, labels, weights=weights)
    elif method == "platt":
        record["temperature"], record["bias"] = _fit_logit_map(logits, labels, weights, with_bias=True)
    else:
        iso = fit_isotonic(torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32)).numpy(), labels, weights)
        record["x"] = [float(v) for v in iso.X_thresholds_]
        record["y"] = [float(v) for v in iso.y_thresholds_]
    return record


class TemperatureCalibrator(nn.Module):
    """logits -> sigmoid(logit / T + b); b = 0 for temperature scaling, fitted for Platt."""

    def __init__(self, temperature: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float32))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits / self.temperature + self.bias)


class IsotonicCalibrator(nn.Module):
    """logits -> the isotonic map of sigmoid(logit), as a sum of clipped linear pieces (see module doc)."""

    def __init__(self, x: list[float], y: list[float]) -> None:
        super().__init__()
        xs = torch.tensor(x, dtype=torch.float32)
        ys = torch.tensor(y, dtype=torch.float32)
        if xs.numel() == 0 or xs.numel() != ys.numel():
            raise ValueError("isotonic calibration needs matching, non-empty x and y thresholds")
        widths = xs[1:] - xs[:-1]
        self.register_buffer("y0", ys[:1])
        self.register_buffer("starts", xs[:-1])
        self.register_buffer("widths", widths)
        self.register_buffer("slopes", (ys[1:] - ys[:-1]) / widths.clamp_min(1e-12))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)  # [N, 1] broadcasts against the [K] pieces
        pieces = torch.minimum(torch.relu(p - self.starts), self.widths)
        return self.y0 + (pieces * self.slopes).sum(dim=-1, keepdim=True)


def isotonic_slopes(record: dict[str, Any], probabilities: np.ndarray) -> np.ndarray:
    """|d calibrated / d p| at each uncalibrated probability: how much the isotonic map amplifies a rounding
    difference in its input (steep where two neighbouring thresholds are close). Export parity uses it."""
    x, y = np.asarray(record["x"], dtype=np.float64), np.asarray(record["y"], dtype=np.float64)
    if x.size < 2:
        return np.zeros(len(probabilities))
    slopes = np.abs(np.diff(y)) / np.maximum(np.diff(x), 1e-12)
    segment = np.clip(np.searchsorted(x, probabilities, side="right") - 1, 0, slopes.size - 1)
    inside = (probabilities >= x[0]) & (probabilities <= x[-1])
    # A neighbour's slope too: a rounding difference can move p across a threshold.
    neighbour = np.maximum(slopes[segment], slopes[np.clip(segment + 1, 0, slopes.size - 1)])
    return np.where(inside, np.maximum(slopes[segment], neighbour), 0.0)


def calibrator_from_record(record: dict[str, Any] | None) -> nn.Module:
    """The torch module of a calibration.json record; none recorded (old runs) means T = 1."""
    method = (record or {}).get("method", "none")
    if method == "isotonic":
        return IsotonicCalibrator(record["x"], record["y"])
    return TemperatureCalibrator(float((record or {}).get("temperature", 1.0)), float((record or {}).get("bias", 0.0)))
