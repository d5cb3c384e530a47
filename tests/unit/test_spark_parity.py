"""Spark runs the DuckDB snapshot SQL text (through `spark/dialect.py`) and must return the same rows exactly.

One Spark session for the whole test run (session-scoped fixture: JVM startup is the dominant cost). The CRM
is the small sharded simulation of test_data_scale, plus a copy with every time floored to midnight, where
ties in time and events exactly on as_of dates exercise the table-order tie-breaks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.data import snapshots_duckdb as sql_snapshots
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.data.simulator_scale import read_sharded_crm, write_simulated_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.spark.dialect import UnsupportedDialectError, to_spark
from fulqrun_ml.spark.session import local_session
from fulqrun_ml.spark.snapshots import LEAD_TABLES, deal_win_snapshots, lead_conversion_snapshots, register_crm

EVERY, WARMUP, HORIZON = 21, 60, 180
LEAD_HORIZON = 60
KEYS = ["as_of", "opportunity_id"]


@pytest.fixture(scope="session")
def spark():
    session = local_session("local[1]", shuffle_partitions=2)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("crm") / "sharded"
    write_simulated_crm(out, 400, seed=4, opportunities_per_shard=200)
    return out


@pytest.fixture(scope="module")
def floored(sharded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tables = read_sharded_crm(sharded)
    history = tables.stage_history.assign(changed_at=tables.stage_history["changed_at"].dt.floor("D"))
    opportunities = tables.opportunities.assign(created_at=tables.opportunities["created_at"].dt.floor("D"))
    leads = tables.leads.assign(**{c: tables.leads[c].dt.floor("D") for c in ("created_at", "updated_at")})
    day = dataclasses.replace(tables, stage_history=history, opportunities=opportunities, leads=leads)
    return write_crm_directory(day, tmp_path_factory.mktemp("crm") / "floored")


def _duckdb_rows(directory: Path, tmp_path: Path) -> tuple[list[pd.Timestamp], pd.DataFrame]:
    with open_crm(directory, DuckDBSettings(memory_limit="512MB", threads=1, temp_directory=str(tmp_path))) as db:
        dates = sql_snapshots.snapshot_dates(db, EVERY, WARMUP, HORIZON)
        frame = db.sql(f"SELECT * FROM {sql_snapshots.deal_win_snapshots(db, dates, HORIZON)}").df()
    return dates, frame


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in ("as_of", "label_time", "stage_entered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True).astype("datetime64[us, UTC]")
    return frame.sort_values(KEYS).reset_index(drop=True)


@pytest.mark.parametrize("layout", ["sharded", "floored"])
def test_spark_deal_win_snapshot_equals_duckdb_exactly(spark, layout, sharded, floored, tmp_path):
    directory = sharded if layout == "sharded" else floored
    dates, expected = _duckdb_rows(directory, tmp_path)
    register_crm(spark, directory)
    got = deal_win_snapshots(spark, dates, HORIZON).toPandas()
    assert len(expected) > 200
    expected, got = _normalised(expected), _normalised(got[expected.columns])
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


@pytest.mark.parametrize("layout", ["sharded", "floored"])
def test_spark_lead_conversion_snapshot_equals_duckdb_exactly(spark, layout, sharded, floored, tmp_path):
    """The lead-conversion SQL text on Spark; the floored CRM puts lead creations and decisions on as_of dates."""
    directory = sharded if layout == "sharded" else floored
    with open_crm(directory, DuckDBSettings(memory_limit="512MB", threads=1, temp_directory=str(tmp_path))) as db:
        dates = sql_snapshots.snapshot_dates(db, EVERY, WARMUP, LEAD_HORIZON)
        expected = db.sql(f"SELECT * FROM {sql_snapshots.lead_conversion_snapshots(db, dates, LEAD_HORIZON)}").df()
        extracted_at = db.extracted_at
    register_crm(spark, directory, LEAD_TABLES)
    got = lead_conversion_snapshots(spark, dates, LEAD_HORIZON, extracted_at).toPandas()
    assert len(expected) > 200 and 0 < expected["label"].sum() < len(expected)
    keys = ["as_of", "lead_id"]
    expected, got = (
        f.astype({c: "datetime64[us, UTC]" for c in ("as_of", "label_time")}).sort_values(keys).reset_index(drop=True)
        for f in (expected, _utc(got[expected.columns]))
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(**{c: pd.to_datetime(frame[c], utc=True) for c in ("as_of", "label_time")})


def test_dialect_refuses_untranslated_duckdb_constructs():
    assert "TIMESTAMP'9999" in to_spark("coalesce(x, 'infinity'::TIMESTAMPTZ)")
    assert to_spark("a::VARCHAR, b::TIMESTAMPTZ") == "a::STRING, b::TIMESTAMP"
    with pytest.raises(UnsupportedDialectError, match="ASOF"):
        to_spark("SELECT * FROM a ASOF LEFT JOIN b ON a.t >= b.t")


def test_spark_bulk_scores_equal_the_bulk_scorer(spark, published, tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from fulqrun_ml.errors import FieldValidationError
    from fulqrun_ml.features.spec import FittedFeatureSpec
    from fulqrun_ml.scoring.bulk import score_table
    from fulqrun_ml.spark.bulk import score_table_spark

    version, _ = published
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    run_dir = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"])
    rows = pd.read_parquet(run_dir / "holdout.parquet")[spec.spec.names].reset_index(drop=True)
    rows.insert(0, "opportunity_id", [f"opp-{i:06d}" for i in range(len(rows))])
    rows.loc[3, "stage"] = "a-stage-never-seen"  # unknown category: both paths must map it the same way
    source = tmp_path / "deals.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), source, row_group_size=97)

    expected = pd.read_parquet(score_table(version, source, tmp_path / "bulk.parquet", chunk_rows=500).output)
    assert score_table_spark(spark, version.path, source, tmp_path / "spark_scores") == len(rows)
    got = pd.read_parquet(tmp_path / "spark_scores").sort_values("opportunity_id").reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=1e-6, rtol=0)

    with pytest.raises(FieldValidationError, match="'value'"):  # the scores file lacks the features
        score_table_spark(spark, version.path, tmp_path / "bulk.parquet", tmp_path / "bad")
    numeric = spec.spec.numeric[0].name
    broken = rows.assign(**{numeric: rows[numeric].astype(float)})
    broken.loc[7, numeric] = float("nan")  # found inside an executor: still named, nothing published
    pq.write_table(pa.Table.from_pandas(broken, preserve_index=False), tmp_path / "broken.parquet")
    with pytest.raises(FieldValidationError, match=f"'{numeric}': contains NaN"):
        score_table_spark(spark, version.path, tmp_path / "broken.parquet", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.tmp-*"))
