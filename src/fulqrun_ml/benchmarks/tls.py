"""What TLS costs on Triton's gRPC endpoint: per-request latency through the SDK, and the cost of a new connection.

Why this design: the only difference between the arms is `--grpc-use-ssl`. Two tritonservers serve the same
generated repository (one published deal-win version) at the same time, one plain (the baseline) and one with a
self-signed certificate (`serving/tls_selfsigned.py`); requests are sequential, so only one server works at a
time, and the arms alternate in rounds (ABAB...) so drift in the shared machine's load hits both. Per round, the
median latency of each arm; the TLS cost is the per-round difference of medians with a t-interval over rounds.
"New connection" = a fresh client's first `is_server_ready` (TCP + HTTP/2, plus the TLS handshake in the TLS arm).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir

from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.serving.tls import CA_ENV, GrpcServerTLS
from fulqrun_ml.serving.tls_selfsigned import make_pki
from fulqrun_ml.training.train import train

log = logging.getLogger(__name__)
ARMS = ("plain", "tls")


def published_version(work: Path, n_opportunities: int) -> tuple[Any, pd.DataFrame]:
    """A tiny deal-win model trained through the one train path and published; plus holdout feature rows."""
    overrides = [
        "task=deal_win",
        "model=mlp",
        "logger=none",
        "task.compare_lightgbm=null",
        f"data.source.n_opportunities={n_opportunities}",
        f"data.source.n_companies={max(100, n_opportunities // 7)}",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={work}",
        f"paths.output_dir={work / 'run'}",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        record = train(compose("train", overrides=overrides))
    version, _ = export_run(Path(record["run_dir"]), work / "models", "deal_win")
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    rows = read_snapshot(Path(record["run_dir"]) / "holdout.parquet")[spec.spec.names]
    return version, rows


@contextlib.contextmanager
def trust_root(ca: Path | None) -> Iterator[None]:
    """The SDK takes its gRPC trust root from the environment when a client is made: set it for the TLS arm's
    clients only (a plain client with a root would try TLS against the plain server)."""
    before = os.environ.pop(CA_ENV, None)
    if ca is not None:
        os.environ[CA_ENV] = str(ca)
    try:
        yield
    finally:
        os.environ.pop(CA_ENV, None)
        if before is not None:
            os.environ[CA_ENV] = before


def client_for(url: str, ca: Path | None) -> TritonPredictionClient:
    with trust_root(ca):
        return TritonPredictionClient(url, "deal_win", protocol="grpc")


def timed_requests(client: TritonPredictionClient, rows: pd.DataFrame, n: int, batch: int) -> list[float]:
    """Milliseconds of `n` sequential predictions of `batch` rows each."""
    out = []
    for i in range(n):
        chunk = rows.iloc[[(i * batch + j) % len(rows) for j in range(batch)]]
        start = time.perf_counter()
        client.predict(chunk)
        out.append((time.perf_counter() - start) * 1e3)
    return out


def connect_ms(url: str, ca: Path | None) -> float:
    start = time.perf_counter()
    with client_for(url, ca) as client:
        if not client.is_ready():
            raise RuntimeError(f"Triton at {url} is not ready")
    return (time.perf_counter() - start) * 1e3


def measure(urls: dict[str, str], ca: Path, rows: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    roots = {"plain": None, "tls": ca}
    clients = {arm: client_for(urls[arm], roots[arm]) for arm in ARMS}
    samples: dict[str, dict[int, list[list[float]]]] = {arm: {b: [] for b in args.batches} for arm in ARMS}
    connects: dict[str, list[float]] = {arm: [] for arm in ARMS}
    try:
        for arm in ARMS:  # warm-up: sessions, interfaces, the first TLS handshake
            timed_requests(clients[arm], rows, 20, 1)
        for round_ in range(args.rounds):
            order = ARMS if round_ % 2 == 0 else ARMS[::-1]
            for arm in order:
                for batch in args.batches:
                    samples[arm][batch].append(timed_requests(clients[arm], rows, args.requests, batch))
                connects[arm] += [connect_ms(urls[arm], roots[arm]) for _ in range(args.connects)]
    finally:
        for client in clients.values():
            client.close()
    result: dict[str, Any] = {"latency_ms": {}, "connect_ms": {}}
    for batch in args.batches:
        per_arm = {
            arm: {
                "p50": float(np.percentile(np.concatenate(samples[arm][batch]), 50)),
                "p99": float(np.percentile(np.concatenate(samples[arm][batch]), 99)),
                "round_medians": [float(np.median(r)) for r in samples[arm][batch]],
            }
            for arm in ARMS
        }
        diffs = [t - p for t, p in zip(per_arm["tls"]["round_medians"], per_arm["plain"]["round_medians"], strict=True)]
        result["latency_ms"][f"batch_{batch}"] = {**per_arm, "tls_minus_plain_p50": t_interval(diffs)}
    for arm in ARMS:
        result["connect_ms"][arm] = {
            "p50": float(np.median(connects[arm])),
            "p90": float(np.percentile(connects[arm], 90)),
            "n": len(connects[arm]),
        }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200, help="per arm, batch size and round")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--connects", type=int, default=10, help="new connections per arm and round")
    parser.add_argument("--n-opportunities", type=int, default=1500)
    parser.add_argument("--work", type=Path, default=Path("/tmp/fulqrun-bench-tls"))
    parser.add_argument("--output", type=Path, default=Path("reports/bench_tls.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    version, rows = published_version(args.work, args.n_opportunities)
    repo = args.work / "repo"
    TritonRepositoryBuilder(repo).add(version, config_for_version(version))
    pki = make_pki(args.work / "pki")
    with (
        TritonServer(repo, explicit_models=["deal_win"]) as plain,
        TritonServer(repo, explicit_models=["deal_win"], tls=GrpcServerTLS(pki.cert, pki.key)) as secure,
    ):
        result = measure({"plain": plain.grpc_url, "tls": secure.grpc_url}, pki.ca, rows, args)
    report = {
        "benchmark": "tls",
        "question": "What does TLS add to Triton gRPC latency through the SDK (sequential requests, one client)?",
        "baseline": "plain gRPC to an identical tritonserver serving the same repository, measured in the same run",
        "settings": {k: str(v) for k, v in vars(args).items()},
        "machine": machine_info(),
        **result,
    }
    atomic_write_text(args.output, json.dumps(report, indent=2))
    print(json.dumps({k: report[k] for k in ("latency_ms", "connect_ms")}, indent=1))
    return report


__all__ = ["main", "measure"]
