"""One fairness mitigation: fairlearn's ThresholdOptimizer on the model's calibrated probabilities.

Why post-processing and not reweighting: it needs no retraining (so it applies to any published model and its
cost is measured on exactly the scores that ship), and equalized odds is what the gate bounds. It is fitted on
validation rows only and judged on the holdout. Its price is real: group-specific (and randomised) thresholds
turn the calibrated probability into a yes/no decision, so accuracy and AUC can fall; `fairness.py` reports
both next to the gaps it closes.

Groups too small on validation (< min_group_size) and groups the holdout has but validation lacks are pooled
into one "other" group: the optimiser needs enough rows per group to place a threshold, and cannot score a
group it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin

OTHER_GROUP = "other"
GRID_SIZE = 1000


class GivenScores(ClassifierMixin, BaseEstimator):
    """A "classifier" whose only input column is the probability it already computed: the ThresholdOptimizer
    wraps the model's own calibrated scores rather than refitting anything (prefit)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> GivenScores:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = np.asarray(X, dtype=np.float64)[:, 0]
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass
class FittedThresholds:
    optimizer: ThresholdOptimizer
    groups: frozenset[str]  # the groups it has thresholds for (the rest map to OTHER_GROUP)
    fitted_groups: frozenset[str]  # after pooling: what the optimiser saw (OTHER_GROUP only if some were pooled)
    threshold: float = 0.5  # the plain decision rule for rows of a group the optimiser never saw

    def pooled(self, groups: np.ndarray) -> np.ndarray:
        return np.array([str(g) if str(g) in self.groups else OTHER_GROUP for g in groups], dtype=object)

    def decide(self, probabilities: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(0/1 decisions, P(decision = 1)) per row; the probability is what AUC is measured on after mitigation.
        Rows of a group without a fitted threshold keep the plain rule (counted by `unfitted_rows`)."""
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        pooled = self.pooled(groups)
        decisions = (probs >= self.threshold).astype(int)
        positive = decisions.astype(np.float64)
        known = np.isin(pooled, list(self.fitted_groups))
        if known.any():
            features = probs[known].reshape(-1, 1)
            decisions[known] = self.optimizer.predict(features, sensitive_features=pooled[known], random_state=seed)
            # fairlearn 0.15 exposes the randomised thresholds' probability only through this method.
            positive[known] = self.optimizer._pmf_predict(features, sensitive_features=pooled[known])[:, 1]
        return decisions, positive

    def unfitted_rows(self, groups: np.ndarray) -> int:
        return int((~np.isin(self.pooled(groups), list(self.fitted_groups))).sum())


def fit_thresholds(
    labels: np.ndarray,
    probabilities: np.ndarray,
    groups: np.ndarray,
    constraint: str,
    min_group_size: int,
    threshold: float = 0.5,
) -> FittedThresholds:
    """Group thresholds meeting `constraint` that maximise accuracy on these (validation) rows."""
    values, counts = np.unique(np.asarray(groups, dtype=object).astype(str), return_counts=True)
    kept = frozenset(str(v) for v, n in zip(values, counts, strict=True) if n >= min_group_size)
    pooled_groups = frozenset(kept | ({OTHER_GROUP} if len(kept) < len(values) else set()))
    fitted = FittedThresholds(
        ThresholdOptimizer(
            estimator=GivenScores().fit(None, None),
            constraints=constraint,
            objective="accuracy_score",
            grid_size=GRID_SIZE,
            prefit=True,
            predict_method="predict_proba",
        ),
        kept,
        pooled_groups,
        threshold,
    )
    features = np.asarray(probabilities, dtype=np.float64).reshape(-1, 1)
    fitted.optimizer.fit(features, np.asarray(labels, dtype=int), sensitive_features=fitted.pooled(groups))
    return fitted
