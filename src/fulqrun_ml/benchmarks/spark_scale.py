"""Spark next to DuckDB on the deal-win snapshot at scale (issue 20 item 5): same SQL text, same CRM, same run.

    .venv/bin/python scripts/bench_spark.py --opportunities 1000000

Generates (or reuses, in --cache-dir) the sharded simulated CRM, then builds the deal-win snapshot with DuckDB
(the baseline: `snapshots_duckdb.deal_win_snapshots`) and with Spark local[--threads] (`spark.snapshots`), and
checks the two agree on row count and label sum (exact row equality is the unit test's job:
tests/unit/test_spark_parity.py). Spark's
time includes writing its result to Parquet (it is lazy: a count alone could skip columns); DuckDB's includes
materialising its TEMP table. Writes reports/bench_spark.json with machine info.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.data import snapshots_duckdb as duck
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.data.simulator_scale import write_simulated_crm
from fulqrun_ml.machine import machine_info
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.spark.session import local_session
from fulqrun_ml.spark.snapshots import deal_win_snapshots, register_crm

REPO_ROOT = Path(__file__).resolve().parents[3]
EVERY, WARMUP, HORIZON = 14, 60, 180


def _crm(cache: Path, n: int, seed: int, per_shard: int, workers: int) -> tuple[Path, float | None]:
    directory = cache / f"crm_n{n}_s{seed}_p{per_shard}"
    if (directory / "crm_export.json").is_file():
        return directory, None
    start = time.perf_counter()
    write_simulated_crm(directory, n, seed=seed, opportunities_per_shard=per_shard, workers=workers)
    return directory, round(time.perf_counter() - start, 2)


def run(directory: Path, threads: int, memory_limit: str, spill: Path) -> dict[str, Any]:
    """Both engines on one CRM; returns their timings and the agreement checks."""
    with open_crm(
        directory, DuckDBSettings(memory_limit=memory_limit, threads=threads, temp_directory=str(spill))
    ) as db:
        dates = duck.snapshot_dates(db, EVERY, WARMUP, HORIZON)
        start = time.perf_counter()
        name = duck.deal_win_snapshots(db, dates, HORIZON)
        duck_seconds = time.perf_counter() - start
        duck_check = db.sql(f"SELECT count(*), sum(label) FROM {name}").fetchone()
    spark = local_session(f"local[{threads}]", shuffle_partitions=threads * 4)
    try:
        start = time.perf_counter()
        register_crm(spark, directory)
        frame = deal_win_snapshots(spark, dates, HORIZON)
        frame.write.mode("overwrite").parquet(str(spill / "spark_deal_win"))
        spark_seconds = time.perf_counter() - start
        written = spark.read.parquet(str(spill / "spark_deal_win"))
        spark_rows, spark_labels = written.selectExpr("count(*)", "sum(label)").first()
    finally:
        spark.stop()
    return {
        "as_of_dates": len(dates),
        "duckdb": {"seconds": round(duck_seconds, 2), "rows": duck_check[0], "label_sum": float(duck_check[1])},
        "spark": {"seconds": round(spark_seconds, 2), "rows": spark_rows, "label_sum": float(spark_labels)},
        "agree": duck_check[0] == spark_rows and float(duck_check[1]) == float(spark_labels),
        "spark_over_duckdb": round(spark_seconds / max(duck_seconds, 1e-9), 2),
    }


def score_both(
    version_dir: Path, source: Path, work: Path, threads: int, key: str = "opportunity_id"
) -> dict[str, Any]:
    """Bulk scoring of one Parquet table by `scoring.bulk.score_table` (the baseline, same run) and by Spark
    local[threads] (`spark.bulk.score_table_spark`: mapInPandas + onnxruntime); rows/s of each, end to end
    (read, validate, infer, write), and the largest difference between their scores, matched by `key`."""
    import pandas as pd

    from fulqrun_ml.scoring.bulk import score_table
    from fulqrun_ml.spark.bulk import score_table_spark

    bulk = score_table(Path(version_dir), source, work / "bulk_scores.parquet", keep_columns=[key], workers=threads)
    spark = local_session(f"local[{threads}]", shuffle_partitions=threads * 4)
    try:
        start = time.perf_counter()
        spark_rows = score_table_spark(spark, version_dir, source, work / "spark_scores", keep_columns=[key])
        spark_seconds = time.perf_counter() - start
    finally:
        spark.stop()
    a = pd.read_parquet(work / "bulk_scores.parquet").sort_values(key).reset_index(drop=True)
    b = pd.read_parquet(work / "spark_scores").sort_values(key).reset_index(drop=True)
    outputs = [c for c in a.columns if c != key]
    same_ids = len(a) == len(b) and bool((a[key].to_numpy() == b[key].to_numpy()).all())
    diff = max(float((a[c].astype(float) - b[c].astype(float)).abs().max()) for c in outputs) if same_ids else None
    return {
        "rows": bulk.rows,
        "bulk": {"seconds": round(bulk.seconds, 2), "rows_per_s": round(bulk.rows_per_s)},
        "spark": {
            "seconds": round(spark_seconds, 2),
            "rows_per_s": round(spark_rows / spark_seconds),
            "rows": spark_rows,
        },
        "same_rows": same_ids,
        "max_abs_score_diff": diff,
        "spark_over_bulk_seconds": round(spark_seconds / max(bulk.seconds, 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opportunities", type=int, default=1_000_000)
    parser.add_argument("--per-shard", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "fulqrun_data_cache")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench_spark.json")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    started = datetime.now(UTC).isoformat()
    directory, generation = _crm(args.cache_dir, args.opportunities, args.seed, args.per_shard, args.workers)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as spill:
        result = run(directory, args.threads, args.memory_limit, Path(spill))
    report = {
        "benchmark": "spark_vs_duckdb_deal_win_snapshot",
        "started_at": started,
        "note": args.note,
        "opportunities": args.opportunities,
        "generation_seconds": generation,
        "baseline": "DuckDB deal_win_snapshots on the same CRM in the same run",
        **result,
        "machine": machine_info(),
    }
    atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: report[k] for k in ("duckdb", "spark", "agree", "spark_over_duckdb")}))


if __name__ == "__main__":
    main()
