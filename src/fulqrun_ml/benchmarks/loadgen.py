"""Load generators for a Triton server on loopback: `wrk` over HTTP and asyncio `tritonclient` over gRPC.

Why two clients: a Python HTTP client saturates a core long before Triton does, so HTTP load comes from
`wrk` (C, epoll, one Lua-prepared KServe-v2 JSON body per request, scripts/wrk_kserve.lua). gRPC load
comes from `tritonclient.grpc.aio` with many coroutines spread over several channels (each channel its
own TCP connection). Both report the CPU the client itself burned, because on a small machine the client
competes with the server and a benchmark that hides that misleads.

Each run is bounded in time: requests are issued until `duration_s` has passed, then the requests still in
flight finish. Throughput is answers / (first request -> last answer), so at 10,000 concurrent requests
with second-long latencies the deep queue that is drained after the deadline still counts as the work it
is (wrk does the same with its own clock). One difference: wrk stops at its deadline without waiting, so
requests still unanswered then are neither answers nor errors in its counts (a point with zero answers
is reported with null latencies, never as a clean run).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import tritonclient.grpc.aio as grpcaio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException

from fulqrun_ml.errors import ServingError
from fulqrun_ml.project import REPO_ROOT

log = logging.getLogger(__name__)
WRK_LUA = REPO_ROOT / "scripts" / "wrk_kserve.lua"
WRK_MARKER = "WRK_RESULT "
MAX_GRPC_MESSAGE = 2**31 - 1
ERROR_SAMPLES = 5


@dataclass(frozen=True)
class LoadResult:
    """One load run against one model: counts, latency percentiles and the client's own CPU use."""

    protocol: str
    concurrency: int
    rows_per_request: int
    duration_s: float  # first request -> last answer (requests are issued until the deadline, then drained)
    requests: int  # answered successfully
    errors: int  # every failure, timeouts included
    timeouts: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float  # cores used by the load client over the window (CPU seconds / wall seconds)
    client: str
    error_samples: tuple[str, ...] = field(default_factory=tuple)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def predictions_per_s(self) -> float:
        return self.rps * self.rows_per_request

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["error_samples"] = list(self.error_samples)
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):  # no answers -> no latency (JSON null, not 0)
            row[key] = None if self.requests == 0 or math.isnan(row[key]) else round(row[key], 3)
        row["rps"] = round(self.rps, 1)
        row["predictions_per_s"] = round(self.predictions_per_s, 1)
        return row


