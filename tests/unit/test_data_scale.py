"""The scale path: sharded simulation to Parquet, and DuckDB executions of the pandas definitions.

The DuckDB builders are second executions of `snapshots.py`, `task_snapshots.py` and `compute_deal_features`,
so every test here compares them with the pandas originals on the same small CRM: identical snapshot rows,
every DEAL_WIN_FEATURES value within 1e-6, identical labels, series and sequences. One CRM has every
timestamp floored to the day, which puts many events exactly on as_of dates and ties events in time: the
cases where "at or before" and table-order tie-breaks must agree.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data import snapshots, task_snapshots
from fulqrun_ml.data import snapshots_duckdb as sql_snapshots
from fulqrun_ml.data.contract import HISTORY_COLUMNS, TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.crm_duckdb import CRMDatabase, DuckDBSettings, open_crm
from fulqrun_ml.data.simulator_scale import iter_latent, read_manifest, read_sharded_crm, write_simulated_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.features.audit import CURRENT_VALUE_SUFFIX, LeakageError
from fulqrun_ml.features.crm_scale_build import build_crm_datasets
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, KEYS, compute_deal_features
from fulqrun_ml.features.deal_features_duckdb import (
    audit_leakage,
    create_deal_features,
    feature_frame,
    source_times_frame,
)

N_OPPORTUNITIES, PER_SHARD = 600, 200
EVERY, WARMUP, HORIZON = 21, 60, 180


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crm") / "sharded"
    write_simulated_crm(out, N_OPPORTUNITIES, seed=4, opportunities_per_shard=PER_SHARD)
    return out


@pytest.fixture(scope="module")
def tables(sharded: Path) -> CRMTables:
    return read_sharded_crm(sharded)


@pytest.fixture(scope="module")
def floored(tables: CRMTables, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same CRM with every event time floored to midnight, written as a flat export (another layout)
    without the optional `direction` column (an older export)."""

    def floor(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        return frame.assign(**{column: frame[column].dt.floor("D")})

    day_tables = dataclasses.replace(
        tables,
        activities=floor(tables.activities, "created_at").drop(columns="direction"),
        stage_history=floor(tables.stage_history, "changed_at"),
        opportunities=floor(tables.opportunities, "created_at"),  # created no later than its first history row
        leads=floor(floor(tables.leads, "created_at"), "updated_at"),
    )
    return write_crm_directory(day_tables, tmp_path_factory.mktemp("crm") / "floored")


@pytest.fixture(params=["sharded", "floored"])
def crm(request: pytest.FixtureRequest, sharded: Path, floored: Path, tmp_path: Path):
    """(pandas tables, open DuckDB database) for each layout, both read from the same files."""
    directory = sharded if request.param == "sharded" else floored
    pandas_tables = read_sharded_crm(directory) if request.param == "sharded" else _read_flat(directory)
    db = open_crm(directory, DuckDBSettings(memory_limit="512MB", threads=1, temp_directory=str(tmp_path / "spill")))
    yield pandas_tables, db
    db.close()


def _read_flat(directory: Path) -> CRMTables:
    frames = {name: pd.read_parquet(directory / f"{name}.parquet") for name in TABLE_COLUMNS}
    frames |= {name: pd.read_parquet(directory / f"{name}.parquet") for name in HISTORY_COLUMNS}
    frames["activities"]["direction"] = "unknown"  # what validation fills in for an export without it
    stamp = pd.read_json(directory / "crm_export.json", typ="series")["extracted_at"]
    return CRMTables(**frames, extracted_at=pd.Timestamp(stamp))


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def _table(db: CRMDatabase, name: str) -> pd.DataFrame:
    return db.sql(f"SELECT * FROM {name}").df()


# --- the sharded simulator -------------------------------------------------------------------------------


def test_shards_are_organizations_meeting_the_contract(sharded: Path, tables: CRMTables):
    manifest = read_manifest(sharded)
    assert manifest["shards"] == 3 and manifest["rows"]["opportunities"] == N_OPPORTUNITIES
    assert manifest["rows"] == {name: len(tables.table(name)) for name in TABLE_COLUMNS}
    assert len(tables.organizations) == 3 and tables.opportunities["organization_id"].nunique() == 3
    assert tables.opportunities["id"].is_unique and tables.activities["id"].is_unique
    assert str(tables.activities["created_at"].dtype) == "datetime64[us, UTC]"
    validate_crm(tables, on_error="fail")  # every shard's rows, references across the union included
    latent = pd.concat(iter_latent(sharded), ignore_index=True)
    assert set(latent["opportunity_id"]) == set(tables.opportunities["id"])


def test_sharded_output_is_deterministic_and_seeded(sharded: Path, tables: CRMTables, tmp_path: Path):
    write_simulated_crm(tmp_path / "again", N_OPPORTUNITIES, seed=4, opportunities_per_shard=PER_SHARD)
    again = read_sharded_crm(tmp_path / "again")
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(tables.table(name), again.table(name))
    write_simulated_crm(tmp_path / "other", 300, seed=5, opportunities_per_shard=PER_SHARD)
    other = read_sharded_crm(tmp_path / "other")
    assert not set(other.opportunities["id"]) & set(tables.opportunities["id"])
    with pytest.raises(FileNotFoundError, match=r"crm_export\.json"):
        read_manifest(tmp_path)


# --- parity: DuckDB executions vs the pandas definitions ------------------------------------------------


def test_deal_win_snapshots_and_every_feature_match_pandas(crm):
    tables, db = crm
    dates = snapshots.snapshot_dates(tables, EVERY, WARMUP, HORIZON)
    assert sql_snapshots.snapshot_dates(db, EVERY, WARMUP, HORIZON) == dates
    expected = _sorted(snapshots.deal_win_snapshots(tables, dates, HORIZON), KEYS)
    got = _sorted(_table(db, sql_snapshots.deal_win_snapshots(db, dates, HORIZON))[expected.columns], KEYS)
    assert len(expected) > 500
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)

    features, sources = compute_deal_features(tables, expected, with_sources=True)
    name = create_deal_features(db, "deal_win_snapshots")
    got_features = _sorted(feature_frame(db, name), KEYS)
    features = _sorted(features, KEYS)
    pd.testing.assert_frame_equal(got_features[KEYS], features[KEYS], check_dtype=False)
    for feature in DEAL_WIN_FEATURES.numeric:
        np.testing.assert_allclose(
            got_features[feature.name].to_numpy(float), features[feature.name].to_numpy(float), rtol=0, atol=1e-6
        )
    for feature in DEAL_WIN_FEATURES.categorical:
        assert (got_features[feature.name].astype(str) == features[feature.name].astype(str)).all(), feature.name
    assert features["activities_last_14d"].sum() > 0 and features["rep_win_rate"].nunique() > 1  # records read

    got_sources = _sorted(source_times_frame(db, name), KEYS)
    for column in sources.columns.drop(KEYS):
        if column.endswith(CURRENT_VALUE_SUFFIX):  # the audit's "current value, not point-in-time" flags
            expected_flags = _sorted(sources, KEYS)[column].astype(bool)
            pd.testing.assert_series_equal(got_sources[column].astype(bool), expected_flags, check_dtype=False)
            continue
        expected_times = pd.to_datetime(_sorted(sources, KEYS)[column], utc=True)
        pd.testing.assert_series_equal(pd.to_datetime(got_sources[column], utc=True), expected_times, check_dtype=False)
    assert audit_leakage(db, name)["violations"] == 0


