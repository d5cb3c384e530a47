"""What sealing run snapshots at rest costs: write and read time of `data/snapshot_files.py` with
`FULQRUN_ENCRYPT_AT_REST=1` against the same helper writing plain Parquet (the baseline), same frame, same run.

Why this design: the only difference between the arms is the setting, so the ratio is the price of AES-GCM plus
the in-memory Parquet buffer. The frame is a simulated CRM's activities table (ids, timestamps, free-text
subjects: the shape of a holdout's rows, and enough of them to time). The arms alternate in rounds with their
order flipped each round, so the shared machine's load drift hits both; per round the median of `repeats`, and
the sealed/plain ratio gets a t-interval over rounds. Every round is also checked: the frame reads back equal,
and which files in the arm's directory are Parquet (magic `PAR1` at either end): the plain arm's, never the sealed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.crypto.envelope import AT_REST_ENV
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, new_key
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.snapshot_files import read_snapshot, stored_snapshot, write_snapshot
from fulqrun_ml.machine import machine_info
from fulqrun_ml.registry.locking import atomic_write_text

ARMS = ("plain", "sealed")


def _timed(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _is_parquet(data: bytes) -> bool:
    """A Parquet file starts and ends with the magic `PAR1`. (Searching anywhere would flag, by chance, about one
    1.8 MB ciphertext in 2,400: AES-GCM output is uniformly random.)"""
    return data[:4] == b"PAR1" or data[-4:] == b"PAR1"


def _arm(arm: str, frame: pd.DataFrame, directory: Path, repeats: int) -> dict[str, Any]:
    os.environ[AT_REST_ENV] = "1" if arm == "sealed" else "0"
    path = directory / arm / "holdout.parquet"
    write = _timed(lambda: write_snapshot(frame, path), repeats)
    read = _timed(lambda: read_snapshot(path), repeats)
    stored = stored_snapshot(path)
    assert stored is not None
    plaintext = [p.name for p in (directory / arm).iterdir() if _is_parquet(p.read_bytes())]
    back_equal = bool(read_snapshot(path).equals(frame))
    return {
        "write_s": write,
        "read_s": read,
        "bytes": stored.stat().st_size,
        "file": stored.name,
        "files_with_parquet_magic": plaintext,
        "reads_back_equal": back_equal,
    }


def run(n_opportunities: int, rounds: int, repeats: int, seed: int) -> dict[str, Any]:
    crm = simulate_crm(n_opportunities=n_opportunities, n_companies=max(50, n_opportunities // 5), seed=seed)
    rows = crm.tables.activities.reset_index(drop=True)
    saved = {k: os.environ.get(k) for k in (AT_REST_ENV, ENCRYPTION_KEYS_ENV)}
    os.environ[ENCRYPTION_KEYS_ENV] = f"bench:{new_key()}"  # a throwaway key, never written anywhere
    per_round: list[dict[str, dict[str, Any]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="fulqrun_bench_seal_") as tmp:
            for index in range(rounds):
                order = ARMS if index % 2 == 0 else ARMS[::-1]
                per_round.append({arm: _arm(arm, rows, Path(tmp) / f"r{index}", repeats) for arm in order})
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    summary: dict[str, Any] = {}
    for op in ("write_s", "read_s"):
        plain = [r["plain"][op] for r in per_round]
        sealed = [r["sealed"][op] for r in per_round]
        summary[op] = {
            "plain_median": float(np.median(plain)),
            "sealed_median": float(np.median(sealed)),
            "sealed_over_plain": t_interval([s / p for s, p in zip(sealed, plain, strict=True)]),
            "sealed_minus_plain_s": t_interval([s - p for s, p in zip(sealed, plain, strict=True)]),
        }
    last = per_round[-1]
    return {
        "what": "run-snapshot write/read, sealed at rest (AES-256-GCM) vs plain Parquet, same helper and frame",
        "frame": {
            "table": "activities",
            "rows": len(rows),
            "columns": len(rows.columns),
            "n_opportunities": n_opportunities,
            "seed": seed,
        },
        "rounds": rounds,
        "repeats_per_round": repeats,
        "summary": summary,
        "bytes": {"plain": last["plain"]["bytes"], "sealed": last["sealed"]["bytes"]},
        "checks": {
            "sealed_rounds_with_parquet_magic": sum(bool(r["sealed"]["files_with_parquet_magic"]) for r in per_round),
            "plain_rounds_with_parquet_magic": sum(bool(r["plain"]["files_with_parquet_magic"]) for r in per_round),
            "sealed_rounds_reading_back_equal": sum(r["sealed"]["reads_back_equal"] for r in per_round),
        },
        "per_round": per_round,
        "machine": machine_info(note="shared 2-core machine, other engineers' jobs running: absolute times are noisy"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-opportunities", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="reports/bench_snapshot_encryption.json")
    args = parser.parse_args(argv)
    report = run(args.n_opportunities, args.rounds, args.repeats, args.seed)
    atomic_write_text(Path(args.out), json.dumps(report, indent=2, default=str))
    write, read = report["summary"]["write_s"], report["summary"]["read_s"]
    print(
        f"{report['frame']['rows']} rows: write plain {write['plain_median']:.3f}s"
        f" sealed {write['sealed_median']:.3f}s; read plain {read['plain_median']:.3f}s"
        f" sealed {read['sealed_median']:.3f}s; checks {report['checks']}"
    )
