"""The survival task's numbers checked against hand computations: the logistic-hazard NLL, Harrell's C, the
Kaplan-Meier curve, the curve helpers and the bin-edge validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fulqrun_ml.tasks.kaplan_meier import StageKaplanMeier, km_cdf_at
from fulqrun_ml.tasks.survival import logistic_hazard_nll
from fulqrun_ml.tasks.survival_grid import (
    SurvivalConfigError,
    bin_index,
    cdf_at,
    median_days,
    restricted_mean,
    torch_cdf,
    validate_bin_edges,
)
from fulqrun_ml.tasks.survival_metrics import discrete_nll, harrell_concordance, survival_report

EDGES = np.array([0.0, 7.0, 14.0, 21.0])


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_logistic_hazard_nll_equals_hand_computed_three_rows():
    logits = torch.tensor([[0.0, 1.0, -1.0], [-2.0, 0.5, 0.3], [1.5, -0.5, 2.0]])
    durations = np.array([10.0, 21.0, 7.0])  # week 2 close; censored at the horizon; close at exactly 7 days
    events = np.array([1.0, 0.0, 1.0])
    bins = bin_index(durations, EDGES)
    assert bins.tolist() == [1, 2, 0]  # right-closed bins; the censored row is at risk in every bin
    row_a = -math.log(1 - sig(0.0)) - math.log(sig(1.0))
    row_b = -math.log(1 - sig(-2.0)) - math.log(1 - sig(0.5)) - math.log(1 - sig(0.3))
    row_c = -math.log(sig(1.5))
    expected = (row_a + row_b + row_c) / 3
    loss = logistic_hazard_nll(logits, torch.as_tensor(bins), torch.as_tensor(events))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # The numpy NLL on the curve the logits define is the same likelihood (metrics and loss agree).
    cdf = torch_cdf(logits.double()).numpy()
    assert discrete_nll(cdf, durations, events, EDGES) == pytest.approx(expected, rel=1e-6)


def brute_force_c(pred: np.ndarray, d: np.ndarray, e: np.ndarray) -> float:
    num = den = 0.0
    for i in range(len(d)):
        for j in range(len(d)):
            if e[i] and d[i] < d[j]:
                den += 1
                num += 1.0 if pred[i] < pred[j] else 0.5 if pred[i] == pred[j] else 0.0
    return num / den


def test_harrell_c_equals_brute_force_pairs_with_censoring_and_ties():
    rng = np.random.default_rng(0)
    n = 150
    d = np.round(rng.exponential(20.0, n))  # rounded: tied durations occur
    e = rng.random(n) < 0.6
    pred = np.round(d + rng.normal(0, 15, n))  # informative, with tied predictions
    c = harrell_concordance(pred, d, e)
    assert c == pytest.approx(brute_force_c(pred, d, e), abs=1e-12)
    assert c > 0.6  # the prediction carries signal; a reversed one scores 1 - c on untied pairs
    assert harrell_concordance(-pred, d, e) < 0.4


def test_kaplan_meier_equals_hand_computed_curve():
    d = np.array([2.0, 3.0, 3.0, 5.0, 8.0])
    e = np.array([1, 1, 0, 1, 0])
    # S(2) = 4/5; at 3: 4 at risk, 1 close (the row censored at 3 is still at risk) -> 3/5; at 5: 2 at risk -> 3/10.
    assert km_cdf_at(d, e, np.array([0.0, 1.0, 2.0, 4.0, 8.0])) == pytest.approx([0.0, 0.2, 0.4, 0.7])
    frame = pd.DataFrame(
        {"duration_days": np.r_[d, 4.0, 9.0], "label": np.r_[e, 1, 1], "stage_index": [0] * 5 + [1, 1]}
    )
    km = StageKaplanMeier.fit(frame, np.array([0.0, 4.0, 8.0]))
    assert km.by_stage[0] == pytest.approx([0.4, 0.7])
    assert km.by_stage[1] == pytest.approx([0.5, 0.5])  # 4 closes by 4 days, 9 only after 8
    test = pd.DataFrame({"stage_index": [1, 0, 7]})  # stage 7 was never seen in training: pooled curve
    assert km.predict(test) == pytest.approx(np.vstack([km.by_stage[1], km.by_stage[0], km.pooled]))
    again = StageKaplanMeier.from_record(km.to_record(), km.edges)
    assert again.predict(test) == pytest.approx(km.predict(test))


def test_curve_helpers_on_a_known_curve():
    cdf = np.array([[0.25, 0.5, 0.75], [0.0, 0.0, 0.0]])
    # Restricted mean = integral of S: trapezoids (1 + .75)/2*7 + (.75 + .5)/2*7 + (.5 + .25)/2*7.
    assert restricted_mean(cdf, EDGES) == pytest.approx([7 * (1.75 + 1.25 + 0.75) / 2, 21.0])
    assert median_days(cdf, EDGES) == pytest.approx([14.0, 21.0])  # never reaching 0.5: capped at the horizon
    assert cdf_at(cdf, EDGES, 3.5) == pytest.approx([0.125, 0.0])


def test_report_scores_a_perfect_ranking_and_the_brier_of_a_hard_curve():
    d = np.array([3.0, 10.0, 21.0])
    e = np.array([True, True, False])
    cdf = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # exactly the observed outcomes
    report = survival_report(cdf, d, e, EDGES)
    assert report["concordance"] == 1.0
    assert report["integrated_brier"] == 0.0 and report["brier_14d"] == 0.0
    assert report["n"] == 3 and report["n_events"] == 2


@pytest.mark.parametrize(
    ("edges", "message"),
    [
        ([0, 14, 7, 21], "sorted ascending"),
        ([0, 7, 7, 21], "duplicate edge 7"),
        ([0, 7, 14, 28], "beyond task.horizon_days=21"),
        ([0, 7, 14], "must equal task.horizon_days=21"),
        ([1, 7, 21], "first edge must be 0"),
        ([21], "at least two edges"),
    ],
)
def test_bad_bin_edges_are_refused_naming_the_field(edges, message):
    with pytest.raises(SurvivalConfigError, match=r"task\.bin_edges") as error:
        validate_bin_edges(edges, 21)
    assert message in str(error.value)
