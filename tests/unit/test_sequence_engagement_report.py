"""The dynamic-engagement report helpers (benchmarks/sequence_dynamic.py): the seed interval and the level oracle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.benchmarks.sequence_dynamic import level_oracle, t_interval
from fulqrun_ml.data.simulator import oracle_win_probability, simulate_crm


def test_t_interval_matches_the_textbook_formula():
    ci = t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3, t(0.975, 2) = 4.303: half width 4.303 / sqrt(3) = 2.484
    assert ci["mean"] == pytest.approx(2.0)
    assert ci["low"] == pytest.approx(2.0 - 2.4841, abs=1e-3)
    assert ci["high"] == pytest.approx(2.0 + 2.4841, abs=1e-3)
    assert t_interval([0.7])["low"] == pytest.approx(0.7)


def test_level_oracle_integrates_the_story_out():
    crm = simulate_crm(n_opportunities=300, n_companies=80, days=300, seed=4, engagement="dynamic")
    frame = pd.DataFrame({"opportunity_id": crm.latent["opportunity_id"], "stage_index": 0})
    level = level_oracle(crm, frame)
    full = oracle_win_probability(crm.latent["true_win_probability"].to_numpy(), np.zeros(300, dtype=int))
    assert np.all((level > 0) & (level < 1))
    # Same level for deals whose only difference is the story: less spread than the full oracle.
    assert level.std() < full.std()
    # Averaging over the story keeps the mean: on average the level oracle is as optimistic as the full one.
    assert abs(level.mean() - full.mean()) < 0.05
