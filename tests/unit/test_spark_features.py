"""Spark runs the DuckDB deal-win feature SQL text, ASOF joins included (`spark/asof.py`), with exact parity.

The CRM is a small sharded simulation with planted events around one (deal, as_of) row: a touch exactly at
as_of (must be seen: "at or before"), a touch and a company version one microsecond after it (must not be
seen there, but at the deal's next as_of). DuckDB and Spark build the features over the same files; the
point-in-time checks compare Spark's row with counts taken from the raw files by pandas, not with DuckDB.
One Spark session per test run (`local_session` is getOrCreate: it shares test_spark_parity's JVM).

The whole-CRM build is ~14 Spark jobs (one per shuffle of the six ASOF spans and the joins): too slow for
`make test` on two shared cores, so those tests (and the account snapshot parity) are `extended`
(`make test-extended`, or
`pytest -m extended tests/unit/test_spark_features.py`). `make test` keeps their fast twins: the ASOF
translation against DuckDB on inline rows (every direction, the boundary instant, a later row unseen), the
feature SQL's translation (no DuckDB construct left, every ASOF join a span join) and the audit query on Spark.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fulqrun_ml.data import snapshots_duckdb as sql_snapshots
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.data.simulator_scale import write_simulated_crm
from fulqrun_ml.data.snapshots_duckdb import touch_counts_sql
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, REP_PRIOR_WINS, VERSIONED_GROUPS
from fulqrun_ml.features.deal_features_duckdb import SOURCE_GROUPS, create_deal_features, deal_features_sql
from fulqrun_ml.spark.asof import UnsupportedDialectError, translate_asof_joins
from fulqrun_ml.spark.dialect import to_spark
from fulqrun_ml.spark.features import audit_leakage, deal_features, register_feature_crm
from fulqrun_ml.spark.session import local_session
from fulqrun_ml.spark.snapshots import ACCOUNT_TABLES, account_snapshots, deal_win_snapshots, register_crm

EVERY, WARMUP, HORIZON = 35, 60, 180
ORDER = ["as_of", "opportunity_id"]
PLANTED_INDUSTRY = "planted-future-industry"
MICROSECOND = pd.Timedelta(microseconds=1)


@pytest.fixture(scope="module")
def spark():
    """The test run's Spark session, set for tiny data while this module runs: no adaptive re-planning and one
    shuffle partition, so a query is one Spark job, not one per stage (results do not depend on either)."""
    session = local_session("local[1]", shuffle_partitions=2)
    settings = {"spark.sql.adaptive.enabled": "false", "spark.sql.shuffle.partitions": "1"}
    previous = {key: session.conf.get(key) for key in settings}
    for key, value in settings.items():
        session.conf.set(key, value)
    yield session
    session.catalog.clearCache()  # the features and touches this module cached
    for key, value in previous.items():
        session.conf.set(key, value)


def _plant(directory: Path, dates: list[pd.Timestamp], rows: pd.DataFrame) -> dict:
    """Plant events around the row of a deal that is in the snapshot at two consecutive dates."""
    activities = pd.read_parquet(directory / "activities")
    by_deal = rows[rows["opportunity_id"].isin(activities["related_id"])].groupby("opportunity_id")["as_of"].apply(set)
    deal, at = next((d, a) for d, s in by_deal.items() for a in sorted(s) if a + pd.Timedelta(days=EVERY) in s)
    template = activities[activities["related_id"] == deal].iloc[[0, 0]].reset_index(drop=True)
    template["id"] = ["00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"]
    template["type"] = ["call", "meeting"]
    template["created_at"] = [at, at + MICROSECOND]  # at as_of: seen; just after it: not seen
    _write_like(template, directory / "activities")
    company = pd.read_parquet(directory / "opportunities").set_index("id").loc[deal, "company_id"]
    history = pd.read_parquet(directory / "company_history")
    version = (
        history[history["company_id"] == company]
        .iloc[[0]]
        .assign(industry=PLANTED_INDUSTRY, valid_from=at + MICROSECOND)
    )
    _write_like(version, directory / "company_history")
    return {"deal": deal, "as_of": at, "next": at + pd.Timedelta(days=EVERY)}


def _write_like(rows: pd.DataFrame, table: Path) -> None:
    """One more shard of `table`, with the existing shards' Parquet schema (the engines read files alike)."""
    schema = pq.read_schema(sorted(table.glob("part-*.parquet"))[0])
    pq.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False), table / "part-99999.parquet")


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The planted CRM's features from DuckDB (expected) and Spark (got), and the planted row's keys."""
    directory = tmp_path_factory.mktemp("crm") / "sharded"
    write_simulated_crm(directory, 200, seed=4, opportunities_per_shard=100)
    settings = DuckDBSettings(memory_limit="512MB", threads=1)
    with open_crm(directory, settings) as db:
        dates = sql_snapshots.snapshot_dates(db, EVERY, WARMUP, HORIZON)
        rows = db.sql(f"SELECT * FROM {sql_snapshots.deal_win_snapshots(db, dates, HORIZON)}").df()
    planted = _plant(directory, dates, rows.assign(as_of=pd.to_datetime(rows["as_of"], utc=True)))
    with open_crm(directory, settings) as db:
        expected = db.sql(
            f"SELECT * FROM {create_deal_features(db, sql_snapshots.deal_win_snapshots(db, dates, HORIZON))}"
        ).df()
    register_feature_crm(spark, directory)
    deal_win_snapshots(spark, dates, HORIZON)
    features = deal_features(spark, "deal_win_snapshots", spans="deal_win_snapshots_spans")
    got = features.select(*expected.columns).toPandas()
    return {"expected": expected, "got": got, "planted": planted, "directory": directory}


def _utc_sorted(frame: pd.DataFrame) -> pd.DataFrame:
    times = [c for c in frame.columns if c == "as_of" or c.startswith("source__")]
    frame = frame.assign(**{c: pd.to_datetime(frame[c], utc=True).astype("datetime64[us, UTC]") for c in times})
    return frame.sort_values(ORDER).reset_index(drop=True)


@pytest.mark.extended
def test_spark_deal_features_equal_duckdb_exactly(built):
    """Every feature value, missing value and source time: equal, not close (the dialect keeps DuckDB's
    DOUBLE arithmetic; see spark/dialect.py)."""
    expected = _utc_sorted(built["expected"])
    got = _utc_sorted(built["got"])
    assert len(expected) > 150 and expected["activities_last_14d"].sum() > 0
    assert expected["rep_win_rate"].nunique() > 1 and expected["days_since_last_activity"].notna().all()
    assert set(DEAL_WIN_FEATURES.names) < set(got.columns) and "source__company" in got.columns
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


@pytest.mark.extended
def test_spark_features_do_not_see_an_event_after_as_of(built):
    """The planted row: the touch at as_of is counted, the one a microsecond later and the company version a
    microsecond later are not, and both are seen at the deal's next as_of. The counts are pandas' own."""
    got, planted = _utc_sorted(built["got"]), built["planted"]
    activities = pd.read_parquet(built["directory"] / "activities")
    touches = activities[activities["related_id"] == planted["deal"]]
    row = got[(got["opportunity_id"] == planted["deal"]) & (got["as_of"] == planted["as_of"])].iloc[0]
    later = got[(got["opportunity_id"] == planted["deal"]) & (got["as_of"] == planted["next"])].iloc[0]
    assert row["activities_total"] == (touches["created_at"] <= planted["as_of"]).sum()
    assert row["meetings_total"] == ((touches["created_at"] <= planted["as_of"]) & (touches["type"] == "meeting")).sum()
    assert row["days_since_last_activity"] == 0.0  # the touch exactly at as_of is the last one seen
    assert row["industry"] != PLANTED_INDUSTRY and row["source__company"] <= planted["as_of"]
    assert later["activities_total"] == (touches["created_at"] <= planted["next"]).sum() > row["activities_total"]
    assert later["industry"] == PLANTED_INDUSTRY


@pytest.mark.extended
def test_spark_point_in_time_audit_runs_the_duckdb_rules(spark, built):
    assert audit_leakage(spark, "deal_win_features")["violations"] == 0
    from pyspark.sql import functions as F

    leaky = F.when(F.col("stage_changes") > 2, F.expr("as_of + INTERVAL 1 DAY")).otherwise(F.col("source__activities"))
    spark.table("deal_win_features").withColumn("source__activities", leaky).createOrReplaceTempView("leaky")
    with pytest.raises(LeakageError, match="activities_total"):
        audit_leakage(spark, "leaky")


@pytest.mark.extended
def test_spark_account_snapshot_equals_duckdb_exactly(spark, built):
    """The account snapshot's ASOF join looks forward ("the next win after as_of", `<`): same rows and labels."""
    with open_crm(built["directory"], DuckDBSettings(memory_limit="512MB", threads=1)) as db:
        dates = sql_snapshots.snapshot_dates(db, EVERY, WARMUP, 60)
        expected = db.sql(f"SELECT * FROM {sql_snapshots.account_snapshots(db, dates, 60)}").df()
        extracted_at = db.extracted_at
    register_crm(spark, built["directory"], ACCOUNT_TABLES)
    got = account_snapshots(spark, dates, 60, extracted_at).toPandas()[expected.columns]
    assert len(expected) > 100 and 0 < expected["expansion"].sum() < len(expected)
    keys = ["as_of", "company_id"]
    expected, got = (
        f.assign(**{c: pd.to_datetime(f[c], utc=True).astype("datetime64[us, UTC]") for c in ("as_of", "label_time")})
        .sort_values(keys)
        .reset_index(drop=True)
        for f in (expected, got)
    )
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)


