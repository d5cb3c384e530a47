"""The regression baselines on synthetic encoded arrays: ridge on the one-hot design, LightGBM as a regressor."""

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS, fit_lightgbm
from fulqrun_ml.evaluation.logistic_baseline import RIDGE_ALPHA, fit_logistic, fit_ridge, linear_microseconds_per_row


def encoded(n: int, seed: int) -> dict[str, np.ndarray]:
    """Two standardised numerics and one category (indices 1..3, 0 = unknown) with a known linear effect."""
    rng = np.random.default_rng(seed)
    continuous = rng.normal(size=(n, 2)).astype(np.float32)
    categorical = rng.integers(1, 4, size=(n, 1))
    effect = np.array([0.0, -1.0, 0.5, 2.0])[categorical[:, 0]]
    target = 1.5 * continuous[:, 0] - 0.7 * continuous[:, 1] + effect + 0.05 * rng.normal(size=n)
    return {"continuous": continuous, "categorical": categorical, "target": target.astype(np.float32)}


def test_ridge_fits_the_one_hot_design_like_scikit_learn():
    train, test = encoded(400, 0), encoded(200, 1)
    fit = fit_ridge(train)
    one_hot = (train["categorical"] == np.arange(1, 4)).astype(float)  # independent one-hot of indices 1..3
    reference = Ridge(alpha=RIDGE_ALPHA).fit(np.hstack([train["continuous"], one_hot]), train["target"])
    test_one_hot = (test["categorical"] == np.arange(1, 4)).astype(float)
    expected = reference.predict(np.hstack([test["continuous"], test_one_hot]))
    assert fit.predict(test) == pytest.approx(expected, abs=1e-6)
    assert fit.parameters == 2 + 3 + 1  # two numerics, three categories seen in training, intercept
    assert np.sqrt(np.mean((fit.predict(test) - test["target"]) ** 2)) < 0.1  # the signal is linear
    latency = linear_microseconds_per_row(fit, test)
    assert latency["batch_1"] > latency["batch_1024"] > 0


def test_logistic_still_returns_probabilities():
    train = encoded(400, 2)
    train["target"] = (train["target"] > 0).astype(np.float32)
    probs = fit_logistic(train).predict(train)
    assert probs.min() >= 0 and probs.max() <= 1 and ((probs > 0.5) == train["target"]).mean() > 0.9


@pytest.mark.parametrize("setting", sorted(LIGHTGBM_SETTINGS))
def test_lightgbm_regressor_uses_the_shared_settings_with_objective_regression(setting):
    train, val, test = encoded(600, 3), encoded(200, 4), encoded(200, 5)
    fit = fit_lightgbm(train, val, LIGHTGBM_SETTINGS[setting], seed=0, kind="regression")
    assert isinstance(fit.model, lgb.LGBMRegressor) and fit.model.get_params()["objective"] == "regression"
    for key, value in LIGHTGBM_SETTINGS[setting].items():
        assert fit.model.get_params()[key] == value
    rmse = np.sqrt(np.mean((fit.predict(test) - test["target"]) ** 2))
    assert rmse < 0.5 * np.std(test["target"])  # learnt the signal, in the scaled units it was fitted on


def test_lightgbm_unknown_kind_is_named():
    data = encoded(50, 6)
    with pytest.raises(ValueError, match="'survival'"):
        fit_lightgbm(data, data, {}, seed=0, kind="survival")
