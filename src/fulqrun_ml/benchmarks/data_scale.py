"""Data-at-scale benchmark: every task's snapshots + the deal-win features from a 1M-deal / ~20M-touch CRM.

    .venv/bin/python scripts/bench_data.py --opportunities 1000000
    .venv/bin/python scripts/bench_data.py --opportunities 20000 --baseline-opportunities 5000 --out /tmp/b.json

1. Generates the CRM with the sharded simulator (`data/simulator_scale.py`, 50k deals per shard/organization,
   `--workers` processes) into `--cache-dir` (default /tmp/fulqrun_data_cache, outside the repository),
   reusing an earlier directory made with the same arguments; the generation time is kept with it.
2. Builds everything with DuckDB (`features/crm_scale_build.py`: deal-win snapshots + features + leakage
   audit, lead conversion, accounts, revenue series at 3 levels x 2 frequencies, activity sequences) under
   `--memory-limit`, spilling to a temp directory.
3. Baseline in the same run, at `--baseline-opportunities`: the pandas builders (the definitions:
   `snapshots.py`, `task_snapshots.py`, `compute_deal_features`) against the DuckDB build on the same data,
   with the largest feature difference between the two.

4. With `--spark` (on by default), Spark local[--threads] next to DuckDB on the scale CRM: the deal-win snapshot
   from the same SQL text, both engines in the same run (`benchmarks.spark_scale.run`, the measurement of
   bench_spark), with their row and label agreement. `--only-spark` measures just that section and replaces it
   in an existing report, leaving the other (earlier) measurements as they were.

Each measured step runs in its own child process (`python -m fulqrun_ml.benchmarks.data_scale --worker ...`),
so its peak RSS (`ru_maxrss`, plus a psutil sampler summing the process and its children) is its own. Writes
`reports/bench_data.json`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_text

GENERATION_RECORD = "bench_generation.json"
# What a child process runs (`python -m`); spelled out, since this module's __name__ is "__main__" under -m.
WORKER_MODULE = "fulqrun_ml.benchmarks.data_scale"


class PeakRSS:
    """Samples the RSS of this process plus its children (the sharded simulator's workers) every 0.2 s."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _rss_summary(sampler: PeakRSS) -> dict[str, float]:
    """Peak memory, and CPU seconds (user + system, this process and its finished children): on a shared
    machine wall time includes waiting for a core, CPU time does not."""
    mib = 1024.0  # ru_maxrss is in KiB on Linux
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "cpu_seconds": round(me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime, 2),
        "peak_rss_mib_self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / mib, 1),
        "peak_rss_mib_largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / mib, 1),
        "peak_rss_mib_sampled_total": round(sampler.peak / 2**20, 1),
    }


# --- workers (run in child processes) ----------------------------------------------------------------


def worker_generate(args: argparse.Namespace) -> dict[str, Any]:
    from fulqrun_ml.data.simulator_scale import write_simulated_crm

    with PeakRSS() as sampler:
        start = time.perf_counter()
        manifest = write_simulated_crm(
            args.crm_dir,
            args.n,
            seed=args.seed,
            opportunities_per_shard=args.per_shard,
            workers=args.workers,
            activity_rate=args.activity_rate,
        )
        seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 2), "workers": args.workers, "manifest": manifest, **_rss_summary(sampler)}


def worker_duckdb(args: argparse.Namespace) -> dict[str, Any]:
    from fulqrun_ml.data.crm_duckdb import DuckDBSettings
    from fulqrun_ml.features.crm_scale_build import build_crm_datasets

    settings = DuckDBSettings(memory_limit=args.memory_limit, threads=args.threads, temp_directory=args.temp_dir)
    with PeakRSS() as sampler:
        start = time.perf_counter()
        report = build_crm_datasets(args.crm_dir, args.out_dir, settings)
        seconds = time.perf_counter() - start
    return {
        "wall_seconds": round(seconds, 2),
        "duckdb": settings.as_dict(),
        **report.to_dict(),
        **_rss_summary(sampler),
    }


