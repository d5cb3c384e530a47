"""`rows_read_for` (the stream worker's slice of the CRM) gives exactly the features of the full CRM.

The slice is a speed-up the online path takes on every micro-batch; if it cut a table the deal builder reads
(another deal of the same rep, a company version, an activity), a served feature would silently differ from
training. Compared on random deals (open and closed) at random times, including ones before a company or rep
attribute changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.features.deal_features import compute_deal_features, rows_read_for


@pytest.fixture(scope="module")
def crm():
    return simulate_crm(n_opportunities=800, n_companies=120, n_reps=8, seed=21).tables


def features(tables, deals, as_of):
    index = pd.DataFrame({"opportunity_id": deals, "as_of": as_of})
    return compute_deal_features(tables, index)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slice_gives_the_full_crms_features(crm, seed):
    rng = np.random.default_rng(seed)
    start, end = crm.opportunities["created_at"].min(), crm.extracted_at
    for _ in range(4):
        as_of = start + (end - start) * float(rng.uniform(0.3, 1.0))
        born = crm.opportunities.loc[crm.opportunities["created_at"] <= as_of, "id"].to_numpy()
        deals = rng.choice(born, size=int(rng.integers(1, 12)), replace=False)
        full = features(crm, deals, as_of)
        sliced = features(rows_read_for(crm, deals), deals, as_of)
        pd.testing.assert_frame_equal(sliced, full, check_exact=True)
    assert len(rows_read_for(crm, deals).activities) < len(crm.activities)  # it is a slice


def test_a_slice_that_drops_the_reps_other_deals_is_caught(crm):
    """The check above can fail: keep only the chosen deals' stage history and the reps' records change."""
    deals = crm.opportunities["id"].to_numpy()[:5]
    good = rows_read_for(crm, deals)
    bad = dataclasses.replace(good, stage_history=good.stage_history[good.stage_history["opportunity_id"].isin(deals)])
    full = features(crm, deals, crm.extracted_at)
    assert not features(bad, deals, crm.extracted_at)["rep_win_rate"].equals(full["rep_win_rate"])
