"""The churn page's alert threshold: relative to the model's base rate by default, a fixed probability on demand.

Why a test of its own: with a fixed P >= 0.5 a model whose base rate is 0.6 flags most customers; the default
must flag only accounts well above the average customer whatever the base rate, and stay in (0, 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.dashboard.pages_accounts import ALERT_ODDS_LIFT, ALERT_SETTINGS, alert_threshold
from fulqrun_ml.errors import FulqrunMLError


@pytest.mark.parametrize("base", [0.05, 0.3, 0.6, 0.9])
def test_the_default_flags_accounts_at_1_5_times_the_average_odds(base):
    rng = np.random.default_rng(0)
    scores = pd.Series(rng.beta(8 * base, 8 * (1 - base), size=5_000))
    threshold, how = alert_threshold(scores)
    mean = scores.mean()
    assert threshold / (1 - threshold) == pytest.approx(ALERT_ODDS_LIFT * mean / (1 - mean))
    assert mean < threshold < 1
    assert (scores >= threshold).mean() < (scores >= mean).mean()  # fewer than every above-average customer
    assert f"base rate {mean:.2f}" in how


def test_a_high_base_rate_no_longer_flags_most_customers():
    scores = pd.Series(np.linspace(0.35, 0.85, 1001))  # base rate 0.6
    fixed, _ = alert_threshold(scores, "P >= 0.5")
    default, _ = alert_threshold(scores)
    assert fixed == 0.5 and (scores >= fixed).mean() > 0.7
    assert (scores >= default).mean() < 0.35  # a third of them, the riskiest


def test_each_setting_and_a_bad_one():
    scores = pd.Series([0.2, 0.4])
    assert [alert_threshold(scores, name)[0] > 0 for name in ALERT_SETTINGS] == [True] * len(ALERT_SETTINGS)
    assert alert_threshold(scores, "odds x2 base rate")[0] > alert_threshold(scores, "odds x1.5 base rate")[0]
    with pytest.raises(FulqrunMLError, match=r"alert threshold 'P >= 0\.9'"):
        alert_threshold(scores, "P >= 0.9")
