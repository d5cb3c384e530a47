"""Only actions are recommended (never a deal's industry, size or stage), and bad records get field errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator_actions import COMPONENTS, STATE_COLUMNS
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError, RegistryError
from fulqrun_ml.recommend.actions import (
    ACTION_FIELDS,
    STATE_SPEC,
    ActionabilityError,
    check_actionable,
    effect_outputs,
)
from fulqrun_ml.recommend.ranking import rank_actions
from fulqrun_ml.recommend.sdk import check_states, recommend

RECORD = {
    "opportunity_id": "OPP-1",
    "stage": "qualifying",
    "industry": "software",
    "size": "enterprise",
    "value": 50_000.0,
    "meddpicc_gaps": 4,
    "champion_missing": 1,
    "age_days": 20.0,
    "days_in_stage": 5.0,
    "days_since_last_touch": 3.0,
    "touches_30d": 4,
    "meetings_30d": 1,
    "inbound_share_30d": 0.25,
}


@pytest.mark.parametrize("field", ["industry", "size", "stage", "value"])
def test_changing_a_deal_fact_is_refused_by_name(field):
    with pytest.raises(ActionabilityError, match=field):
        check_actionable(["type_channel", field])
    check_actionable(ACTION_FIELDS)  # the action components themselves are fine


def test_action_space_and_state_are_disjoint():
    assert set(ACTION_FIELDS) == set(COMPONENTS)
    assert not set(ACTION_FIELDS) & set(STATE_COLUMNS)
    assert not set(ACTION_FIELDS) & set(STATE_SPEC.names)
    assert {c for c, _ in effect_outputs()} == set(ACTION_FIELDS)


def test_ranking_sets_only_actions_and_respects_support():
    states = check_states([RECORD, {**RECORD, "opportunity_id": "OPP-2", "stage": "negotiation"}])
    before = states.copy()
    k = len(effect_outputs())
    uplift = np.tile(np.linspace(-0.05, 0.1, k), (2, 1))
    support = np.ones((2, k), dtype=bool)
    support[:, -1] = False  # the largest effect is off the support: never recommended
    ranked = rank_actions(states, uplift, np.full((2, k), 0.01), support, k=3)
    pd.testing.assert_frame_equal(states, before)
    facts = set(STATE_COLUMNS) - {"value"}
    assert not facts & set(ranked.columns)
    assert ranked["supported"].all() and (ranked["content"] != "implementation_guide").all()
    assert list(ranked["rank"]) == [1, 2, 3, 1, 2, 3]
    top = ranked.iloc[0]
    assert top["uplift_low"] < top["uplift_win_probability"] < top["uplift_high"]
    assert math.isclose(top["uplift_expected_revenue"], top["uplift_win_probability"] * 50_000)
    assert "pts" in top["reason"] and "qualifying" in top["reason"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"industry": None}, "industry"),
        ({"value": float("nan")}, "value"),
        ({"value": -1.0}, "value"),
        ({"touches_30d": "many"}, "touches_30d"),
        ({"stage": "closed_won"}, "stage"),
    ],
)
def test_bad_records_name_the_field(change, field):
    with pytest.raises(FieldValidationError) as info:
        check_states([{**RECORD, **change}])
    assert info.value.field == field


def test_missing_field_and_empty_input():
    record = dict(RECORD)
    del record["meddpicc_gaps"]
    with pytest.raises(FieldValidationError, match="meddpicc_gaps"):
        check_states([record])
    with pytest.raises(FieldValidationError, match="records"):
        check_states([])


def test_sdk_checks_k_and_the_registry(tmp_path):
    with pytest.raises(FieldValidationError, match="'k'"):
        recommend([RECORD], k=0, models_dir=tmp_path)
    with pytest.raises(RegistryError, match="nba_uplift"):
        recommend([RECORD], k=2, models_dir=tmp_path)
    assert issubclass(ActionabilityError, FulqrunMLError)
