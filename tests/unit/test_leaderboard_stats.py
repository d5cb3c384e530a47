"""The leaderboard's statistics against independent computations: weighted (resampled) AUC and concordance equal
the plain metric on the explicitly resampled rows, the t-interval equals scipy's, and the verdicts by case."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from fulqrun_ml.benchmarks.leaderboard_stats import (
    INCONCLUSIVE,
    MET,
    NOT_MET,
    bootstrap_counts,
    judge_difference,
    judge_threshold,
    paired_difference,
    select_best,
    t_interval,
    weighted_auc,
    weighted_concordance,
    weighted_mean,
)
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS, seeds_for
from fulqrun_ml.tasks.survival_metrics import harrell_concordance


def resampled_rows(counts: np.ndarray, b: int) -> np.ndarray:
    """Resample b as explicit row indices (each row repeated by its count)."""
    return np.repeat(np.arange(counts.shape[1]), counts[b].astype(int))


def test_bootstrap_counts_start_with_the_holdout_itself_and_are_seeded():
    counts = bootstrap_counts(50, resamples=20, seed=3)
    assert counts.shape == (21, 50) and np.all(counts[0] == 1) and np.all(counts.sum(axis=1) == 50)
    np.testing.assert_array_equal(counts, bootstrap_counts(50, resamples=20, seed=3))
    assert not np.array_equal(counts, bootstrap_counts(50, resamples=20, seed=4))


def test_weighted_auc_is_sklearns_auc_on_every_resample_including_ties():
    rng = np.random.default_rng(0)
    labels = rng.uniform(size=600) < 0.3
    scores = np.round(rng.normal(size=600) + labels, 1)  # many ties
    counts = bootstrap_counts(600, resamples=15, seed=1)
    auc = weighted_auc(scores, labels, counts)
    assert auc[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    for b in (1, 7, 15):
        rows = resampled_rows(counts, b)
        assert auc[b] == pytest.approx(roc_auc_score(labels[rows], scores[rows]), abs=1e-12)


def test_weighted_concordance_is_harrells_c_on_every_resample_and_averages_seeds():
    rng = np.random.default_rng(1)
    durations = rng.integers(1, 91, size=400).astype(float)
    events = rng.uniform(size=400) < 0.6
    first = np.round(durations + rng.normal(0, 20, size=400))
    second = first + rng.normal(0, 5, size=400)
    counts = bootstrap_counts(400, resamples=6, seed=2)
    both = weighted_concordance([first, second], durations, events, counts)
    assert weighted_concordance([first], durations, events, counts)[0] == pytest.approx(
        harrell_concordance(first, durations, events), abs=1e-9
    )
    for b in (0, 3, 6):
        rows = resampled_rows(counts, b)
        each = [harrell_concordance(p[rows], durations[rows], events[rows]) for p in (first, second)]
        assert both[b] == pytest.approx(np.mean(each), abs=1e-6)


def test_weighted_mean_and_paired_difference():
    counts = np.array([[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 2.0], [0.0, 4.0, 0.0, 0.0]])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(weighted_mean(values, counts), [2.5, 2.5, 2.0])
    a, b = np.array([0.8, 0.7, 0.9, 0.85, 0.75]), np.array([0.7, 0.7, 0.7, 0.7, 0.7])
    paired = paired_difference(a, b)
    assert paired["diff"] == pytest.approx(0.1) and paired["ratio"] == pytest.approx(0.8 / 0.7)
    assert paired["resamples"] == 4 and 0.0 <= paired["ci95"][0] < paired["ci95"][1] <= 0.2


def test_t_interval_is_scipys_and_needs_two_values():
    values = [0.751, 0.748, 0.757, 0.744]
    interval = t_interval(values)
    expected = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert interval["ci95"] == pytest.approx(list(expected), abs=1e-12)
    assert interval["mean"] == pytest.approx(np.mean(values)) and interval["n"] == 4
    assert t_interval([0.75]) == {"mean": 0.75, "std": None, "ci95": None, "n": 1}


@pytest.mark.parametrize(
    ("ci", "greater_is_better", "verdict"),
    [
        ([0.001, 0.02], True, MET),
        ([-0.02, -0.001], True, NOT_MET),
        ([-0.01, 0.02], True, INCONCLUSIVE),  # spans 0: the data cannot tell
        ([-3.0, -0.5], False, MET),  # lower is better (RMSE): a negative difference is a win
        ([0.5, 3.0], False, NOT_MET),
        ([-0.5, 0.5], False, INCONCLUSIVE),
        (None, True, INCONCLUSIVE),
    ],
)
def test_judge_difference(ci, greater_is_better, verdict):
    assert judge_difference(ci, greater_is_better) == verdict


@pytest.mark.parametrize(
    ("ci", "target", "greater_is_better", "verdict"),
    [
        ([0.010, 0.018], 0.02, False, MET),  # ECE <= 0.02 over the whole interval
        ([0.015, 0.030], 0.02, False, INCONCLUSIVE),
        ([0.021, 0.030], 0.02, False, NOT_MET),
        ([0.975, 0.99], 0.97, True, MET),  # AUC ratio >= 0.97
        ([0.95, 0.98], 0.97, True, INCONCLUSIVE),
        ([0.90, 0.96], 0.97, True, NOT_MET),
    ],
)
def test_judge_threshold(ci, target, greater_is_better, verdict):
    assert judge_threshold(ci, target, greater_is_better) == verdict


def test_select_best_uses_the_validation_metric_and_refuses_rows_without_it():
    rows = [
        {"name": "a", "auc": 0.70, "val_auc": 0.80},  # worse on the holdout, better on validation
        {"name": "b", "auc": 0.78, "val_auc": 0.75},
    ]
    assert select_best(rows, "auc", greater_is_better=True)["name"] == "a"
    assert select_best([{**r, "val_rmse": r["val_auc"]} for r in rows], "rmse", False)["name"] == "b"
    assert select_best([], "auc", True) is None
    with pytest.raises(ValueError, match="val_auc"):
        select_best([{"name": "c", "auc": 0.9}], "auc", True)


def test_lightgbm_settings_that_sample_get_every_seed():
    seeds = [42, 43, 44]
    assert seeds_for(LIGHTGBM_SETTINGS["lightgbm_default"], seeds) == [42]
    assert seeds_for(LIGHTGBM_SETTINGS["lightgbm_tuned"], seeds) == seeds  # subsample + colsample
    assert seeds_for({"subsample": 0.7}, seeds) == [42]  # no bagging frequency: bagging is off
    assert seeds_for({"subsample": 0.7, "subsample_freq": 1}, seeds) == seeds
    assert seeds_for({"extra_trees": True}, seeds) == seeds
