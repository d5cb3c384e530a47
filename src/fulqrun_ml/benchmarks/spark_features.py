"""Spark next to DuckDB on the full deal-win feature build (snapshot, touch counts, features with their ASOF
lookups, point-in-time audit), same SQL text, same CRM, same run; adds a `spark_features` section to
reports/bench_data.json (the rest of that report is left as it was).

    .venv/bin/python scripts/bench_spark.py features --opportunities 20000

Why a separate, small-scale section: the 1M Spark snapshot alone took 505 s on the shared machine; the feature
build is several times the work. The section records the scale it ran at. Both engines' outputs are compared
row for row (sorted by as_of, opportunity_id): the exactness the unit test proves on a small CRM, here on the
benchmark's. DuckDB's time ends with its TEMP table materialised, Spark's with its Parquet write (Spark is lazy,
and a count alone could skip columns); neither includes generating the CRM.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from fulqrun_ml.benchmarks.spark_scale import REPO_ROOT, _crm
from fulqrun_ml.data import snapshots_duckdb as duck
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, KEYS
from fulqrun_ml.features.deal_features_duckdb import audit_leakage, create_deal_features
from fulqrun_ml.machine import machine_info
from fulqrun_ml.registry.locking import atomic_write_text

EVERY, WARMUP, HORIZON = 14, 60, 180


def _duckdb(directory: Path, threads: int, memory_limit: str, spill: Path) -> tuple[list, float, dict, pd.DataFrame]:
    settings = DuckDBSettings(memory_limit=memory_limit, threads=threads, temp_directory=str(spill / "duckdb"))
    with open_crm(directory, settings) as db:
        dates = duck.snapshot_dates(db, EVERY, WARMUP, HORIZON)
        start = time.perf_counter()
        name = create_deal_features(db, duck.deal_win_snapshots(db, dates, HORIZON))
        audit = audit_leakage(db, name)
        seconds = time.perf_counter() - start
        frame = db.sql(f"SELECT * FROM {name}").df()
    return dates, seconds, audit, frame


def _spark(directory: Path, dates: list, threads: int, spill: Path) -> tuple[float, dict, pd.DataFrame]:
    from fulqrun_ml.spark import features as spark_features
    from fulqrun_ml.spark.session import local_session
    from fulqrun_ml.spark.snapshots import deal_win_snapshots

    spark = local_session(f"local[{threads}]", shuffle_partitions=threads * 4)
    try:
        start = time.perf_counter()
        spark_features.register_feature_crm(spark, directory)
        deal_win_snapshots(spark, dates, HORIZON)
        built = spark_features.deal_features(spark, "deal_win_snapshots", spans="deal_win_snapshots_spans")
        built.write.mode("overwrite").parquet(str(spill / "spark_features"))
        audit = spark_features.audit_leakage(spark, "deal_win_features")
        seconds = time.perf_counter() - start
    finally:
        spark.stop()
    return seconds, audit, pd.read_parquet(spill / "spark_features")


def compare(expected: pd.DataFrame, got: pd.DataFrame) -> dict[str, Any]:
    """Row-for-row agreement of two feature tables: same keys, and per column the values that differ (numeric:
    also the largest absolute difference; NaN equals NaN)."""

    def ordered(frame: pd.DataFrame) -> pd.DataFrame:
        times = [c for c in frame.columns if c == "as_of" or c.startswith("source__")]
        frame = frame.assign(**{c: pd.to_datetime(frame[c], utc=True).astype("datetime64[us, UTC]") for c in times})
        return frame.sort_values(["as_of", "opportunity_id"]).reset_index(drop=True)

    expected, got = ordered(expected), ordered(got[expected.columns])
    same_keys = len(expected) == len(got) and bool((expected[KEYS] == got[KEYS]).all().all())
    if not same_keys:
        return {"same_keys": False, "exact": False}
    mismatches, max_abs = {}, {}
    for column in expected.columns.drop(KEYS):
        a, b = expected[column], got[column]
        if column in DEAL_WIN_FEATURES.names and pd.api.types.is_numeric_dtype(a):
            x, y = a.to_numpy(float), b.to_numpy(float)
            differ = ~((x == y) | (np.isnan(x) & np.isnan(y)))
            max_abs[column] = float(np.nanmax(np.abs(x - y))) if differ.any() else 0.0
        else:
            differ = ~((a == b) | (a.isna() & b.isna())).to_numpy()
        if differ.any():
            mismatches[column] = int(differ.sum())
    return {"same_keys": True, "exact": not mismatches, "mismatched_cells": mismatches, "max_abs_diff": max_abs}


def measure(directory: Path, threads: int, memory_limit: str, spill: Path) -> dict[str, Any]:
    """Both engines on one CRM in this process, DuckDB first; their timings, audits and agreement."""
    dates, duck_seconds, duck_audit, expected = _duckdb(directory, threads, memory_limit, spill)
    spark_seconds, spark_audit, got = _spark(directory, dates, threads, spill)
    return {
        "as_of_dates": len(dates),
        "rows": len(expected),
        "duckdb": {"seconds": round(duck_seconds, 2), "violations": duck_audit["violations"]},
        "spark": {"seconds": round(spark_seconds, 2), "violations": spark_audit["violations"]},
        "agreement": compare(expected, got),
        "spark_over_duckdb": round(spark_seconds / max(duck_seconds, 1e-9), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--per-shard", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-limit", default="2GB")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "fulqrun_data_cache")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench_data.json")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    if not args.out.is_file():
        parser.error(f"--out {args.out} does not exist: this adds a section to an existing bench_data report")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = [round(x, 2) for x in psutil.getloadavg()]
    directory, generation = _crm(args.cache_dir, args.opportunities, args.seed, args.per_shard, args.workers)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as spill:
        result = measure(directory, args.threads, args.memory_limit, Path(spill))
    manifest = json.loads((directory / "crm_export.json").read_text())
    section = {
        "started_at": started,
        "note": args.note,
        "what": "full deal-win feature build (snapshot, touch counts, features with ASOF lookups, leakage audit) "
        "from the same SQL text on both engines; Spark's time includes its Parquet write",
        "baseline": "DuckDB create_deal_features + audit_leakage on the same CRM in the same run",
        "opportunities": args.opportunities,
        "crm_rows": manifest.get("rows"),
        "generation_seconds": generation,
        "threads": args.threads,
        **result,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in psutil.getloadavg()],
        "machine": machine_info(),
    }
    report = json.loads(args.out.read_text())
    report["spark_features"] = section
    atomic_write_text(args.out, json.dumps(report, indent=2, default=str) + "\n")
    print(json.dumps({k: section[k] for k in ("rows", "duckdb", "spark", "agreement", "spark_over_duckdb")}))


if __name__ == "__main__":
    main()
