"""Reliability (calibration) and lift curves on the holdout, as numbers and as PNG figures.

Computed for the model next to the rep's probability and the oracle, so a plot shows at a glance whether
the model's scores can be read as probabilities (reliability) and how much better than random its top
deals are (lift). Uses `matplotlib.figure.Figure` directly (no pyplot), so no global backend or window
state is touched inside training processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

RELIABILITY_BINS = 10
LIFT_POINTS = 20


@dataclass(frozen=True)
class ReliabilityCurve:
    mean_predicted: np.ndarray  # per non-empty bin
    observed_rate: np.ndarray
    counts: np.ndarray


def reliability_curve(probs: np.ndarray, labels: np.ndarray, n_bins: int = RELIABILITY_BINS) -> ReliabilityCurve:
    """Equal-width probability bins; for each non-empty bin, mean prediction vs observed win rate."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    bins = np.clip((probs * n_bins).astype(int), 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    mean_pred = np.bincount(bins, weights=probs, minlength=n_bins)
    observed = np.bincount(bins, weights=labels, minlength=n_bins)
    keep = counts > 0
    return ReliabilityCurve(mean_pred[keep] / counts[keep], observed[keep] / counts[keep], counts[keep])


def lift_curve(probs: np.ndarray, labels: np.ndarray, n_points: int = LIFT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative lift: win rate among the top-scored fraction q of deals divided by the overall win rate.

    Returns (q, lift) at q = 1/n_points ... 1; lift at q = 1 is 1 by construction, a random score is ~1.
    """
    labels = np.asarray(labels, dtype=np.float64)
    order = np.argsort(-np.asarray(probs, dtype=np.float64), kind="stable")
    hits = np.cumsum(labels[order])
    base = labels.mean() if len(labels) else 0.0
    q = np.arange(1, n_points + 1) / n_points
    taken = np.maximum(1, np.round(q * len(labels)).astype(int))
    lift = (hits[taken - 1] / taken) / base if base > 0 else np.ones_like(q)
    return q, lift


def calibration_figure(scores: dict[str, np.ndarray], labels: np.ndarray) -> Figure:
    fig = Figure(figsize=(5.5, 5), dpi=100)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, probs in scores.items():
        curve = reliability_curve(probs, labels)
        ax.plot(curve.mean_predicted, curve.observed_rate, marker="o", label=name)
    ax.set(xlabel="predicted win probability", ylabel="observed win rate", xlim=(0, 1), ylim=(0, 1))
    ax.set_title("Reliability on the holdout")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def lift_figure(scores: dict[str, np.ndarray], labels: np.ndarray) -> Figure:
    fig = Figure(figsize=(5.5, 5), dpi=100)
    ax = fig.add_subplot()
    ax.axhline(1.0, linestyle="--", color="grey", label="random")
    for name, probs in scores.items():
        q, lift = lift_curve(probs, labels)
        ax.plot(q * 100, lift, marker=".", label=name)
    ax.set(xlabel="top % of deals by score", ylabel="cumulative lift (win rate / overall)")
    ax.set_title("Lift on the holdout")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def save_holdout_plots(scores: dict[str, np.ndarray], labels: np.ndarray, directory: Path) -> dict[str, Path]:
    """Write calibration.png and lift.png into `directory`; returns their paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"calibration": directory / "calibration.png", "lift": directory / "lift.png"}
    calibration_figure(scores, labels).savefig(paths["calibration"])
    lift_figure(scores, labels).savefig(paths["lift"])
    return paths
