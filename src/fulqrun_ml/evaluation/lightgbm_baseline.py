"""LightGBM as the reference baseline: the same encoded inputs, split and holdout as the neural models.

It sees exactly what the networks see: the FeatureSpec's standardised numerics (trees are invariant to that
scaling) and its category indices, declared categorical so LightGBM splits on them natively. Boosting stops
early on the validation split's log loss, like the networks' early stopping on validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from fulqrun_ml.evaluation.latency import median_microseconds_per_row

# "default": LightGBM's defaults, only the round count left to early stopping.
# "tuned": one light, fixed setting for small noisy data (slower learning, smaller trees, subsampling);
# chosen once by hand, not searched on the holdout.
LIGHTGBM_SETTINGS: dict[str, dict[str, Any]] = {
    "lightgbm_default": {},
    "lightgbm_tuned": {
        "learning_rate": 0.02,
        "num_leaves": 7,
        "min_child_samples": 80,
        "subsample": 0.7,
        "subsample_freq": 1,
        "colsample_bytree": 0.7,
        "reg_lambda": 1.0,
    },
}
MAX_ROUNDS = 5000
EARLY_STOPPING_ROUNDS = 100


@dataclass
class LightGBMFit:
    model: lgb.LGBMClassifier
    fit_seconds: float

    def predict(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.predict_proba(design_matrix(arrays))[:, 1]


def design_matrix(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Encoded continuous columns followed by the categorical indices (as floats, flagged categorical)."""
    return np.hstack([arrays["continuous"].astype(np.float64), arrays["categorical"].astype(np.float64)])


def fit_lightgbm(
    train: dict[str, np.ndarray], val: dict[str, np.ndarray], params: dict[str, Any], seed: int
) -> LightGBMFit:
    n_cont, n_cat = train["continuous"].shape[1], train["categorical"].shape[1]
    model = lgb.LGBMClassifier(
        n_estimators=MAX_ROUNDS, random_state=seed, deterministic=True, force_row_wise=True, verbose=-1, **params
    )
    t0 = time.perf_counter()
    model.fit(
        design_matrix(train),
        train["target"],
        eval_set=[(design_matrix(val), val["target"])],
        eval_metric="binary_logloss",
        categorical_feature=list(range(n_cont, n_cont + n_cat)),
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return LightGBMFit(model=model, fit_seconds=time.perf_counter() - t0)


def lightgbm_size(fit: LightGBMFit) -> dict[str, int]:
    """Trees and leaves of the early-stopped model (a tree model has no comparable parameter count)."""
    trees = fit.model.booster_.dump_model(num_iteration=fit.model.best_iteration_)["tree_info"]
    return {"trees": len(trees), "leaves": sum(t["num_leaves"] for t in trees)}


def lightgbm_microseconds_per_row(fit: LightGBMFit, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """Native LightGBM predict (one thread) on already-encoded rows, batch 1 and 1024: no ONNX graph."""
    matrix = design_matrix(arrays)
    reps = -(-1024 // len(matrix))
    big = np.vstack([matrix] * reps)[:1024]

    def run(x: np.ndarray) -> object:
        return fit.model.predict_proba(x, num_threads=1)

    return {
        "batch_1": median_microseconds_per_row(run, [matrix[i : i + 1] for i in range(50)], 1, 300),
        "batch_1024": median_microseconds_per_row(run, [big], 1024, 30),
    }
