"""Which calibration method a binary task should ship, judged on the validation split alone.

A run's calibrator is fitted on the validation rows, so comparing methods by their holdout ECE spends the
holdout on a choice the board then reports as if it were untouched. Here each method is cross-fitted on
validation instead: the validation rows are split in two halves (stratified by label, seeded), the method is
fitted on one half (censoring-weighted, as training fits it) and scored on the other, both ways round, over
several random splits. The criterion is the weighted log loss of the held-out halves (a proper scoring rule,
and the loss the logit-map calibrators minimise); weighted ECE is reported next to it. The lowest mean log loss
across the task's networks (and seeds) is the pick; the board reports it next to the method the runs used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fulqrun_ml.tasks.calibration import CALIBRATION_METHODS, calibrator_from_record, fit_calibration
from fulqrun_ml.tasks.metrics import ECE_BINS

REPEATS = 2  # x 2 halves x the seeds and networks of a task: enough to rank three methods
SPLIT_SEED = 0
EPS = 1e-7


def weighted_log_loss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-(w * (y * np.log(p) + (1 - y) * np.log1p(-p))).sum() / w.sum())


def weighted_ece(p: np.ndarray, y: np.ndarray, w: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """ECE with row weights: equal-width bins on the probability (as `tasks.metrics`), |Σw(y - p)| / Σw."""
    bins = np.clip(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1), p, side="left") - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=w * (y - p), minlength=n_bins)
    return float(np.abs(gap).sum() / w.sum())


def _halves(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask of half the rows, drawn within each label so both halves keep the base rate."""
    mask = np.zeros(labels.size, dtype=bool)
    for value in (False, True):
        rows = rng.permutation(np.flatnonzero((labels > 0.5) == value))
        mask[rows[: rows.size // 2]] = True
    return mask


def cross_fitted_calibration(
    logits: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    methods: Sequence[str] = CALIBRATION_METHODS,
    repeats: int = REPEATS,
    seed: int = SPLIT_SEED,
) -> dict[str, dict[str, float]]:
    """method -> mean held-out {log_loss, ece} over `repeats` random halvings of the validation rows, each half
    scored by a calibrator fitted on the other (same halvings for every method: a paired comparison)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    rng = np.random.default_rng(seed)
    masks = [_halves(y, rng) for _ in range(repeats)]
    results: dict[str, dict[str, float]] = {}
    for method in methods:
        losses, eces = [], []
        for mask in masks:
            for fit_rows in (mask, ~mask):
                held = ~fit_rows
                record = fit_calibration(
                    method, z[fit_rows], y[fit_rows], split="val half", weights=None if weights is None else w[fit_rows]
                )
                with torch.no_grad():
                    scores = torch.as_tensor(z[held], dtype=torch.float32)[:, None]
                    p = calibrator_from_record(record)(scores).numpy().reshape(-1).astype(np.float64)
                losses.append(weighted_log_loss(p, y[held], w[held]))
                eces.append(weighted_ece(p, y[held], w[held]))
        results[method] = {"log_loss": float(np.mean(losses)), "ece": float(np.mean(eces))}
    return results


def calibration_choice(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The method with the lowest cross-fitted validation log loss, averaged over the networks that report one
    (`calibration_cv`), next to the method the runs shipped. None when no row has the comparison."""
    scored = [r for r in rows if r.get("calibration_cv")]
    if not scored:
        return None
    methods = list(scored[0]["calibration_cv"])
    mean = {
        m: {k: float(np.mean([r["calibration_cv"][m][k] for r in scored])) for k in ("log_loss", "ece")}
        for m in methods
    }
    pick = min(methods, key=lambda m: mean[m]["log_loss"])
    configured = sorted({str(r.get("calibration")) for r in scored})
    return {
        "criterion": f"validation log loss, cross-fitted on halves ({REPEATS} stratified random splits, "
        "censoring-weighted)",
        "by_method": mean,
        "by_model": {r["name"]: min(methods, key=lambda m, r=r: r["calibration_cv"][m]["log_loss"]) for r in scored},
        "pick": pick,
        "configured": configured[0] if len(configured) == 1 else configured,
        "agrees": configured == [pick],
    }