def worker_pandas(args: argparse.Namespace) -> dict[str, Any]:
    from fulqrun_ml.data import snapshots, task_snapshots
    from fulqrun_ml.data.simulator_scale import read_sharded_crm
    from fulqrun_ml.features.deal_features import compute_deal_features

    rows: dict[str, int] = {}
    seconds: dict[str, float] = {}

    def timed(stage: str, run: Any) -> Any:
        start = time.perf_counter()
        result = run()
        seconds[stage] = round(time.perf_counter() - start, 3)
        return result

    with PeakRSS() as sampler:
        tables = timed("load", lambda: read_sharded_crm(args.crm_dir))
        dates = snapshots.snapshot_dates(tables, 14, 60, 180)
        deal = timed("deal_win_snapshots", lambda: snapshots.deal_win_snapshots(tables, dates, 180))
        features = timed("deal_win_features", lambda: compute_deal_features(tables, deal))
        features.to_parquet(Path(args.out_dir) / "deal_win_features_pandas.parquet", index=False)
        rows["deal_win"] = len(features)
        lead_dates = snapshots.snapshot_dates(tables, 14, 60, 60)
        rows["lead_conversion"] = len(
            timed("lead_conversion", lambda: task_snapshots.lead_conversion_snapshots(tables, lead_dates, 60))
        )
        account_dates = snapshots.snapshot_dates(tables, 14, 60, 90)
        rows["account"] = len(timed("account", lambda: task_snapshots.account_snapshots(tables, account_dates, 90)))

        def revenue() -> None:
            for level in ("organization", "region", "rep"):
                for freq in ("W", "M"):
                    rows[f"revenue_{level}_{freq}"] = len(task_snapshots.revenue_series(tables, freq=freq, by=level))

        timed("revenue_series", revenue)
        sequences = timed("activity_sequences", lambda: task_snapshots.activity_sequences(tables, deal, max_len=32))
        rows["activity_sequences"] = len(sequences["length"])
    return {
        "wall_seconds": round(sum(seconds.values()), 2),
        "seconds": seconds,
        "rows_out": rows,
        **_rss_summary(sampler),
    }


def worker_spark(args: argparse.Namespace) -> dict[str, Any]:
    from fulqrun_ml.benchmarks.spark_scale import run

    with PeakRSS() as sampler:
        result = run(Path(args.crm_dir), args.threads, args.memory_limit, Path(args.temp_dir))
    # The JVM is a child of this process: the sampled total includes it.
    return {**result, "peak_rss_mib_sampled_total": round(sampler.peak / 2**20, 1)}


WORKERS = {"generate": worker_generate, "duckdb": worker_duckdb, "pandas": worker_pandas, "spark": worker_spark}


def run_worker(kind: str, **options: Any) -> dict[str, Any]:
    """Run one measured step in a fresh Python process and return the JSON it prints last."""
    command = [sys.executable, "-m", WORKER_MODULE, "--worker", kind]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    print(f"[bench_data] {kind}: {' '.join(command[4:])}", flush=True)
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the benchmark ------------------------------------------------------------------------------------


