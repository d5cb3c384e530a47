"""Logistic regression as the simplest honest baseline: if it matches the networks, the signal is linear.

Same encoded inputs as every other row: the FeatureSpec's standardised numerics plus one-hot category
indices (unknown index 0 included). One fixed, light L2 strength; nothing is tuned on the holdout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from fulqrun_ml.evaluation.latency import median_microseconds_per_row

L2_C = 0.1


@dataclass
class LogisticFit:
    encoder: OneHotEncoder
    model: LogisticRegression
    fit_seconds: float

    def design(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return np.hstack([arrays["continuous"], self.encoder.transform(arrays["categorical"])])

    def predict(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.predict_proba(self.design(arrays))[:, 1]

    @property
    def parameters(self) -> int:
        return int(self.model.coef_.size + self.model.intercept_.size)


def fit_logistic(train: dict[str, np.ndarray]) -> LogisticFit:
    t0 = time.perf_counter()
    encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train["categorical"])
    fit = LogisticFit(encoder, LogisticRegression(C=L2_C, max_iter=5000), 0.0)
    fit.model.fit(fit.design(train), train["target"])
    fit.fit_seconds = time.perf_counter() - t0
    return fit


def logistic_microseconds_per_row(fit: LogisticFit, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """scikit-learn predict (one-hot + linear) on already-encoded rows, batch 1 and 1024: no ONNX graph."""
    n = len(arrays["continuous"])
    idx = np.arange(1024) % n
    big = {k: v[idx] for k, v in arrays.items()}
    singles = [{k: v[i : i + 1] for k, v in arrays.items()} for i in range(min(50, n))]
    return {
        "batch_1": median_microseconds_per_row(fit.predict, singles, 1, 300),
        "batch_1024": median_microseconds_per_row(fit.predict, [big], 1024, 30),
    }
