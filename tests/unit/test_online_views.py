"""Feature views without Redis: versions follow the definition, models are tied to the view that feeds them,
rows are validated (field named) before they could reach the store, and open entities follow the snapshot rules."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.task_snapshots import lead_conversion_snapshots
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.spec import FeatureSpec, NumericFeature
from fulqrun_ml.online.store import as_of_now, categorical_text, encode_rows
from fulqrun_ml.online.views import (
    DEAL_WIN_VIEW,
    LEAD_CONVERSION_VIEW,
    VIEWS,
    FeatureViewError,
    view_for_task,
    view_for_version,
    with_ttl,
)


@pytest.fixture(scope="module")
def tables():
    return simulate_crm(n_opportunities=120, n_companies=30, n_reps=5, seed=5).tables


def test_version_is_stable_and_follows_the_definition() -> None:
    assert DEAL_WIN_VIEW.version == dataclasses.replace(DEAL_WIN_VIEW).version
    assert len(DEAL_WIN_VIEW.version) == 12
    assert DEAL_WIN_VIEW.version != LEAD_CONVERSION_VIEW.version
    # a transform change, a dropped feature, a new source declaration, another compute: each is a new version
    numeric = list(DEAL_WIN_FEATURES.numeric)
    numeric[0] = NumericFeature(numeric[0].name, numeric[0].description, log1p=not numeric[0].log1p)
    changed = [
        dataclasses.replace(DEAL_WIN_VIEW, spec=FeatureSpec(tuple(numeric), DEAL_WIN_FEATURES.categorical)),
        dataclasses.replace(DEAL_WIN_VIEW, spec=FeatureSpec(tuple(numeric[1:]), DEAL_WIN_FEATURES.categorical)),
        dataclasses.replace(DEAL_WIN_VIEW, sources=(*DEAL_WIN_VIEW.sources[1:], ("value", "stage"))),
        dataclasses.replace(DEAL_WIN_VIEW, compute=LEAD_CONVERSION_VIEW.compute),
    ]
    assert len({DEAL_WIN_VIEW.version, *(v.version for v in changed)}) == 5
    # the TTL is a serving choice, not part of the definition: same keys
    assert with_ttl(DEAL_WIN_VIEW, timedelta(minutes=5)).version == DEAL_WIN_VIEW.version


def test_key_layout() -> None:
    assert DEAL_WIN_VIEW.key("abc") == f"fq:fv:deal_win_features:{DEAL_WIN_VIEW.version}:abc"


def test_views_use_the_training_declarations() -> None:
    assert VIEWS["deal_win"].spec is DEAL_WIN_FEATURES
    assert view_for_task("lead_conversion") is LEAD_CONVERSION_VIEW
    assert dict(DEAL_WIN_VIEW.sources).keys() == set(DEAL_WIN_FEATURES.names)
    with pytest.raises(FeatureViewError, match="task 'churn' has no feature view"):
        view_for_task("churn")
    with pytest.raises(FeatureViewError, match="ttl must be positive"):
        with_ttl(DEAL_WIN_VIEW, timedelta(0))


def _metadata(names: list[str]) -> dict:
    return {"task": "deal_win", "name": "deal_win", "version": 3, "inputs": [{"name": n} for n in names]}


def test_view_for_version_accepts_the_same_features_in_any_order() -> None:
    assert view_for_version(_metadata(list(reversed(DEAL_WIN_FEATURES.names)))) is DEAL_WIN_VIEW


def test_view_for_version_refuses_another_feature_set_naming_the_difference() -> None:
    names = [n for n in DEAL_WIN_FEATURES.names if n != "rep_win_rate"] + ["budget_confirmed"]
    with pytest.raises(FeatureViewError) as caught:
        view_for_version(_metadata(names))
    message = str(caught.value)
    assert "deal_win v3" in message and "['budget_confirmed']" in message and "['rep_win_rate']" in message
    with pytest.raises(FeatureViewError, match="no 'task'"):
        view_for_version({"inputs": []})
    with pytest.raises(FeatureViewError, match="'inputs'"):
        view_for_version({"task": "deal_win", "inputs": "value"})


def _rows(tables, n: int = 4) -> pd.DataFrame:
    as_of = tables.extracted_at - pd.Timedelta(days=60)
    ids = DEAL_WIN_VIEW.open_entities(tables, as_of)[:n]
    return DEAL_WIN_VIEW.compute_at(tables, ids, as_of)


def test_encode_rows_round_values_exactly(tables) -> None:
    rows = _rows(tables)
    ids, as_of_ms, values = encode_rows(DEAL_WIN_VIEW, rows)
    assert ids == rows["opportunity_id"].tolist()
    assert int(as_of_ms[0]) == int(rows["as_of"].iloc[0].timestamp() * 1000)
    n_num = len(DEAL_WIN_FEATURES.numeric)
    back = np.array([[float(v) for v in row[:n_num]] for row in values])
    np.testing.assert_array_equal(back, rows[[f.name for f in DEAL_WIN_FEATURES.numeric]].to_numpy())
    assert [row[n_num] for row in values] == rows["stage"].tolist()
    assert categorical_text(None) == "" and categorical_text(float("nan")) == "" and categorical_text("x") == "x"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda f: f.drop(columns=["stage"]), "stage", "missing"),
        (lambda f: f.assign(value="lots"), "value", "not numeric"),
        (lambda f: f.assign(as_of=f["as_of"].dt.tz_localize(None)), "as_of", "tz-aware"),
        (lambda f: f.assign(as_of=f["as_of"] + pd.Timedelta(microseconds=1)), "as_of", "sub-millisecond"),
        (lambda f: f.assign(opportunity_id=""), "opportunity_id", "empty id"),
    ],
)
def test_encode_rows_refuses_bad_rows_naming_the_field(tables, change, field, reason) -> None:
    with pytest.raises(FieldValidationError) as caught:
        encode_rows(DEAL_WIN_VIEW, change(_rows(tables)))
    assert caught.value.field == field and reason in caught.value.reason


def test_as_of_now_is_whole_milliseconds() -> None:
    now = as_of_now()
    assert now.tzinfo is not None and now == now.floor("ms")


def test_open_leads_are_the_snapshot_rows(tables) -> None:
    as_of = tables.extracted_at - pd.Timedelta(days=200)
    expected = lead_conversion_snapshots(tables, [as_of], horizon_days=30)["lead_id"]
    assert sorted(LEAD_CONVERSION_VIEW.open_entities(tables, as_of)) == sorted(expected)
    assert len(expected) > 0


def test_errors_are_project_errors() -> None:
    assert issubclass(FeatureViewError, FulqrunMLError)
