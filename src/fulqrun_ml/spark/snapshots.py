"""The deal-win snapshot on Spark: the DuckDB builder's SQL text (`data/snapshots_duckdb.py`) over the same CRM
Parquet directory, so a CRM beyond one machine gets the same rows (tests/unit/test_spark_parity.py: exact).

The CRM views mirror `crm_duckdb.open_crm`: the contract's columns plus `_pos` (file number << 32 | row in the
file), here from Parquet's `_metadata.row_index`, so timestamp ties break in table order in both engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fulqrun_ml.data import snapshots_duckdb as duck
from fulqrun_ml.data.contract import OPTIONAL_COLUMN_DEFAULTS
from fulqrun_ml.data.crm_duckdb import _files
from fulqrun_ml.spark.dialect import to_spark

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

# The tables the deal-win snapshot reads, with the columns it needs.
SNAPSHOT_TABLES = {"stage_history": ("opportunity_id", "to_stage", "changed_at")}
# ... and the lead-conversion snapshot.
LEAD_TABLES = {"leads": ("id", "status", "created_at", "updated_at")}


def register_crm(spark: SparkSession, directory: str | Path, tables: dict | None = None) -> None:
    """Temp views named after the contract's tables over the directory's Parquet files (sharded or flat)."""
    from pyspark.sql import functions as F

    root = Path(directory)
    for name, columns in (tables or SNAPSHOT_TABLES).items():
        parts = []
        for k, file in enumerate(_files(root, name)):
            frame = spark.read.parquet(str(file))
            defaults = OPTIONAL_COLUMN_DEFAULTS.get(name, {})
            missing = [c for c in columns if c not in frame.columns and c not in defaults]
            if missing:
                raise ValueError(f"table '{name}' in {file} lacks the contract column '{missing[0]}'")
            pos = (F.lit(k).cast("bigint") * F.lit(1 << 32)) + F.col("_metadata.row_index")
            parts.append(frame.select(*[_column(frame, c, defaults) for c in columns], pos.alias("_pos")))
        if not parts:
            raise FileNotFoundError(f"table '{name}' is missing from {root}")
        union = parts[0]
        for part in parts[1:]:
            union = union.unionByName(part)
        union.createOrReplaceTempView(name)


def _column(frame: DataFrame, column: str, defaults: dict[str, str]) -> Column:
    """A contract column as `crm_duckdb` views it: ids as strings, an optional column's missing cells (or the
    whole column, in an older export) as its "not recorded" value."""
    from pyspark.sql import functions as F

    if column in defaults:
        value = F.lit(defaults[column])
        return (F.coalesce(F.col(column), value) if column in frame.columns else value).alias(column)
    return F.col(column).cast("string").alias(column) if column.endswith("_id") else F.col(column)


def _grid(spark: SparkSession, name: str, as_of_dates: list[pd.Timestamp]) -> str:
    stamps = pd.DatetimeIndex(as_of_dates).tz_convert("UTC").tz_localize(None)
    rows = [(t.to_pydatetime(),) for t in stamps]
    frame = spark.createDataFrame(rows, "as_of_naive timestamp_ntz")
    frame.selectExpr("to_utc_timestamp(as_of_naive, 'UTC')::TIMESTAMP AS as_of").createOrReplaceTempView(name)
    return name


def deal_win_snapshots(
    spark: SparkSession, as_of_dates: list[pd.Timestamp], horizon_days: int, name: str = "deal_win_snapshots"
) -> DataFrame:
    """`snapshots_duckdb.deal_win_snapshots` on Spark over views from `register_crm`; also a temp view `name`.
    The spans are cached: the range join reads them once per grid date partition."""
    twice = (
        spark.sql(
            f"SELECT opportunity_id FROM stage_history WHERE to_stage IN {duck.CLOSED} GROUP BY 1 HAVING count(*) > 1"
        )
        .limit(1)
        .collect()
    )
    if twice:
        raise ValueError(f"stage_history: opportunity {twice[0][0]} has more than one close row; one is expected")
    grid = _grid(spark, f"{name}_grid", as_of_dates)
    spans = spark.sql(to_spark(duck.stage_spans_sql())).cache()
    spans.createOrReplaceTempView(f"{name}_spans")
    result = spark.sql(to_spark(duck.deal_win_sql(grid, f"{name}_spans", horizon_days)))
    result.createOrReplaceTempView(name)
    return result


def lead_conversion_snapshots(
    spark: SparkSession,
    as_of_dates: list[pd.Timestamp],
    horizon_days: int,
    extracted_at: pd.Timestamp,
    name: str = "lead_conversion_snapshots",
) -> DataFrame:
    """`snapshots_duckdb.lead_conversion_snapshots` on Spark over views from `register_crm(..., LEAD_TABLES)`:
    the same SQL text; dates whose horizon ends after `extracted_at` are skipped, as there."""
    grid = _grid(spark, f"{name}_grid", duck.usable_dates(extracted_at, as_of_dates, horizon_days))
    result = spark.sql(to_spark(duck.lead_conversion_sql(grid, horizon_days)))
    result.createOrReplaceTempView(name)
    return result


# ... and the account (expansion/churn) snapshot.
ACCOUNT_TABLES = {**SNAPSHOT_TABLES, "opportunities": ("id", "company_id")}


def account_snapshots(
    spark: SparkSession,
    as_of_dates: list[pd.Timestamp],
    horizon_days: int,
    extracted_at: pd.Timestamp,
    name: str = "account_snapshots",
) -> DataFrame:
    """`snapshots_duckdb.account_snapshots` on Spark over views from `register_crm(..., ACCOUNT_TABLES)`: the same
    SQL text, its ASOF join ("the next win after as_of") translated by `spark/asof.py`."""
    grid = _grid(spark, f"{name}_grid", duck.usable_dates(extracted_at, as_of_dates, horizon_days))
    result = spark.sql(to_spark(duck.account_snapshots_sql(grid, horizon_days)))
    result.createOrReplaceTempView(name)
    return result