def ensure_crm(cache: Path, n: int, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The cached CRM for these arguments, generated (and timed) if it is not there yet."""
    from fulqrun_ml.data.simulator_scale import MANIFEST

    directory = cache / f"crm_{n}_seed{args.seed}_rate{args.activity_rate}_shard{args.per_shard}"
    record = directory / GENERATION_RECORD
    if (directory / MANIFEST).is_file() and record.is_file():
        generation = json.loads(record.read_text())
        return directory, {**generation, "cached": True}
    generation = run_worker(
        "generate",
        crm_dir=directory,
        n=n,
        seed=args.seed,
        per_shard=args.per_shard,
        workers=args.workers,
        activity_rate=args.activity_rate,
    )
    record.write_text(json.dumps(generation, indent=2))
    return directory, {**generation, "cached": False}


def feature_parity(pandas_file: Path, duckdb_file: Path) -> dict[str, Any]:
    """Largest absolute difference per numeric feature and mismatches per categorical one, pandas vs DuckDB."""
    from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, KEYS

    keys = KEYS
    a = pd.read_parquet(pandas_file).sort_values(keys).reset_index(drop=True)
    b = pd.read_parquet(duckdb_file).sort_values(keys).reset_index(drop=True)
    same_rows = len(a) == len(b) and (a[keys].astype(str).to_numpy() == b[keys].astype(str).to_numpy()).all()
    numeric = {
        f.name: float(np.nanmax(np.abs(a[f.name].to_numpy(float) - b[f.name].to_numpy(float)), initial=0.0))
        for f in DEAL_WIN_FEATURES.numeric
    }
    categorical = {
        f.name: int((a[f.name].astype(str) != b[f.name].astype(str)).sum()) for f in DEAL_WIN_FEATURES.categorical
    }
    return {
        "same_rows": bool(same_rows),
        "max_abs_diff": max(numeric.values()),
        "numeric_max_abs_diff": numeric,
        "categorical_mismatches": categorical,
    }


def spark_section(crm_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Spark next to DuckDB on the scale CRM's deal-win snapshot, both in one child process, same run."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as work:
        result = run_worker(
            "spark", crm_dir=crm_dir, temp_dir=work, memory_limit=args.memory_limit, threads=args.threads
        )
    manifest = json.loads((Path(crm_dir) / "crm_export.json").read_text())
    return {
        "started_at": started,
        "crm_dir": str(crm_dir),
        "crm_spec": manifest.get("spec"),
        "crm_rows": manifest.get("rows"),
        "what": "deal-win snapshot from the same SQL text (spark/dialect.py); Spark's time includes its Parquet write",
        "baseline": "DuckDB deal_win_snapshots on the same CRM in the same run",
        **result,
        "load_average_after": [round(x, 2) for x in psutil.getloadavg()],
    }


def main(argv: list[str] | None = None) -> None:
    """Measure and write the report; with `--worker`, run one measured step and print its JSON (child side)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opportunities", type=int, default=1_000_000)
    parser.add_argument("--baseline-opportunities", type=int, default=50_000)
    parser.add_argument(
        "--activity-rate", type=float, default=1.4, help="touch-rate scale (~20 touches per deal at 1.4)"
    )
    parser.add_argument("--per-shard", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2, help="simulator processes")
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "fulqrun_data_cache")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "reports" / "bench_data.json")
    parser.add_argument("--note", default="", help="conditions worth knowing, e.g. who else used the machine")
    parser.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True, help="the Spark section")
    parser.add_argument(
        "--only-spark", action="store_true", help="measure only the Spark section into --out (on --crm-dir if given)"
    )
    # internal: one measured step in a child process
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--crm-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", help=argparse.SUPPRESS)
    parser.add_argument("--temp-dir", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args)))
        return

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = [round(x, 2) for x in psutil.getloadavg()]
    duckdb_options = {"memory_limit": args.memory_limit, "threads": args.threads}

    if args.only_spark:  # --crm-dir: an existing CRM directory instead of this benchmark's cached one
        crm_dir = Path(args.crm_dir) if args.crm_dir else ensure_crm(args.cache_dir, args.opportunities, args)[0]
        report = json.loads(args.out.read_text())
        report["spark"] = spark_section(crm_dir, args)
        atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["spark"], indent=2))
        return
    crm_dir, generation = ensure_crm(args.cache_dir, args.opportunities, args)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as work:
        scale = run_worker(
            "duckdb", crm_dir=crm_dir, out_dir=Path(work) / "out", temp_dir=Path(work) / "spill", **duckdb_options
        )
    base_dir, base_generation = ensure_crm(args.cache_dir, args.baseline_opportunities, args)
    with tempfile.TemporaryDirectory(dir=args.cache_dir) as work:
        base_duckdb = run_worker(
            "duckdb", crm_dir=base_dir, out_dir=Path(work) / "duckdb", temp_dir=Path(work) / "spill", **duckdb_options
        )
        Path(work, "pandas").mkdir()
        base_pandas = run_worker("pandas", crm_dir=base_dir, out_dir=Path(work) / "pandas")
        parity = feature_parity(
            Path(work) / "pandas" / "deal_win_features_pandas.parquet", Path(work) / "duckdb" / "deal_win.parquet"
        )

    rows_in = generation["manifest"]["rows"]
    report = {
        "benchmark": "data at scale: all snapshots + deal-win features (DuckDB) from a sharded simulated CRM",
        "started_at": started,
        "note": args.note,
        "scale": {
            "opportunities": args.opportunities,
            "rows_in": rows_in,
            "generation": {k: generation[k] for k in generation if k != "manifest"}
            | {"shards": generation["manifest"]["shards"]},
            "build": scale,
            "under_5_minutes": scale["wall_seconds"] < 300,
        },
        "baseline": {
            "opportunities": args.baseline_opportunities,
            "rows_in": base_generation["manifest"]["rows"],
            "pandas": base_pandas,
            "duckdb": base_duckdb,
            "speedup": round(base_pandas["wall_seconds"] / base_duckdb["wall_seconds"], 1),
            "same_rows_out": base_pandas["rows_out"] == base_duckdb["rows_out"],
            "deal_win_feature_parity": parity,
        },
        "settings": {
            "activity_rate": args.activity_rate,
            "opportunities_per_shard": args.per_shard,
            "seed": args.seed,
            "duckdb_memory_limit": args.memory_limit,
            "duckdb_threads": args.threads,
            "cache_dir": str(args.cache_dir),
        },
        "machine": machine_info(load_average_before=load_before),
    }
    if args.spark:
        report["spark"] = spark_section(crm_dir, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({"scale_seconds": scale["wall_seconds"], "speedup": report["baseline"]["speedup"]}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
