"""Generated features: values match a direct pandas count, point-in-time by construction, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.audit import LeakageError, audit_point_in_time
from fulqrun_ml.features.generated import (
    compute_generated_features,
    generate_features,
    generated_source_times,
    generated_spec,
)


@pytest.fixture(scope="module")
def crm() -> CRMTables:
    return simulate_crm(n_opportunities=200, n_companies=40, n_reps=5, seed=11).tables


@pytest.fixture(scope="module")
def index(crm: CRMTables) -> pd.DataFrame:
    opps = crm.opportunities.iloc[:40]
    as_of = opps["created_at"] + pd.Timedelta(days=30)
    return pd.DataFrame({"opportunity_id": opps["id"].to_numpy(), "as_of": as_of.to_numpy()})


def test_candidates_cover_every_slice_window_and_relation():
    names = [f.name for f in generate_features()]
    assert len(names) == len(set(names))
    assert "gen_self_call_count_30d" in names and "gen_company_inbound_count_90d" in names
    assert "gen_rep_all_days_since" in names and "gen_self_trend_7d_vs_90d" in names
    spec = generated_spec(generate_features())
    assert {f.name for f in spec.numeric if f.log1p} == {f.name for f in generate_features() if f.kind == "count"}


def test_counts_match_a_direct_pandas_computation(crm, index):
    features = [
        f for f in generate_features(("self",)) if f.name in ("gen_self_call_count_30d", "gen_self_all_days_since")
    ]
    values = compute_generated_features(crm, index, features)
    acts = crm.activities
    for i, row in index.iterrows():
        mine = acts[(acts["related_id"] == row["opportunity_id"]) & (acts["created_at"] <= row["as_of"])]
        recent_calls = mine[(mine["type"] == "call") & (mine["created_at"] > row["as_of"] - pd.Timedelta(days=30))]
        assert values.loc[i, "gen_self_call_count_30d"] == len(recent_calls)
        expected = (row["as_of"] - mine["created_at"].max()).total_seconds() / 86400.0 if len(mine) else 365.0
        assert values.loc[i, "gen_self_all_days_since"] == pytest.approx(expected, abs=1e-6)


def test_values_do_not_move_when_the_future_is_cut_off(crm, index):
    """Point in time by construction: dropping every activity after the last as_of changes nothing."""
    features = generate_features()
    full = compute_generated_features(crm, index, features)
    cut = crm.activities[crm.activities["created_at"] <= index["as_of"].min()]
    early = index.assign(as_of=index["as_of"].min())
    truncated = CRMTables(**{**crm.__dict__, "activities": cut})
    assert compute_generated_features(crm, early, features).equals(
        compute_generated_features(truncated, early, features)
    )
    audit = audit_point_in_time(generated_source_times(full, index, features), [f.name for f in features])
    assert audit["violations"] == 0


def test_a_planted_future_read_fails_the_audit(crm, index):
    features = generate_features(("self",))
    values = compute_generated_features(crm, index, features)
    values.loc[3, "_source_time_self"] = (index.loc[3, "as_of"] + pd.Timedelta(hours=1)).floor("s")
    with pytest.raises(LeakageError, match="gen_self"):
        audit_point_in_time(generated_source_times(values, index, features), [f.name for f in features])


def test_bad_requests_name_the_field(crm, index):
    with pytest.raises(FulqrunMLError, match="entity"):
        compute_generated_features(crm, index, generate_features(), entity="ship")
    with pytest.raises(FulqrunMLError, match="opportunity_id"):
        compute_generated_features(crm, index.rename(columns={"opportunity_id": "id"}), generate_features())
    unknown = index.assign(opportunity_id=np.where(np.arange(len(index)) == 0, "nope", index["opportunity_id"]))
    with pytest.raises(FulqrunMLError, match="'nope'"):
        compute_generated_features(crm, unknown, generate_features())
