"""Baselines on series whose answer is known, and the metrics they are scored with."""

import numpy as np
import pytest

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.baselines import holt_winters, seasonal_naive, simple_exponential_smoothing
from fulqrun_ml.forecasting.metrics import coverage, mase, pinball, seasonal_naive_scale, wape

QUANTILES = [0.1, 0.5, 0.9]
SEASON = 4
PATTERN = np.array([10.0, 20.0, 30.0, 100.0])  # a quarter-end spike every 4th period


def test_seasonal_naive_repeats_the_last_season():
    history = np.tile(PATTERN, 5)[:-1]  # ends one period before a spike
    q = seasonal_naive(history, 6, QUANTILES, SEASON)
    np.testing.assert_allclose(q[:, 1], [100, 10, 20, 30, 100, 10])
    np.testing.assert_allclose(q[:, 0], q[:, 2])  # an exactly periodic series has no seasonal error
    with pytest.raises(FulqrunMLError, match="season"):
        seasonal_naive(history[:3], 2, QUANTILES, SEASON)


def test_holt_winters_learns_a_noisy_seasonal_shape_and_ses_only_the_level():
    rng = np.random.default_rng(0)
    history = np.tile(PATTERN, 12) + rng.normal(0, 2.0, 48)
    hw = holt_winters(history, SEASON, QUANTILES, SEASON)
    np.testing.assert_allclose(hw[:, 1], PATTERN, atol=4.0)
    assert np.all(hw[:, 0] <= hw[:, 1]) and np.all(hw[:, 1] <= hw[:, 2])
    ses = simple_exponential_smoothing(history, SEASON, QUANTILES)
    assert np.ptp(ses[:, 1]) == pytest.approx(0.0)  # flat: SES has no seasonal component
    # SES interval widens with the horizon; a constant series is forecast as itself.
    assert np.all(np.diff(ses[:, 2] - ses[:, 0]) >= 0)
    np.testing.assert_allclose(simple_exponential_smoothing(np.zeros(20), 3, QUANTILES), 0.0)


def test_metrics_on_hand_computed_values():
    y = np.array([[10.0, 0.0], [30.0, np.nan]])
    point = np.array([[12.0, 2.0], [27.0, 5.0]])
    assert wape(y, point) == pytest.approx((2 + 2 + 3) / 40)
    assert mase(y, point, np.array([2.0, 3.0])) == pytest.approx((1 + 1 + 1) / 3)
    assert coverage(y, point - 2.5, point + 2.5) == pytest.approx(2 / 3)
    q = np.stack([point - 1, point, point + 1], axis=-1)
    # pinball over 3 levels x 3 finite cells, computed directly, then divided by mean |y|
    diffs = np.array([-2.0, -2.0, 3.0])
    expected = np.mean(
        [max(t * (d + s), (t - 1) * (d + s)) for d in diffs for t, s in zip(QUANTILES, [1, 0, -1], strict=True)]
    )
    assert pinball(y, q, QUANTILES) == pytest.approx(expected / (40 / 3))
    np.testing.assert_allclose(seasonal_naive_scale(np.tile(PATTERN, 3)[None], SEASON, 12), [0.0])
