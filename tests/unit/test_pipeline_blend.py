"""Blend weights and conformal offsets come from cells observed before each origin, never later ones."""

from __future__ import annotations

import numpy as np

from fulqrun_ml.analytics.pipeline_blend import conformal_offset, fit_weight, rolling_blend

QUANTILES = [0.1, 0.25, 0.5, 0.75, 0.9]
PAIR = (0, 4)


def _quantiles(median: np.ndarray, spread: float) -> np.ndarray:
    z = np.array([-1.28, -0.67, 0.0, 0.67, 1.28])
    return median[..., None] * (1 + spread * z)


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    origins = np.arange(10, 24)
    truth = 100 + 10 * rng.standard_normal((len(origins), 3))
    pipeline = _quantiles(truth + 3 * rng.standard_normal(truth.shape), 0.02)  # sharp and close: overconfident
    series = _quantiles(np.full(truth.shape, 100.0) + 15 * rng.standard_normal(truth.shape), 0.2)
    return origins, pipeline, series, truth


def test_an_earlier_origin_never_reads_a_later_target():
    origins, pipeline, series, truth = _case()
    score = origins[4:]
    base = rolling_blend(origins, pipeline, series, truth, score, QUANTILES, PAIR, 0.8)
    changed = truth.copy()
    changed[-1] = 1e6  # the last origin's targets: known only after every scored origin but the last
    moved = rolling_blend(origins, pipeline, series, changed, score, QUANTILES, PAIR, 0.8)
    np.testing.assert_array_equal(base["blend"], moved["blend"])
    np.testing.assert_array_equal(base["weight"], moved["weight"])
    # a target observed before a scored origin does move it (the fit reads the past)
    changed = truth.copy()
    changed[0] = 1e6
    moved = rolling_blend(origins, pipeline, series, changed, score, QUANTILES, PAIR, 0.8)
    assert not np.array_equal(base["offset"], moved["offset"])


def test_weight_follows_the_better_forecaster_and_cqr_widens_an_overconfident_one():
    origins, pipeline, series, truth = _case(1)
    out = rolling_blend(origins, pipeline, series, truth, origins[6:], QUANTILES, PAIR, 0.8)
    assert out["weight"].mean() > 0.6  # the pipeline's median is 5x closer
    assert fit_weight(truth, truth + 50, truth) == 1.0
    assert fit_weight(truth + 50, truth, truth) == 0.0
    assert fit_weight(truth, truth, np.full_like(truth, np.nan)) == 0.5
    # the pipeline's own 80% interval (+-2.6%) misses most cells; its CQR offset is positive and covers
    offset = conformal_offset(pipeline[..., 0], pipeline[..., 4], pipeline[..., 2], truth, 0.8)
    assert offset > 0
    widened_lo = pipeline[..., 0] - offset * pipeline[..., 2]
    widened_hi = pipeline[..., 4] + offset * pipeline[..., 2]
    assert ((truth >= widened_lo) & (truth <= widened_hi)).mean() >= 0.75
