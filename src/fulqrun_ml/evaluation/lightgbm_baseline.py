"""LightGBM as the reference baseline: the same encoded inputs, split and holdout as the neural models.

It sees exactly what the networks see: the FeatureSpec's standardised numerics (trees are invariant to that
scaling) and its category indices, declared categorical so LightGBM splits on them natively. Boosting stops
early on the validation split's log loss (binary) or L2 loss (regression, on the same scaled target the
networks learn), like the networks' early stopping on validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightgbm as lgb
import numpy as np

from fulqrun_ml.evaluation.latency import median_microseconds_per_row
from fulqrun_ml.tasks.metrics import binary_report, regression_report

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
# Named explicitly (they are also LightGBM's defaults for these estimators) so a report says what was fitted.
OBJECTIVES = {"binary": "binary", "regression": "regression"}
MAX_ROUNDS = 5000
EARLY_STOPPING_ROUNDS = 100


def seeds_for(params: dict[str, Any], seeds: Sequence[int]) -> list[int]:
    """The seeds a setting is fitted with: every seed when it draws at random (row bagging with a frequency,
    column sampling, extra trees), else only the first: under `deterministic=True` such a fit is the same model
    whatever its seed, so more fits would only repeat it."""

    def below_one(*keys: str) -> bool:
        return any(float(params.get(key, 1.0)) < 1.0 for key in keys)

    bagging = below_one("subsample", "bagging_fraction") and any(
        int(params.get(key, 0)) > 0 for key in ("subsample_freq", "bagging_freq")
    )
    columns = below_one("colsample_bytree", "feature_fraction", "feature_fraction_bynode")
    return list(seeds) if bagging or columns or params.get("extra_trees") else list(seeds[:1])


@dataclass
class LightGBMFit:
    model: lgb.LGBMClassifier | lgb.LGBMRegressor
    fit_seconds: float

    def predict(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """P(positive) for a classifier; the (scaled) target for a regressor."""
        if isinstance(self.model, lgb.LGBMClassifier):
            return self.model.predict_proba(design_matrix(arrays))[:, 1]
        return self.model.predict(design_matrix(arrays))


def design_matrix(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Encoded continuous columns followed by the categorical indices (as floats, flagged categorical)."""
    return np.hstack([arrays["continuous"].astype(np.float64), arrays["categorical"].astype(np.float64)])


def fit_lightgbm(
    train: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    params: dict[str, Any],
    seed: int,
    kind: Literal["binary", "regression"] = "binary",
) -> LightGBMFit:
    """LightGBM on the encoded `train` split, early-stopped on `val`: a classifier (objective binary) or a
    regressor (objective regression, L2 on the scaled target), with one `LIGHTGBM_SETTINGS` dict for both."""
    if kind not in OBJECTIVES:
        raise ValueError(f"unknown LightGBM kind {kind!r}; choose one of {sorted(OBJECTIVES)}")
    n_cont, n_cat = train["continuous"].shape[1], train["categorical"].shape[1]
    estimator = lgb.LGBMClassifier if kind == "binary" else lgb.LGBMRegressor
    settings = {"objective": OBJECTIVES[kind], **params}
    model = estimator(
        n_estimators=MAX_ROUNDS, random_state=seed, deterministic=True, force_row_wise=True, verbose=-1, **settings
    )
    t0 = time.perf_counter()
    model.fit(
        design_matrix(train),
        train["target"],
        eval_set=[(design_matrix(val), val["target"])],
        eval_metric="binary_logloss" if kind == "binary" else "l2",
        categorical_feature=list(range(n_cont, n_cont + n_cat)),
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return LightGBMFit(model=model, fit_seconds=time.perf_counter() - t0)


def lightgbm_size(fit: LightGBMFit) -> dict[str, int]:
    """Trees and leaves of the early-stopped model (a tree model has no comparable parameter count)."""
    trees = fit.model.booster_.dump_model(num_iteration=fit.model.best_iteration_)["tree_info"]
    return {"trees": len(trees), "leaves": sum(t["num_leaves"] for t in trees)}


def lightgbm_microseconds_per_row(
    fit: LightGBMFit, arrays: dict[str, np.ndarray], rows_per_item: int = 1
) -> dict[str, float]:
    """Native LightGBM predict (one thread) on already-encoded rows, batch 1 and 1024 items: no ONNX graph.

    An item is `rows_per_item` consecutive rows scored in one call (a survival deal's curve needs one row per
    time bin), so the numbers are µs per item, comparable with a network's µs per row."""
    matrix = design_matrix(arrays)
    k = rows_per_item
    reps = -(-1024 * k // len(matrix))
    big = np.vstack([matrix] * reps)[: 1024 * k]

    score = fit.model.predict_proba if isinstance(fit.model, lgb.LGBMClassifier) else fit.model.predict

    def run(x: np.ndarray) -> object:
        return score(x, num_threads=1)

    return {
        "batch_1": median_microseconds_per_row(run, [matrix[i * k : (i + 1) * k] for i in range(50)], 1, 300),
        "batch_1024": median_microseconds_per_row(run, [big], 1024, 30),
    }


def lightgbm_holdout_report(
    arrays: dict[str, dict[str, np.ndarray]],
    labels: np.ndarray,
    setting: str,
    seed: int,
    kind: Literal["binary", "regression"] = "binary",
    decode: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """LightGBM trained on the run's own train split (early-stopped on its val split) and scored on its test
    split with the same report as the network: what `metrics.json["lightgbm"]` holds.

    `arrays` are the encoded splits with their training `target`; `labels` the test labels in task units;
    `decode` maps a regressor's scaled predictions back to task units."""
    if setting not in LIGHTGBM_SETTINGS:
        raise ValueError(f"unknown LightGBM setting {setting!r}; choose one of {sorted(LIGHTGBM_SETTINGS)}")
    fit = fit_lightgbm(arrays["train"], arrays["val"], LIGHTGBM_SETTINGS[setting], seed, kind)
    scores = fit.predict(arrays["test"])
    if kind == "binary":
        report = binary_report(scores, labels)
    else:
        report = regression_report(decode(scores) if decode is not None else scores, labels)
    return {**report, "fit_seconds": round(fit.fit_seconds, 3), **lightgbm_size(fit)}