ASOF_CASES = """
    WITH l(k, t) AS (VALUES ('a', 1), ('a', 3), ('a', 5), ('a', 9), ('b', 2), ('c', NULL), (NULL, 4)),
    r(k, t, v) AS (VALUES ('a', 1, 'a1'), ('a', 5, 'a5'), ('a', NULL, 'an'), ('b', 3, 'b3'), ('c', 1, 'c1'))
    SELECT l.k, l.t, ge.v AS ge, gt.v AS gt, le.v AS le, lt.v AS lt
    FROM l
    ASOF LEFT JOIN r ge ON ge.k = l.k AND l.t >= ge.t
    ASOF LEFT JOIN r gt ON gt.k = l.k AND gt.t < l.t
    ASOF LEFT JOIN (SELECT * FROM r WHERE v <> 'x(') le ON le.k = l.k AND l.t <= le.t
    ASOF LEFT JOIN r lt ON l.k = lt.k AND l.t < lt.t
    ORDER BY 1 NULLS LAST, 2 NULLS LAST
"""


def test_asof_translation_matches_duckdb_in_every_direction(spark):
    """All four comparisons, flipped spellings, a subquery relation, NULL keys and times (one Spark query)."""
    expected = duckdb.sql(ASOF_CASES).df().astype(object)
    expected = expected.where(expected.notna(), None)
    got = spark.sql(to_spark(ASOF_CASES)).toPandas().astype(object)
    pd.testing.assert_frame_equal(got.where(got.notna(), None), expected)
    a_rows = expected[expected["k"] == "a"]
    # at t=3 the row at 5 is in the future (unseen); at t=5 it is exactly at the boundary (seen)
    assert a_rows["ge"].tolist() == ["a1", "a1", "a5", "a5"] and a_rows["gt"].tolist() == [None, "a1", "a1", "a5"]
    assert a_rows["lt"].tolist() == ["a5", "a5", None, None] and expected["ge"].iloc[4:].isna().all()


