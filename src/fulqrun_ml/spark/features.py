"""The deal-win features on Spark: the DuckDB builder's SQL text (`features/deal_features_duckdb.py`,
`deal_features_sql`; touches from `snapshots_duckdb.touch_counts_sql`) through `spark/dialect.py`, whose
ASOF-join translation (`spark/asof.py`) keeps every "latest value at as_of" lookup point-in-time.

One definition, three executions: pandas (`compute_deal_features`, THE definition), DuckDB (proven equal to it
by tests/unit/test_data_scale.py) and Spark (proven equal to DuckDB by tests/unit/test_spark_features.py).
The point-in-time audit runs the DuckDB audit's query text too (`audit_counts_sql`) and judges the counts
with the same rules (`audit_from_counts`), so a Spark feature table that read the future is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fulqrun_ml.data import snapshots_duckdb as duck
from fulqrun_ml.data.contract import HISTORY_COLUMNS, TABLE_COLUMNS
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, KEYS
from fulqrun_ml.features.deal_features_duckdb import (
    HISTORY_TYPES,
    audit_counts_sql,
    audit_from_counts,
    deal_features_sql,
)
from fulqrun_ml.spark.dialect import to_spark
from fulqrun_ml.spark.snapshots import register_crm

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

# The tables the feature SQL reads (all contract columns: the views are lazy, Spark prunes unused ones).
FEATURE_TABLES = {
    name: TABLE_COLUMNS[name] for name in ("opportunities", "stage_history", "activities", "companies", "users")
}
_SPARK_TYPE = {"UUID": "STRING", "VARCHAR": "STRING", "TIMESTAMPTZ": "TIMESTAMP"}
FEATURE_HISTORY = ("company_history", "user_history")


def register_feature_crm(spark: SparkSession, directory: str | Path) -> dict[str, int]:
    """Views for the feature SQL over a CRM directory: the contract tables (`register_crm`) and the history
    tables, as `deal_features_duckdb.create_history_views` makes them (files when present, else empty typed
    views, so the builders fall back to the current rows, flagged). Returns each history view's row count."""
    register_crm(spark, directory, FEATURE_TABLES)
    rows = {}
    for name in FEATURE_HISTORY:
        columns = HISTORY_COLUMNS[name]
        typed = ", ".join(
            f"CAST(`{c}` AS {_SPARK_TYPE.get(HISTORY_TYPES.get(c, 'VARCHAR'), HISTORY_TYPES.get(c))}) AS `{c}`"
            for c in columns
        )
        present = (Path(directory) / name).is_dir() or (Path(directory) / f"{name}.parquet").is_file()
        if present:
            register_crm(spark, directory, {name: columns})
            spark.sql(f"SELECT {typed}, _pos FROM {name}").createOrReplaceTempView(name)
        else:
            nulls = ", ".join(
                f"CAST(NULL AS {_SPARK_TYPE.get(HISTORY_TYPES.get(c, 'VARCHAR'), HISTORY_TYPES.get(c))}) AS `{c}`"
                for c in columns
            )
            spark.sql(f"SELECT {nulls}, CAST(NULL AS BIGINT) AS _pos LIMIT 0").createOrReplaceTempView(name)
        rows[name] = spark.table(name).count()
    return rows


def deal_features(
    spark: SparkSession,
    index_view: str,
    name: str = "deal_win_features",
    spans: str | None = None,
    touches: str | None = None,
) -> DataFrame:
    """`deal_features_duckdb.create_deal_features` on Spark over views from `register_feature_crm`: KEYS, every
    DEAL_WIN_FEATURES column and the `source__<group>` / `current__<group>` audit columns, as a temp view `name`
    (cached: the audit and the caller both read it). `index_view` holds (opportunity_id, as_of) rows, e.g.
    `snapshots.deal_win_snapshots`'s view; `spans` its `<name>_spans` view to reuse instead of rebuilding."""
    if spans is None:
        spans = f"{name}_spans"
        spark.sql(to_spark(duck.stage_spans_sql())).createOrReplaceTempView(spans)
    if touches is None:
        touches = f"{name}_touches"
        frame = spark.sql(to_spark(duck.touch_counts_sql(index_view, "opportunity_id"))).cache()
        frame.createOrReplaceTempView(touches)
    result = spark.sql(to_spark(deal_features_sql(index_view, spans, touches))).cache()
    result.createOrReplaceTempView(name)
    return result


def audit_leakage(spark: SparkSession, features_view: str, features: list[str] | None = None) -> dict:
    """`deal_features_duckdb.audit_leakage` on Spark: the same query and rules; raises LeakageError naming each
    feature that read a row stamped after its as_of (or reports no source time)."""
    counts = spark.sql(to_spark(audit_counts_sql(features_view))).toPandas().iloc[0]
    return audit_from_counts(counts, features)


def feature_frame(features: DataFrame) -> pd.DataFrame:
    """KEYS + DEAL_WIN_FEATURES columns as pandas, in (as_of, opportunity_id) order, times as UTC."""
    frame = features.select(*KEYS, *DEAL_WIN_FEATURES.names).toPandas()
    frame["as_of"] = pd.to_datetime(frame["as_of"], utc=True)
    return frame.sort_values(["as_of", "opportunity_id"]).reset_index(drop=True)
