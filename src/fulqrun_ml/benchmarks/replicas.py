"""Triton replicas behind nginx: what the proxy costs, what a second replica buys, and what a SIGKILL costs.

Why this design: one replica set of 2 (serving/replicas.py) serves a tiny published deal-win model; the arms
reuse the same processes so they differ only in the path a request takes:
  direct      wrk -> replica 0's own HTTP port (the baseline: no proxy)
  nginx x1    wrk -> nginx -> replica 0 (replica 1 marked down in nginx.conf)
  nginx x2    wrk -> nginx -> replicas 0 and 1
Arms are interleaved in rounds (ABCABC...) so drift in the shared machine's load hits all of them; every row keeps
its own wrk result. On a 2-core machine two replicas share the same two cores, so "x2" measures the proxying and
balancing overhead, not added capacity; on a host with a core (or GPU) per replica it is the scaling row.

Failover: Python SDK clients (threads, one record per call, as an application calls) load nginx while replica 0's
process group is SIGKILLed; the readiness loop restarts it. Requests failed are counted with the SDK's retry off
(1 attempt: what nginx alone hides) and on (the default policy), over several kills each, next to the same
clients' count in a window without a kill (the baseline: 0 expected).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.benchmarks.serving_payloads import layout_payloads
from fulqrun_ml.benchmarks.tls import published_version
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import RetryPolicy
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.replicas import ReplicaSet
from fulqrun_ml.serving.server import free_port

log = logging.getLogger(__name__)


def throughput_rounds(replicas: ReplicaSet, bodies: list[bytes], args: argparse.Namespace) -> list[dict[str, Any]]:
    wrk = loadgen.ensure_wrk()
    first, second = replicas.replicas
    path = "/v2/models/deal_win/infer"
    rows = []
    for round_ in range(args.rounds):
        for arm in ("direct", "nginx x1", "nginx x2"):
            if replicas.set_rotation(second, arm == "nginx x2"):
                time.sleep(args.settle_seconds)  # a reload closes idle keep-alive connections; wrk never retries
            url = f"http://{first.server.http_url if arm == 'direct' else replicas.http_url}{path}"
            result = loadgen.run_wrk(url, bodies, args.concurrency, 1, args.seconds, timeout_s=10, wrk=wrk)
            rows.append({"round": round_, "arm": arm, **result.to_dict()})
            log.info("%s round %d: %.0f req/s p99 %.1f ms", arm, round_, result.rps, result.p99_ms or -1)
    replicas.set_rotation(second, True)
    return rows


def sdk_load(url: str, rows: pd.DataFrame, retry: RetryPolicy, threads: int, stop: threading.Event) -> list[int]:
    """[answered, failed] of `threads` SDK clients calling until `stop`."""
    counts = [0, 0]
    lock = threading.Lock()

    def run(seed: int) -> None:
        with TritonPredictionClient(url, "deal_win", retry=retry) as client:
            i = seed
            while not stop.is_set():
                try:
                    client.predict_detailed(rows.iloc[[i % len(rows)]])
                    ok = 0
                except Exception:  # the count is the measurement
                    ok = 1
                with lock:
                    counts[ok] += 1
                i += 1

    workers = [threading.Thread(target=run, args=(s,)) for s in range(threads)]
    for worker in workers:
        worker.start()
    stop.wait()
    for worker in workers:
        worker.join(timeout=60)
    return counts


def failover(replicas: ReplicaSet, rows: pd.DataFrame, retry: RetryPolicy, kill: bool, args: argparse.Namespace):
    victim = replicas.replicas[0]
    restarts = replicas.restarts
    stop = threading.Event()
    result: list[int] = []
    loader = threading.Thread(
        target=lambda: result.extend(sdk_load(replicas.http_url, rows, retry, args.threads, stop))
    )
    loader.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    back_s = None
    if kill:
        os.killpg(os.getpgid(victim.server.process.pid), signal.SIGKILL)
        while not (replicas.restarts > restarts and victim.in_rotation) and time.monotonic() - killed_at < 60:
            time.sleep(0.05)
        back_s = round(time.monotonic() - killed_at, 2)
    time.sleep(max(0.0, args.failover_seconds - (time.monotonic() - killed_at)))
    stop.set()
    loader.join()
    return {"answered": result[0], "failed": result[1], "replica_restarted_and_ready_s": back_s}


def wrk_failover(replicas: ReplicaSet, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """wrk (no client retry at all) through nginx at `--concurrency` while replica 0 is SIGKILLed 1 s in."""
    victim = replicas.replicas[0]
    restarts = replicas.restarts

    def kill() -> None:
        time.sleep(1.0)
        os.killpg(os.getpgid(victim.server.process.pid), signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    url = f"http://{replicas.http_url}/v2/models/deal_win/infer"
    result = loadgen.run_wrk(url, bodies, args.concurrency, 1, args.failover_seconds, timeout_s=10)
    killer.join()
    deadline = time.monotonic() + 60
    while not (replicas.restarts > restarts and victim.in_rotation) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(args.settle_seconds)
    return result.to_dict()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seconds", type=float, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs per SDK-retry arm")
    p.add_argument("--threads", type=int, default=4, help="SDK client threads during failover")
    p.add_argument("--failover-seconds", type=float, default=6)
    p.add_argument("--settle-seconds", type=float, default=1.5, help="wait after an nginx reload before wrk")
    p.add_argument("--n-opportunities", type=int, default=1500)
    p.add_argument("--out", default="reports/bench_replicas.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serving = compose_config("serve", ["serving.prediction_log.enabled=false"]).serving
    with tempfile.TemporaryDirectory(prefix="fulqrun-bench-replicas-") as tmp:
        version, holdout = published_version(Path(tmp), args.n_opportunities)
        inputs, requests = layout_payloads(version, holdout.head(256), 1, "packed")["model"]
        bodies = [loadgen.kserve_json_body(c, inputs) for c in requests]
        configs = lambda v: cpu_serving_configs(v, serving)[:1]  # noqa: E731 - the fast endpoint only
        with ReplicaSet(version, configs, Path(tmp) / "run", 2, free_port(), free_port(), probe_interval_s=0.2) as rs:
            throughput = throughput_rounds(rs, bodies, args)
            no_kill = failover(rs, holdout, RetryPolicy(attempts=1), False, args)
            kills = {
                arm: [failover(rs, holdout, policy, True, args) for _ in range(args.kills)]
                for arm, policy in (("sdk_retry_off", RetryPolicy(attempts=1)), ("sdk_retry_on", RetryPolicy()))
            }
            wrk_kills = [wrk_failover(rs, bodies, args) for _ in range(args.kills)]
    summary = {}
    direct = {r["round"]: r for r in throughput if r["arm"] == "direct"}
    for arm in ("direct", "nginx x1", "nginx x2"):
        mine = [r for r in throughput if r["arm"] == arm]
        ratios = sorted(r["rps"] / direct[r["round"]]["rps"] for r in mine if direct[r["round"]]["rps"])
        summary[arm] = {
            "rps_median": float(np.median([r["rps"] for r in mine])),
            "p99_ms_median": float(np.median([r["p99_ms"] or np.nan for r in mine])),
            "rps_vs_direct_same_round": [round(x, 3) for x in ratios],
            "errors": sum(r["errors"] for r in mine),
        }
    report = {
        "benchmark": "replicas",
        "machine": machine_info(),
        "settings": vars(args),
        "throughput_rounds": throughput,
        "throughput_summary": summary,
        "failover": {"baseline_no_kill": no_kill, **kills, "wrk_no_client_retry": wrk_kills},
        "failed_requests_per_kill": {
            **{arm: [k["failed"] for k in runs] for arm, runs in kills.items()},
            "wrk_no_client_retry": [k["errors"] for k in wrk_kills],
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    print(f"wrote {out}: {summary}; failed per kill {report['failed_requests_per_kill']}")
    return report
