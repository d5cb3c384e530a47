"""Holdout and validation metrics of a discrete-time survival model, computed on the curve `cdf` [N, K]
(P(closed by each right bin edge), `survival_grid.py`) against (duration_days, event).

No inverse-probability-of-censoring weights anywhere: the snapshot grid ends one horizon before extraction, so
every row is followed to the horizon and the only censoring is administrative, at the horizon itself. For any
t <= horizon, "closed by t" is therefore observed for every row, and the Brier score / ECE of P(closed by t)
are plain binary metrics.

Harrell's concordance is written here with numpy rather than imported: scikit-survival (the usual source) pins
scikit-learn < 1.9, and the project pins a newer scikit-learn; lifelines and pycox are not installed, and the
definition is a few lines.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.tasks.survival_grid import bin_index, cdf_at, hazards_from_cdf, median_days, restricted_mean

ECE_DAYS = 30.0  # the sales team's "closes this month" question
CHUNK = 2048  # rows per block of the pairwise concordance count: memory O(CHUNK * N)


def harrell_concordance(predicted_time: np.ndarray, durations: np.ndarray, events: np.ndarray) -> float:
    """Harrell's C: among pairs (i, j) with d_i < d_j and i an event (the earlier close is observed), the share
    where the model predicts i sooner (predicted_time_i < predicted_time_j); prediction ties count 1/2. Pairs
    tied in duration are not comparable. 0.5 = no ranking skill; NaN where no pair is comparable."""
    pred = np.asarray(predicted_time, dtype=np.float64).reshape(-1)
    d = np.asarray(durations, dtype=np.float64).reshape(-1)
    e = np.asarray(events).reshape(-1).astype(bool)
    if not (pred.shape == d.shape == e.shape):
        raise ValueError(f"predicted_time, durations and events differ in length: {pred.size}, {d.size}, {e.size}")
    concordant, comparable = 0.0, 0
    rows = np.flatnonzero(e)
    for start in range(0, rows.size, CHUNK):
        i = rows[start : start + CHUNK]
        later = d[None, :] > d[i, None]  # [chunk, N]: j closes (or is censored) after i's observed close
        sooner = pred[i, None] < pred[None, :]
        tied = pred[i, None] == pred[None, :]
        comparable += int(later.sum())
        concordant += float((later & sooner).sum()) + 0.5 * float((later & tied).sum())
    return concordant / comparable if comparable else float("nan")


def brier_by_edge(cdf: np.ndarray, durations: np.ndarray, events: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Brier score of P(closed by e_k) against 1[event and d <= e_k] at every right edge [K]."""
    closed = (np.asarray(events, bool)[:, None]) & (np.asarray(durations)[:, None] <= edges[None, 1:])
    return ((np.asarray(cdf, dtype=np.float64) - closed) ** 2).mean(axis=0)


def discrete_nll(cdf: np.ndarray, durations: np.ndarray, events: np.ndarray, edges: np.ndarray) -> float:
    """The logistic-hazard negative log-likelihood per row (the training loss, `survival.logistic_hazard_nll`),
    from any curve: -sum over bins at risk of log(1 - h), plus -log h in the event bin (else -log(1 - h) there)."""
    h = hazards_from_cdf(cdf)
    k = bin_index(durations, edges)
    ev = np.asarray(events, dtype=bool)
    at_risk = np.arange(h.shape[1])[None, :] <= k[:, None]
    hit = (np.arange(h.shape[1])[None, :] == k[:, None]) & ev[:, None]
    loglik = np.where(hit, np.log(h), np.log1p(-h)) * at_risk
    return float(-loglik.sum(axis=1).mean())


def survival_report(cdf: np.ndarray, durations: np.ndarray, events: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    """Every holdout number of one survival curve set, as plain floats (same keys for model and baselines)."""
    d = np.asarray(durations, dtype=np.float64)
    ev = np.asarray(events).astype(bool)
    horizon = float(edges[-1])
    expected = restricted_mean(cdf, edges)
    median = median_days(cdf, edges)
    briers = brier_by_edge(cdf, d, ev, edges)
    at_horizon = binary_report(np.asarray(cdf, dtype=np.float64)[:, -1], ev)
    report: dict[str, Any] = {
        "concordance": harrell_concordance(expected, d, ev),
        "integrated_brier": float(briers.mean()),  # equal weight per edge (weekly edges: a time average)
        "nll": discrete_nll(cdf, d, ev, edges),
        "ece_horizon": at_horizon["ece"],
        "auc_horizon": at_horizon["auc"],
        "mae_median_days": float(np.abs(median[ev] - d[ev]).mean()) if ev.any() else float("nan"),
        "mae_expected_days": float(np.abs(np.minimum(d, horizon) - expected).mean()),
        "n": int(d.size),
        "n_events": int(ev.sum()),
    }
    if horizon >= ECE_DAYS:  # a grid shorter than 30 days has no "this month" question to score
        at_30 = binary_report(cdf_at(cdf, edges, ECE_DAYS), ev & (d <= ECE_DAYS))
        report.update({"ece_30d": at_30["ece"], "auc_30d": at_30["auc"]})
    report.update({f"brier_{edge:g}d": float(b) for edge, b in zip(edges[1:], briers, strict=True)})
    return report


class ConcordanceMetric(Metric):
    """Harrell's C over a whole validation epoch (pairs span batches, so it cannot be averaged per batch);
    update with (predicted expected days, target [N, 2] = (event, duration_days))."""

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("predicted", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        self.predicted.append(predicted.detach().float().reshape(-1))
        self.target.append(target.detach().float().reshape(-1, 2))

    def compute(self) -> torch.Tensor:
        pred = torch.cat(self.predicted) if isinstance(self.predicted, list) else self.predicted
        target = torch.cat(self.target) if isinstance(self.target, list) else self.target
        target = target.reshape(-1, 2).cpu().numpy()
        c = harrell_concordance(pred.cpu().numpy(), target[:, 1], target[:, 0] > 0.5)
        return torch.tensor(0.5 if np.isnan(c) else c)