def test_the_sql_leakage_audit_catches_a_feature_reading_the_future(crm):
    tables, db = crm
    dates = snapshots.snapshot_dates(tables, EVERY, WARMUP, HORIZON)
    name = create_deal_features(db, sql_snapshots.deal_win_snapshots(db, dates, HORIZON))
    db.execute(
        f"UPDATE {name} SET source__activities = as_of + INTERVAL 1 DAY WHERE opportunity_id IN "
        f"(SELECT opportunity_id FROM {name} LIMIT 3)"
    )
    with pytest.raises(LeakageError, match="activities_total"):
        audit_leakage(db, name)


def test_lead_account_and_revenue_builders_match_pandas(crm):
    tables, db = crm
    dates = snapshots.snapshot_dates(tables, EVERY, WARMUP, 60)
    leads = _sorted(task_snapshots.lead_conversion_snapshots(tables, dates, 60), ["as_of", "lead_id"])
    got = _table(db, sql_snapshots.lead_conversion_snapshots(db, dates, 60))[leads.columns]
    assert len(leads) > 200 and 0 < leads["label"].mean() < 1
    pd.testing.assert_frame_equal(_sorted(got, ["as_of", "lead_id"]), leads, check_dtype=False)

    accounts = _sorted(task_snapshots.account_snapshots(tables, dates, 90), ["as_of", "company_id"])
    got = _table(db, sql_snapshots.account_snapshots(db, dates, 90))[accounts.columns]
    assert len(accounts) > 200 and 0 < accounts["expansion"].mean() < 1
    pd.testing.assert_frame_equal(_sorted(got, ["as_of", "company_id"]), accounts, check_dtype=False)

    for by in ("organization", "region", "rep"):
        for freq in ("W", "M"):
            expected = task_snapshots.revenue_series(tables, freq=freq, by=by)
            got = sql_snapshots.revenue_series(db, freq=freq, by=by)[expected.columns]
            pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False, rtol=0, atol=1e-6)


