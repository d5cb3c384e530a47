"""The discrete time grid of the close-timing survival task and the curves defined on it.

A model (or a Kaplan-Meier baseline) is reduced to one array: `cdf` [N, K], P(closed by the end of bin k) at the
K right edges e_1..e_K (e_0 = 0). Every derived quantity (restricted mean, median, P(closed by any t)) is computed
here once, in numpy for metrics and baselines and in torch for the network and its ONNX graph, so a score never
depends on which of the two produced the curve.

Between edges the curve is interpolated linearly (events spread uniformly inside a bin, pycox's "CDI"): the only
choice that gives a continuous median and a restricted mean that does not jump by a whole bin width.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fulqrun_ml.errors import FulqrunMLError


class SurvivalConfigError(FulqrunMLError, ValueError):
    """Bin edges that cannot define a discrete-time grid (the message names the field)."""


def validate_bin_edges(edges: Sequence[float], horizon_days: float, field: str = "task.bin_edges") -> np.ndarray:
    """Edges [0, e_1, ..., e_K] as float64: strictly increasing, from 0, ending exactly at the horizon.

    The last edge must equal the horizon: beyond it nothing is observed (rows are censored there), short of it
    the closes between the last edge and the horizon would be neither events nor at risk."""
    values = np.asarray(list(edges), dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise SurvivalConfigError(f"{field}: need at least two edges (0 and the horizon), got {list(edges)}")
    if not np.isfinite(values).all():
        raise SurvivalConfigError(f"{field}: edges must be finite numbers of days, got {list(edges)}")
    if values[0] != 0.0:
        raise SurvivalConfigError(f"{field}: the first edge must be 0 (as_of), got {values[0]:g}")
    steps = np.diff(values)
    if np.any(steps == 0):
        duplicate = values[1:][steps == 0][0]
        raise SurvivalConfigError(f"{field}: duplicate edge {duplicate:g}; edges must be strictly increasing")
    if np.any(steps < 0):
        raise SurvivalConfigError(f"{field}: edges must be sorted ascending, got {list(edges)}")
    if values[-1] > horizon_days:
        raise SurvivalConfigError(
            f"{field}: edge {values[-1]:g} lies beyond task.horizon_days={horizon_days:g}; nothing is observed there"
        )
    if values[-1] < horizon_days:
        raise SurvivalConfigError(
            f"{field}: the last edge {values[-1]:g} must equal task.horizon_days={horizon_days:g}, or closes after "
            f"it would be neither events nor censored"
        )
    return values


def bin_index(durations: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin k of each duration with e_k < d <= e_{k+1} (right-closed: a close at exactly 7.0 days is in week 1),
    clipped to the last bin (rows censored at the horizon are at risk in every bin)."""
    k = np.searchsorted(edges[1:], np.asarray(durations, dtype=np.float64), side="left")
    return np.clip(k, 0, len(edges) - 2)


def survival_with_origin(cdf: np.ndarray) -> np.ndarray:
    """S at e_0..e_K, [N, K + 1] (S(0) = 1)."""
    cdf = np.asarray(cdf, dtype=np.float64)
    return np.concatenate([np.ones((cdf.shape[0], 1)), 1.0 - cdf], axis=1)


def restricted_mean(cdf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Expected days to close within the horizon, E[min(T, horizon)] = integral of S over [0, horizon] [N]."""
    s = survival_with_origin(cdf)
    return ((s[:, :-1] + s[:, 1:]) / 2.0 * np.diff(edges)).sum(axis=1)


def cdf_at(cdf: np.ndarray, edges: np.ndarray, t: float) -> np.ndarray:
    """P(closed by t) for 0 <= t <= horizon, linear between edges [N]."""
    if not 0.0 <= t <= edges[-1]:
        raise SurvivalConfigError(f"t={t:g} is outside the grid [0, {edges[-1]:g}]")
    full = 1.0 - survival_with_origin(cdf)
    return np.array([np.interp(t, edges, row) for row in full]) if full.size else np.zeros(0)


def median_days(cdf: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The first t with P(closed by t) = 0.5 (linear between edges); the horizon where the curve never gets
    there (the median lies beyond what the model can say)."""
    full = 1.0 - survival_with_origin(cdf)
    out = np.full(full.shape[0], float(edges[-1]))
    reached = full[:, -1] >= 0.5
    for row in np.flatnonzero(reached):
        k = int(np.argmax(full[row] >= 0.5))  # first edge index at or past 0.5 (k >= 1: F(0) = 0)
        lo, hi = full[row, k - 1], full[row, k]
        share = (0.5 - lo) / (hi - lo) if hi > lo else 1.0
        out[row] = edges[k - 1] + share * (edges[k] - edges[k - 1])
    return out


def hazards_from_cdf(cdf: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Discrete hazards h_k = 1 - S(e_{k+1}) / S(e_k), clipped to (eps, 1 - eps) so a likelihood stays finite."""
    s = survival_with_origin(cdf)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = 1.0 - np.where(s[:, :-1] > 0, s[:, 1:] / s[:, :-1], 0.0)
    return np.clip(h, eps, 1.0 - eps)


def torch_cdf(hazard_logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    """P(closed by the end of bin k) = 1 - prod_{j<=k} (1 - h_j), h = sigmoid(logit / T): monotone in k by
    construction. Computed as 1 - exp(cumsum(logsigmoid(-z))) for float32 accuracy when hazards are tiny."""
    z = hazard_logits / temperature
    return 1.0 - torch.exp(torch.cumsum(torch.nn.functional.logsigmoid(-z), dim=-1))


def torch_restricted_mean(cdf: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """`restricted_mean` in torch (the same trapezoid rule), [N]."""
    s = torch.cat([torch.ones_like(cdf[:, :1]), 1.0 - cdf], dim=1)
    return ((s[:, :-1] + s[:, 1:]) * 0.5 * widths).sum(dim=1)
