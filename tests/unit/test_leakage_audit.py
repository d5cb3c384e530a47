"""The self-reported leakage audit (`features/audit.py`, its SQL twin in `deal_features_duckdb.py`) and the
slowly changing attributes it relies on: NaT fails, an undeclared feature fails by name, firmographics and the
rep's region are read as of as_of from their history, and without history they are flagged, never silent."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data import snapshots_duckdb
from fulqrun_ml.data.contract import empty_history
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_history import size_band
from fulqrun_ml.data.snapshots import deal_win_snapshots, snapshot_dates
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.features import account_features, close_timing_features, deal_features, lead_features
from fulqrun_ml.features.audit import READS_NOTHING_TIMESTAMPED, LeakageError, audit_point_in_time
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, FEATURE_SOURCE, compute_deal_features
from fulqrun_ml.features.deal_features_duckdb import audit_leakage, create_deal_features, feature_frame

AS_OF = pd.Timestamp("2024-06-01", tz="UTC")


def _sources(**columns: list) -> pd.DataFrame:
    return pd.DataFrame({"as_of": [AS_OF, AS_OF]} | {k: pd.to_datetime(v, utc=True) for k, v in columns.items()})


def test_a_missing_source_time_fails():
    ok = _sources(value=["2024-01-01", "2024-05-31"])
    assert audit_point_in_time(ok, ["value"])["violations"] == 0
    with pytest.raises(LeakageError, match=r"'value': 1 rows report no source time \(NaT\)"):
        audit_point_in_time(_sources(value=["2024-01-01", None]), ["value"])


def test_only_a_feature_declared_to_read_nothing_timestamped_may_report_nat():
    frame = _sources(calendar=[None, None], value=["2024-01-01", "2024-01-01"])
    declared = {"calendar": READS_NOTHING_TIMESTAMPED, "value": "deal_created"}
    assert audit_point_in_time(frame, ["calendar", "value"], declared=declared)["violations"] == 0
    with pytest.raises(LeakageError, match="'calendar': 2 rows report no source time"):
        audit_point_in_time(frame, ["calendar"], declared={"calendar": "deal_created"})
    # A feature declared to read nothing time-stamped that reports a real source time contradicts itself.
    with pytest.raises(LeakageError, match="'calendar': 1 rows report a source time although"):
        audit_point_in_time(_sources(calendar=[None, "2024-01-01"]), ["calendar"], declared=declared)


def test_an_undeclared_feature_fails_by_name():
    frame = _sources(value=["2024-01-01", "2024-01-01"])
    with pytest.raises(LeakageError, match="'mystery': declares no sources"):
        audit_point_in_time(frame, ["value", "mystery"])
    with pytest.raises(LeakageError, match="'value': is not declared"):
        audit_point_in_time(frame, ["value"], declared={"other": "deal_created"})


@pytest.mark.parametrize(
    "module, spec",
    [
        (deal_features, deal_features.DEAL_WIN_FEATURES),
        (close_timing_features, close_timing_features.CLOSE_TIMING_FEATURES),
        (lead_features, lead_features.LEAD_FEATURES),
        (account_features, account_features.ACCOUNT_FEATURES),
    ],
    ids=["deal_win", "close_timing", "lead", "account"],
)
def test_every_hand_declared_feature_declares_its_sources(module, spec):
    assert set(module.FEATURE_SOURCE) == set(spec.names), module.__name__
    untimed = [f for f, g in module.FEATURE_SOURCE.items() if g == READS_NOTHING_TIMESTAMPED]
    assert untimed == (["days_to_quarter_end"] if module is close_timing_features else [])


@pytest.fixture(scope="module")
def deal_snapshots(tiny_crm):
    dates = snapshot_dates(tiny_crm.tables, every_days=28, warmup_days=60, horizon_days=180)
    return deal_win_snapshots(tiny_crm.tables, dates, horizon_days=180)


def test_aggregates_over_no_rows_report_their_anchor_not_nat(tiny_crm, deal_snapshots):
    features, sources = compute_deal_features(tiny_crm.tables, deal_snapshots, with_sources=True)
    summary = audit_point_in_time(sources, DEAL_WIN_FEATURES.names, declared=FEATURE_SOURCE)
    assert summary["violations"] == 0 and summary["not_point_in_time"] == {}
    untouched = (features["activities_total"] == 0).to_numpy()
    assert untouched.any()
    created = tiny_crm.tables.opportunities.set_index("id")["created_at"].reindex(features["opportunity_id"])
    np.testing.assert_array_equal(sources.loc[untouched, "activities_total"].to_numpy(), created[untouched].to_numpy())


def test_the_simulated_history_is_a_real_scd_history(tiny_crm):
    tables = tiny_crm.tables
    history = tables.company_history
    first = history.drop_duplicates("company_id").set_index("company_id")
    companies = tables.companies.set_index("id")
    assert (first["valid_from"] == companies["created_at"].reindex(first.index)).all()
    assert history.groupby("company_id")["valid_from"].is_monotonic_increasing.all()
    last = history.drop_duplicates("company_id", keep="last").set_index("company_id").reindex(companies.index)
    for column in ("industry", "size", "employee_count", "annual_revenue", "country"):
        assert (last[column].to_numpy() == companies[column].to_numpy()).all(), column  # today's row = newest
    assert (size_band(history["employee_count"].to_numpy()) == history["size"].to_numpy()).all()
    assert history.groupby("company_id")["country"].nunique().max() == 1
    mid = tables.extracted_at - pd.Timedelta(days=365)
    changed_later = history[history["valid_from"] > mid]["company_id"].nunique() / len(companies)
    assert 0.3 < changed_later < 0.95 and history.groupby("company_id")["industry"].nunique().max() == 2
    moved = tables.user_history[tables.user_history.duplicated("user_id", keep=False)]
    assert moved["user_id"].nunique() >= 2 and (moved.groupby("user_id")["region"].nunique() == 2).all()
    assert (
        tables.users.set_index("id")["region"].reindex(moved["user_id"]).to_numpy()[1::2]
        == moved["region"].to_numpy()[1::2]
    ).all()


def _valid_at(history: pd.DataFrame, key: str, ids: pd.Series, as_of: pd.Series, column: str) -> np.ndarray:
    """An independent as-of lookup (merge_asof) of `column` for each (id, as_of)."""
    left = pd.DataFrame({key: ids.to_numpy(), "as_of": as_of.to_numpy(), "row": np.arange(len(ids))})
    right = history[[key, "valid_from", column]].sort_values("valid_from")
    right = right.assign(valid_from=right["valid_from"].astype(left["as_of"].dtype))
    merged = pd.merge_asof(left.sort_values("as_of"), right, left_on="as_of", right_on="valid_from", by=key)
    return merged.sort_values("row")[column].to_numpy()


def test_features_read_attributes_as_of_not_todays_row(tiny_crm, deal_snapshots):
    tables = tiny_crm.tables
    features = compute_deal_features(tables, deal_snapshots)
    opps = tables.opportunities.set_index("id").reindex(features["opportunity_id"])
    expected = _valid_at(tables.company_history, "company_id", opps["company_id"], features["as_of"], "employee_count")
    np.testing.assert_array_equal(features["employee_count"].to_numpy(), expected.astype(float))
    region = _valid_at(tables.user_history, "user_id", opps["assigned_to"], features["as_of"], "region")
    assert (features["region"].to_numpy() == region).all()
    today = tables.companies.set_index("id")["employee_count"].reindex(opps["company_id"]).to_numpy()
    assert (features["employee_count"].to_numpy() != today).mean() > 0.2  # the old bug would read these
    assert (
        features["region"].to_numpy() != tables.users.set_index("id")["region"].reindex(opps["assigned_to"]).to_numpy()
    ).any()


def test_without_history_the_current_row_is_read_and_flagged(tiny_crm, deal_snapshots):
    bare = dataclasses.replace(
        tiny_crm.tables, company_history=empty_history("company_history"), user_history=empty_history("user_history")
    )
    features, sources = compute_deal_features(bare, deal_snapshots, with_sources=True)
    summary = audit_point_in_time(sources, DEAL_WIN_FEATURES.names, declared=FEATURE_SOURCE)
    flagged = {"employee_count", "annual_revenue", "industry", "company_size", "country", "region"}
    assert summary["not_point_in_time"] == dict.fromkeys(flagged, len(deal_snapshots))
    today = bare.companies.set_index("id")["employee_count"].reindex(
        bare.opportunities.set_index("id")["company_id"].reindex(features["opportunity_id"])
    )
    np.testing.assert_array_equal(features["employee_count"].to_numpy(), today.to_numpy(dtype=float))
    for name, spec in [("lead", lead_features), ("account", account_features)]:  # the other builders flag the same way
        assert any(g == "company" for g in spec.FEATURE_SOURCE.values()), name


# --- the SQL audit ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_crm():
    return simulate_crm(n_opportunities=300, n_companies=60, n_reps=6, seed=11).tables


@pytest.fixture(params=["history", "no_history"])
def duckdb_build(request, small_crm, tmp_path):
    tables = small_crm
    if request.param == "no_history":
        tables = dataclasses.replace(
            tables, company_history=empty_history("company_history"), user_history=empty_history("user_history")
        )
    db = open_crm(write_crm_directory(tables, tmp_path / "crm"), DuckDBSettings(memory_limit="256MB", threads=1))
    dates = snapshot_dates(tables, every_days=21, warmup_days=60, horizon_days=180)
    name = create_deal_features(db, snapshots_duckdb.deal_win_snapshots(db, dates, 180))
    yield request.param, tables, db, name
    db.close()


def test_sql_features_read_the_history_or_flag_its_absence(duckdb_build):
    kind, tables, db, name = duckdb_build
    got = feature_frame(db, name)
    expected = compute_deal_features(tables, got[["opportunity_id", "as_of"]].assign(as_of=lambda f: f["as_of"]))
    for column in ("employee_count", "annual_revenue"):
        np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, atol=1e-6)
    for column in ("industry", "company_size", "region", "country"):
        assert (got[column].astype(str) == expected[column].astype(str)).all(), column
    summary = audit_leakage(db, name)
    if kind == "history":
        assert summary["not_point_in_time"] == {}
    else:
        assert set(summary["not_point_in_time"]) == {
            "employee_count",
            "annual_revenue",
            "industry",
            "company_size",
            "country",
            "region",
        }


def test_the_sql_audit_fails_null_times_and_undeclared_features(duckdb_build):
    _, _, db, name = duckdb_build
    with pytest.raises(LeakageError, match="'mystery': declares no sources"):
        audit_leakage(db, name, features=[*DEAL_WIN_FEATURES.names, "mystery"])
    db.execute(
        f"UPDATE {name} SET source__company = NULL WHERE opportunity_id IN (SELECT opportunity_id FROM {name} LIMIT 2)"
    )
    with pytest.raises(LeakageError, match=r"'employee_count': [0-9]+ rows report no source time \(NULL\)"):
        audit_leakage(db, name)
