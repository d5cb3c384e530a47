"""Lead intent: the fixed rule, point-in-time inputs (audited), and more intent on leads that are likelier to
convert in the simulator's truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.task_snapshots import lead_conversion_snapshots
from fulqrun_ml.features.audit import audit_point_in_time
from fulqrun_ml.features.meddpicc_intent import LEAD_INTENT_ALL_FEATURES, compute_lead_intent_features, intent_score


def test_the_rule_is_the_documented_one():
    cues = pd.DataFrame(
        {
            "lead_urgency_share": [0.0, 1.0, 0.0, 0.5],
            "lead_committee_share": [0.0, 1.0, 0.0, 0.0],
            "lead_pricing_share": [0.0, 1.0, 0.0, 0.25],
            "lead_disinterest_share": [0.0, 0.0, 1.0, 0.5],
        }
    )
    np.testing.assert_allclose(intent_score(cues), [0.5, 1.0, 0.0, 0.5 + 0.75 / 3 - 0.25])


def test_intent_is_point_in_time_and_tracks_lead_quality():
    crm = simulate_crm(n_opportunities=100, n_companies=40, n_reps=4, n_leads=300, seed=8)
    start = crm.tables.leads["created_at"].min()
    dates = [start + pd.Timedelta(days=d) for d in (120, 240, 360, 480)]
    index = lead_conversion_snapshots(crm.tables, dates, horizon_days=30)[["lead_id", "as_of"]]
    features, sources = compute_lead_intent_features(crm.tables, index, with_sources=True)
    assert list(features.columns) == ["lead_id", "as_of", *LEAD_INTENT_ALL_FEATURES.names]
    assert audit_point_in_time(sources, LEAD_INTENT_ALL_FEATURES.names)["violations"] == 0
    q = crm.lead_latent.set_index("lead_id")["latent_quality"].reindex(features["lead_id"]).to_numpy()
    informed = features["lead_notes"].to_numpy() > 0
    assert informed.sum() > 30
    assert np.corrcoef(q[informed], features["lead_intent_score"].to_numpy()[informed])[0, 1] > 0.3
    with pytest.raises(KeyError):
        intent_score(features.drop(columns="lead_urgency_share"))
