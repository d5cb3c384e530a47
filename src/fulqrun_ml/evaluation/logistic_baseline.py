"""Linear models as the simplest honest baselines: if one matches the networks, the signal is linear.

Logistic regression for binary tasks, ridge regression for regression tasks, both on the same design as
every other row: the FeatureSpec's standardised numerics plus one-hot category indices (unknown index 0
included). Ridge learns the same scaled target the networks learn (`features/target.py`); the caller
decodes its predictions to the task's units. One fixed, light L2 strength each; nothing is tuned on the holdout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder

from fulqrun_ml.evaluation.latency import median_microseconds_per_row

L2_C = 0.1  # logistic regression: inverse L2 strength
RIDGE_ALPHA = 1.0  # ridge: L2 strength on the standardised design (scikit-learn's default)


@dataclass
class LinearFit:
    encoder: OneHotEncoder
    model: LogisticRegression | Ridge
    fit_seconds: float

    def design(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.hstack([arrays["continuous"], self.encoder.transform(arrays["categorical"])])

    def predict(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """P(positive) for logistic regression; the (scaled) target for ridge."""
        if isinstance(self.model, LogisticRegression):
            return self.model.predict_proba(self.design(arrays))[:, 1]
        return self.model.predict(self.design(arrays))

    @property
    def parameters(self) -> int:
        return int(np.size(self.model.coef_) + np.size(self.model.intercept_))


def _fit(train: dict[str, np.ndarray], model: LogisticRegression | Ridge) -> LinearFit:
    t0 = time.perf_counter()
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train["categorical"])
    fit = LinearFit(encoder, model, 0.0)
    fit.model.fit(fit.design(train), train["target"])
    fit.fit_seconds = time.perf_counter() - t0
    return fit


def fit_logistic(train: dict[str, np.ndarray]) -> LinearFit:
    """L2 logistic regression on 0/1 `target`."""
    return _fit(train, LogisticRegression(C=L2_C, max_iter=5000))


def fit_ridge(train: dict[str, np.ndarray]) -> LinearFit:
    """Ridge regression on the (scaled) regression `target`."""
    return _fit(train, Ridge(alpha=RIDGE_ALPHA))


def linear_microseconds_per_row(fit: LinearFit, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """scikit-learn predict (one-hot + linear) on already-encoded rows, batch 1 and 1024: no ONNX graph."""
    n = len(arrays["continuous"])
    idx = np.arange(1024) % n
    big = {k: v[idx] for k, v in arrays.items()}
    singles = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(min(50, n))]
    return {
        "batch_1": median_microseconds_per_row(fit.predict, singles, 1, 300),
        "batch_1024": median_microseconds_per_row(fit.predict, [big], 1024, 30),
    }