def test_activity_sequences_match_pandas(crm):
    tables, db = crm
    dates = snapshots.snapshot_dates(tables, EVERY, WARMUP, HORIZON)
    # Every 4th row: the pandas builder loops over rows in Python, and a quarter of them covers every case.
    index = snapshots.deal_win_snapshots(tables, dates, HORIZON).iloc[::4].reset_index(drop=True)
    db.con.register("index_frame", index[KEYS])
    db.execute("CREATE TEMP TABLE idx AS SELECT * FROM index_frame")
    for max_len in (4, 16):
        expected = task_snapshots.activity_sequences(tables, index, max_len=max_len)
        frame = _table(db, sql_snapshots.activity_sequences(db, "idx", max_len=max_len, name=f"seq{max_len}"))
        got = sql_snapshots.sequences_to_arrays(frame, index, "opportunity_id", max_len)
        assert set(got) == set(expected) and (expected["length"] == max_len).any()
        for key, values in expected.items():
            if values.dtype.kind == "f":  # float32 in both: a float64 rounding apart at most
                np.testing.assert_allclose(got[key], values, rtol=1e-6, atol=1e-5, err_msg=key)
            else:
                np.testing.assert_array_equal(got[key], values, err_msg=key)


def test_build_writes_every_dataset_with_the_pandas_row_counts(sharded: Path, tables: CRMTables, tmp_path: Path):
    report = build_crm_datasets(sharded, tmp_path / "out", DuckDBSettings(memory_limit="512MB", threads=1))
    dates = snapshots.snapshot_dates(tables, 14, 60, 180)
    deal = pd.read_parquet(tmp_path / "out" / "deal_win.parquet")
    assert len(deal) == report.rows["deal_win"] == len(snapshots.deal_win_snapshots(tables, dates, 180))
    assert set(DEAL_WIN_FEATURES.names) <= set(deal.columns) and deal["label"].between(0, 1).all()
    assert report.rows["lead_conversion"] == len(
        task_snapshots.lead_conversion_snapshots(tables, snapshots.snapshot_dates(tables, 14, 60, 60), 60)
    )
    assert report.rows["revenue_rep_M"] == len(task_snapshots.revenue_series(tables, freq="M", by="rep"))
    sequences = pd.read_parquet(tmp_path / "out" / "activity_sequences.parquet")
    assert len(sequences) == len(deal) and sequences["length"].max() <= 32
    assert report.audit["violations"] == 0 and set(report.seconds) >= {"deal_win_features", "activity_sequences"}
