"""What the leaderboard reports for one set of scores: calibration, ranking and thresholded metrics.

The thresholded numbers need a cut-off chosen *before* looking at the holdout, so the best-F1 threshold is
picked on the validation split and then applied unchanged to the holdout.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fulqrun_ml.tasks.metrics import accuracy_at, best_f1_threshold, binary_report, ece_noise_floor, lift_at, pr_auc

LIFT_FRACTION = 0.1


def holdout_scores(
    val_probs: np.ndarray, val_labels: np.ndarray, test_probs: np.ndarray, test_labels: np.ndarray
) -> dict[str, Any]:
    """AUC, PR-AUC, log loss, Brier, ECE (and its noise floor), accuracy at 0.5 and at the validation best-F1
    cut, lift at 10%."""
    val_p, test_p = np.asarray(val_probs, dtype=np.float64), np.asarray(test_probs, dtype=np.float64)
    report = binary_report(test_p, test_labels)
    threshold = best_f1_threshold(val_p, val_labels)
    return {
        "auc": report["auc"],
        "pr_auc": pr_auc(test_p, test_labels),
        "log_loss": report["log_loss"],
        "brier": report["brier"],
        "ece": report["ece"],
        # What a perfectly calibrated model with these scores would show on these rows: ECE below it is noise.
        "ece_noise_floor": ece_noise_floor(test_p)["mean"],
        "accuracy_at_0_5": accuracy_at(test_p, test_labels, 0.5),
        "best_f1_threshold_on_val": threshold,
        "accuracy_at_best_f1": accuracy_at(test_p, test_labels, threshold),
        "lift_at_10pct": lift_at(test_p, test_labels, LIFT_FRACTION),
        "n": report["n"],
    }
