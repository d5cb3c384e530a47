"""Measurement around one load run of the serving benchmark: CPU of the client, the server and the rest of the
machine, Triton's own statistics, and waiting for an idle server between points.

Why psutil and Triton's statistics both: on a small shared machine the load generator competes with the
server, so a throughput number means little without who burned which cores; Triton's counters say what the
server itself did (average executed batch, time queued, compute time of the batch a request ran in).
"""

from __future__ import annotations

import pstats
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
import requests

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.machine import machine_info
from fulqrun_ml.serving.access import control_headers
from fulqrun_ml.serving.server import TritonServer

IDLE_SAMPLES = 4  # consecutive unchanged samples (0.5 s apart) that count as an idle server


def tree_cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:  # a stub that just exited
            continue
    return total


def _machine_busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _model_stats(server: TritonServer, model: str) -> dict[str, float]:
    # Statistics sit behind the server's control key (serving/access.py), like the model-control API.
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    stats = requests.get(url, headers=control_headers(server.control_key), timeout=10).json()["model_stats"][0]
    inference = stats["inference_stats"]
    return {
        "inference_count": float(stats["inference_count"]),
        "execution_count": float(stats["execution_count"]),
        "queue_ns": float(inference["queue"]["ns"]),
        "queue_count": float(inference["queue"]["count"]),
        "compute_ns": float(inference["compute_infer"]["ns"]),
        "compute_count": float(inference["compute_infer"]["count"]),
    }


def _server_view(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    d = {k: after[k] - before[k] for k in before}

    def ratio(a: float, b: float, scale: float = 1.0) -> float | None:
        return round(a / b * scale, 3) if b else None

    return {
        "server_avg_batch_rows": ratio(d["inference_count"], d["execution_count"]),
        "server_queue_ms": ratio(d["queue_ns"], d["queue_count"], 1e-6),
        "server_compute_ms": ratio(d["compute_ns"], d["compute_count"], 1e-6),
    }


def settle_server(server: TritonServer, models: Sequence[str], timeout_s: float = 120.0, step_s: float = 0.5) -> dict:
    """Wait until the server is idle again: no model executing and open descriptors no longer falling.

    Why: Triton does not cancel requests whose HTTP client went away, so after a 10,000-connection run
    on a slow (shared) machine it keeps executing the abandoned queue for seconds; a point started then
    would measure that backlog, not itself. The run also leaves ~10k server sockets in CLOSE_WAIT that
    Triton 2.51 releases over seconds (a few thousand never, measured here), and the descriptor limit
    (20,000) cannot be raised on this machine. Returns what the next row records about the wait."""
    process = psutil.Process(server.process.pid)
    t0 = time.monotonic()

    def sample() -> tuple[float, int]:
        done = sum(_model_stats(server, m)["inference_count"] for m in models)
        return done, process.num_fds()

    previous = sample()
    stable = 0
    while time.monotonic() - t0 < timeout_s and stable < IDLE_SAMPLES:
        time.sleep(step_s)
        current = sample()
        idle = current[0] == previous[0] and current[1] >= previous[1]
        stable = stable + 1 if idle else 0
        previous = current
    return {
        "server_idle_wait_s": round(time.monotonic() - t0, 2),
        "server_idle_before": stable >= IDLE_SAMPLES,
        "server_open_fds_before": previous[1],
    }


def measure_point(server: TritonServer, model: str, run: Callable[[], loadgen.LoadResult]) -> dict[str, Any]:
    """Run `run()` (a load generator call) and add the server's and the machine's CPU over its window."""
    server_process = psutil.Process(server.process.pid)
    stats_before = _model_stats(server, model)
    server_before, machine_before, t0 = tree_cpu_seconds(server_process), _machine_busy_seconds(), time.monotonic()
    result: loadgen.LoadResult = run()
    wall = time.monotonic() - t0
    server_cpu = (tree_cpu_seconds(server_process) - server_before) / wall
    machine_cpu = (_machine_busy_seconds() - machine_before) / wall
    row = {"model": model, **result.to_dict()}
    row["server_cpu"] = round(server_cpu, 3)
    row["machine_cpu"] = round(machine_cpu, 3)
    row["other_cpu"] = round(max(0.0, machine_cpu - server_cpu - result.client_cpu), 3)
    row.update(_server_view(stats_before, _model_stats(server, model)))
    return row


def bench_machine(
    wrk: str | None, server_version: str | None, nofile: tuple[int, int], load_before: tuple[float, ...]
) -> dict[str, Any]:
    """The shared machine description plus what matters for serving load (server, wrk, socket limits)."""
    return machine_info(
        tritonserver=server_version,
        wrk=loadgen.wrk_version(wrk) if wrk else None,
        open_file_limit={"soft": nofile[0], "hard": nofile[1]},
        somaxconn=_read("/proc/sys/net/core/somaxconn").strip() or None,
        load_average_before=[round(x, 2) for x in load_before],
    )


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def top_functions(path: Path, limit: int = 25) -> list[dict[str, Any]]:
    """The backend's cProfile (serving/python_ort/model.py, `profile_path`) as its `limit` costliest functions by
    own time: where a batch's Python time goes, per call and in total."""
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(filename).name}:{line}({name})",
                "calls": calls,
                "own_s": round(own, 4),
                "cumulative_s": round(cumulative, 4),
            }
        )
    return sorted(rows, key=lambda r: -r["own_s"])[:limit]