def test_asof_shapes_without_a_translation_are_refused_by_name():
    assert "LEFT JOIN (SELECT *, lead(t) OVER (PARTITION BY k ORDER BY t)" in translate_asof_joins(
        "FROM l ASOF LEFT JOIN r x ON x.k = l.k AND l.t >= x.t"
    )
    inner = translate_asof_joins("FROM l ASOF JOIN r x ON x.k = l.k AND l.t >= x.t")
    assert inner.startswith("FROM l JOIN (SELECT *, lead(t)") and "x.t <= l.t AND (x._asof_bound IS NULL" in inner
    with pytest.raises(UnsupportedDialectError, match="ASOF join not of the form"):
        translate_asof_joins("FROM l ASOF LEFT JOIN r x ON x.k = l.k AND x.j = l.j AND l.t >= x.t")
    with pytest.raises(UnsupportedDialectError, match="ASOF join not of the form"):
        translate_asof_joins("FROM l ASOF JOIN r x USING (k, t)")
    with pytest.raises(UnsupportedDialectError, match="each condition must compare"):
        translate_asof_joins("FROM l ASOF LEFT JOIN r x ON x.k = x.j AND l.t >= x.t")
    assert to_spark("SELECT 2.0 / 5.0, '1.5', x1.0") == "SELECT 2.0D / 5.0D, '1.5', x1.0"


def test_the_feature_sql_translates_to_span_joins():
    """The deal-win feature definition leaves no DuckDB construct behind: its six ASOF lookups become span
    joins, epoch_us becomes unix_micros, and its DECIMAL literals DOUBLE ones."""
    sql = to_spark(deal_features_sql("idx_view", "spans_view", "touches_view"))
    assert (
        not re.search(r"\bASOF\s", sql, re.IGNORECASE)
        and "epoch_us" not in sql
        and sql.count("AS _asof_bound FROM") == 6
    )
    assert "unix_micros(" in sql and f"{REP_PRIOR_WINS!r}D" in sql
    assert "FILTER (WHERE type = 'call') OVER peers" in to_spark(touch_counts_sql("idx_view", "opportunity_id"))


def test_the_audit_query_runs_on_spark_with_the_duckdb_rules(spark):
    """`audit_counts_sql` on Spark over three rows; a source read one microsecond after as_of is a leak."""
    as_of = "TIMESTAMP'2024-01-10 00:00:00'"

    def rows(late: str) -> str:
        cells = [f"{as_of} AS as_of"]
        cells += [f"{late if g == 'activities' else as_of} AS source__{g}" for g in SOURCE_GROUPS]
        cells += [f"{flag} AS current__{g}" for g in VERSIONED_GROUPS for flag in ["k = 0"]]
        return f"SELECT {', '.join(cells)} FROM VALUES (0), (1), (2) AS v(k)"

    spark.sql(rows(as_of)).createOrReplaceTempView("audit_ok")
    report = audit_leakage(spark, "audit_ok")
    assert report["violations"] == 0 and report["rows_audited"] == 3 and report["not_point_in_time"]["industry"] == 1
    spark.sql(rows(f"CASE WHEN k = 2 THEN {as_of} + INTERVAL 1 MICROSECOND ELSE {as_of} END")).createOrReplaceTempView(
        "audit_late"
    )
    with pytest.raises(LeakageError, match="'activities_total': 1 rows read data after as_of"):
        audit_leakage(spark, "audit_late")