def raise_open_file_limit(wanted: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE towards `wanted` (up to the hard limit); children inherit it.

    10,000 connections need 10,000 descriptors in the client and as many in the server. Returns the
    (soft, hard) limits now in force; the caller records them and warns when they are short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ensure_wrk() -> str:
    """Path of `wrk`, installing the Debian package first when it is missing (root on Debian only)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        raise ServingError("wrk is not installed and cannot be installed here: run `apt-get install wrk` as root")
    log.info("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            raise ServingError(f"`{' '.join(cmd)}` failed:\n{done.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise ServingError("apt-get installed wrk but it is not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr) else "unknown"


def _as_matrix(values: Any) -> np.ndarray:
    """A column [rows] becomes [rows, 1]; a packed tensor [rows, width] stays as it is."""
    array = np.asarray(values)
    return array.reshape(-1, 1) if array.ndim == 1 else array


def kserve_json_body(columns: dict[str, np.ndarray], inputs: Sequence[tuple[str, str]]) -> bytes:
    """A compact KServe-v2 JSON inference body (one line) for the rows in `columns` (columns [rows] or packed
    tensors [rows, width], data row-major)."""
    tensors = []
    for name, datatype in inputs:
        array = _as_matrix(columns[name])
        data = array.ravel()
        tensors.append(
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": datatype,
                "data": [str(v) for v in data] if datatype == "BYTES" else [float(v) for v in data.astype(np.float64)],
            }
        )
    return json.dumps({"inputs": tensors}, separators=(",", ":")).encode()


def grpc_inputs(columns: dict[str, np.ndarray], inputs: Sequence[tuple[str, str]]) -> list[InferInput]:
    """tritonclient gRPC tensors for the same rows; built once and reused by every request."""
    tensors = []
    for name, datatype in inputs:
        values = _as_matrix(columns[name])
        array = values.astype(str).astype(np.object_) if datatype == "BYTES" else values.astype(np.float32)
        tensor = InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _percentiles_ms(latencies_s: Sequence[float]) -> tuple[float, float, float, float]:
    if not latencies_s:
        return (math.nan,) * 4
    values = np.asarray(latencies_s) * 1e3
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return float(p50), float(p95), float(p99), float(values.max())


def run_wrk(
    url: str,
    bodies: Sequence[bytes],
    concurrency: int,
    rows_per_request: int,
    duration_s: float,
    timeout_s: float,
    threads: int | None = None,
    wrk: str = "wrk",
    lua_script: Path = WRK_LUA,
) -> LoadResult:
    """POST `bodies` (rotated) to `url` from `concurrency` keep-alive connections for `duration_s`."""
    threads = max(1, min(concurrency, threads or os.cpu_count() or 1))
    seconds = max(1, round(duration_s))  # wrk takes whole seconds
    with tempfile.TemporaryDirectory(prefix="fulqrun-wrk-") as tmp:
        bodies_file = Path(tmp) / "bodies.jsonl"
        bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
        cmd = [
            wrk,
            f"--threads={threads}",
            f"--connections={concurrency}",
            f"--duration={seconds}s",
            f"--timeout={max(1, math.ceil(timeout_s))}s",
            f"--script={lua_script}",
            url,
            "--",
            str(bodies_file),
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 120)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith(WRK_MARKER)), None)
    if done.returncode != 0 or line is None:
        raise ServingError(f"wrk failed (exit {done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}")
    stats = json.loads(line[len(WRK_MARKER) :])
    socket_errors = sum(stats[k] for k in ("connect_errors", "read_errors", "write_errors"))
    errors = socket_errors + stats["status_errors"] + stats["timeouts"]
    samples = tuple(
        f"{k}={stats[k]}"
        for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        if stats[k]
    )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    window = stats["duration_us"] / 1e6 or wall
    # wrk counts every completed response (non-2xx included) in `requests`.
    return LoadResult(
        protocol="http",
        concurrency=concurrency,
        rows_per_request=rows_per_request,
        duration_s=round(window, 3),
        requests=max(0, stats["requests"] - stats["status_errors"]),
        errors=errors,
        timeouts=stats["timeouts"],
        p50_ms=stats["p50_us"] / 1e3,
        p95_ms=stats["p95_us"] / 1e3,
        p99_ms=stats["p99_us"] / 1e3,
        max_ms=stats["max_us"] / 1e3,
        client_cpu=round(cpu / wall, 3),
        client=f"wrk --threads={threads}",
        error_samples=samples,
    )


def grpc_channel_count(concurrency: int) -> int:
    """Several TCP connections, so no single HTTP/2 connection (and its one socket) is the choke point."""
    return max(1, min(concurrency, max(4, math.ceil(concurrency / 500))))


async def _grpc_load(
    url: str,
    model: str,
    request_sets: Sequence[list[InferInput]],
    output_name: str,
    concurrency: int,
    duration_s: float,
    timeout_s: float,
    channels: int,
) -> tuple[list[float], int, int, int, list[str], float]:
    options = [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
        # Without a local pool, channels with equal arguments share one subchannel (= one connection).
        ("grpc.use_local_subchannel_pool", 1),
    ]
    clients = [grpcaio.InferenceServerClient(url, channel_args=options) for _ in range(channels)]
    outputs = [InferRequestedOutput(output_name)]
    latencies: list[float] = []
    counts = {"errors": 0, "timeouts": 0}
    samples: list[str] = []
    try:
        # Connect every channel before the clock starts: connection setup is not request latency.
        await asyncio.gather(*(c.is_server_live() for c in clients))
        start = time.perf_counter()
        deadline = start + duration_s

        async def worker(i: int) -> None:
            client = clients[i % channels]
            inputs = request_sets[i % len(request_sets)]
            while (sent := time.perf_counter()) < deadline:
                try:
                    await client.infer(model, inputs, outputs=outputs, client_timeout=timeout_s)
                except InferenceServerException as exc:
                    counts["errors"] += 1
                    if "DEADLINE_EXCEEDED" in str(exc.status()):
                        counts["timeouts"] += 1
                    if len(samples) < ERROR_SAMPLES:
                        samples.append(str(exc)[:300])
                    continue
                received = time.perf_counter()
                latencies.append(received - sent)

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return latencies, len(latencies), counts["errors"], counts["timeouts"], samples, elapsed


def run_grpc(
    url: str,
    model: str,
    request_sets: Sequence[list[InferInput]],
    output_name: str,
    concurrency: int,
    rows_per_request: int,
    duration_s: float,
    timeout_s: float,
    channels: int | None = None,
) -> LoadResult:
    """`concurrency` coroutines, each sending its next request as soon as the last one is answered."""
    channels = channels or grpc_channel_count(concurrency)
    me = psutil.Process()
    before = me.cpu_times()
    t0 = time.perf_counter()
    latencies, ok, errors, timeouts, samples, elapsed = asyncio.run(
        _grpc_load(url, model, request_sets, output_name, concurrency, duration_s, timeout_s, channels)
    )
    wall = time.perf_counter() - t0
    after = me.cpu_times()
    cpu = (after.user - before.user) + (after.system - before.system)
    p50, p95, p99, worst = _percentiles_ms(latencies)
    return LoadResult(
        protocol="grpc",
        concurrency=concurrency,
        rows_per_request=rows_per_request,
        duration_s=round(elapsed, 3),
        requests=ok,
        errors=errors,
        timeouts=timeouts,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=worst,
        client_cpu=round(cpu / wall, 3),
        client=f"tritonclient.grpc.aio x{channels} channels",
        error_samples=tuple(samples),
    )
