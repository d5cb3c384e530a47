"""`fulqrun-ml bench serve`: load a real Triton serving a published model AND an identity model, sweep, report.

What it measures and why:
- the published model (Python backend: validation + onnxruntime, the repository `fulqrun-ml serve` uses),
  and an **identity model** in the same server with the same inputs, batching and instances
  (serving/identity/model.py echoes one input). The identity is Triton's own floor for these requests;
  the model/identity ratio is what our code costs, independent of how fast this machine is today.
- single-record requests at concurrency 1 / 64 / 1,000 / 10,000 and a batched mode (64 records per
  request, 160 concurrent = 10,240 predictions in flight), over HTTP (`wrk`) and gRPC (asyncio
  tritonclient), models interleaved point by point so drift on a shared machine hits both alike.
- per point: throughput (requests/s, predictions/s), p50/p95/p99/max latency, errors and timeouts,
  CPU cores used by the client, by the server (tritonserver + its Python stubs) and by everything else
  on the machine, and Triton's own statistics: average executed batch, and per request the time queued
  and the compute time of the batch it ran in.

Everything binds to 127.0.0.1; every point is time-bounded. Output: a JSON report (machine info, one
row per model x protocol x concurrency x rows_per_request, the issue's targets with met/gap) and a PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import requests
from omegaconf import OmegaConf
from tritonclient.grpc import InferInput

from fulqrun_ml.errors import FulqrunMLError, ServingError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, TEMPLATE_DIR
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving import loadgen
from fulqrun_ml.serving.repository import TensorSpec, TritonModelConfig, TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)
IDENTITY = "identity"
DATATYPES = {"float32": "FP32", "string": "BYTES", "int64": "INT64"}
BODIES_PER_POINT = 16  # distinct request bodies rotated by every client
FD_MARGIN = 512  # descriptors the server needs besides one per client connection
IDLE_SAMPLES = 4  # consecutive unchanged samples (0.5 s apart) that count as an idle server
# Points this large run on a freshly started server. Measured here: Triton 2.51's HTTP frontend keeps
# thousands of sockets in CLOSE_WAIT for good after clients close connections with requests in flight
# (~4k after one 10,000-connection run, more after each large run), and a 10,000-connection point on a
# server holding ~8k of them got no answers at all; the descriptor limit (20,000) cannot be raised here.
FRESH_SERVER_AT = 5000
SHARED_MACHINE_NOTE = (
    "client and server share the same cores; other_cpu per row is CPU used by other processes and "
    "machine.load_average_* says how busy the machine was; compare model vs identity within a row pair"
)


@dataclass(frozen=True)
class SweepPoint:
    concurrency: int
    rows_per_request: int = 1


# 10,000 last: it leaves thousands of leaked sockets behind (see FRESH_SERVER_AT).
FULL_POINTS = (SweepPoint(1), SweepPoint(64), SweepPoint(1000), SweepPoint(160, 64), SweepPoint(10000))
QUICK_POINTS = (SweepPoint(1), SweepPoint(8), SweepPoint(4, 8))


def parse_points(text: str) -> tuple[SweepPoint, ...]:
    """'1,64,160x64' -> concurrency 1 and 64 with one record, 160 concurrent requests of 64 records."""
    points = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        concurrency, _, rows = item.partition("x")
        try:
            point = SweepPoint(int(concurrency), int(rows or 1))
        except ValueError:
            raise FulqrunMLError(f"bad sweep point '{item}': expected CONCURRENCY or CONCURRENCYxROWS") from None
        if point.concurrency < 1 or point.rows_per_request < 1:
            raise FulqrunMLError(f"bad sweep point '{item}': concurrency and rows must be >= 1")
        points.append(point)
    if not points:
        raise FulqrunMLError("no sweep points given")
    return tuple(points)


# --- the repository: the published model + the identity floor, generated from typed configs ---------------


def serving_options(path: Path = CONFIG_DIR / "serving" / "cpu.yaml") -> dict[str, Any]:
    """The batching/instance settings `fulqrun-ml serve` uses, so the benchmark measures what is served."""
    cfg = OmegaConf.load(path)
    return {
        "max_batch_size": int(cfg.max_batch_size),
        "max_queue_delay_microseconds": int(cfg.max_queue_delay_microseconds),
        "preferred_batch_sizes": tuple(int(b) for b in cfg.preferred_batch_sizes),
        "instance_count": int(cfg.instance_count),
        "ort_intra_op_threads": int(cfg.ort_intra_op_threads),
    }


def identity_config(model: TritonModelConfig, echo_input: str) -> TritonModelConfig:
    """The identity twin of `model`: same inputs, first output, batching and instances; echoes one input."""
    if echo_input not in {i.name for i in model.inputs}:
        raise FulqrunMLError(f"identity model: '{echo_input}' is not an input of '{model.name}'")
    return TritonModelConfig(
        name=IDENTITY,
        inputs=model.inputs,
        outputs=(TensorSpec(model.outputs[0].name, model.outputs[0].dtype),),
        variant="python-ort",
        max_batch_size=model.max_batch_size,
        max_queue_delay_microseconds=model.max_queue_delay_microseconds,
        preferred_batch_sizes=model.preferred_batch_sizes,
        instance_count=model.instance_count,
        parameters={"echo_input": echo_input},
    )


def add_identity_model(repository: Path, config: TritonModelConfig) -> Path:
    """<repo>/identity/config.pbtxt + <repo>/identity/1/model.py (template serving/identity/model.py)."""
    model_dir = Path(repository) / config.name
    shutil.rmtree(model_dir, ignore_errors=True)
    (model_dir / "1").mkdir(parents=True)
    shutil.copy2(TEMPLATE_DIR / "identity" / "model.py", model_dir / "1" / "model.py")
    (model_dir / "config.pbtxt").write_text(config.to_pbtxt())
    return model_dir


def build_bench_repository(
    version: ModelVersion, repository: Path, options: dict[str, Any]
) -> tuple[TritonModelConfig, TritonModelConfig]:
    model = config_for_version(version, "python-ort", **options)
    echo = next((i.name for i in model.inputs if i.dtype == model.outputs[0].dtype), None)
    if echo is None:
        raise FulqrunMLError(f"model '{model.name}' has no input of its output type to echo for the identity model")
    identity = identity_config(model, echo)
    TritonRepositoryBuilder(repository).add(version, model)
    add_identity_model(repository, identity)
    return model, identity


# --- request payloads -----------------------------------------------------------------------------------


def benchmark_records(version: ModelVersion, n: int, seed: int = 0) -> pd.DataFrame:
    """Raw records to send: the version's holdout rows when its training run is still on disk, otherwise
    records drawn from the fitted FeatureSpec itself (numbers from the training mean/std in the model's
    own scale, categories from the vocabulary), so any published version can be benchmarked."""
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    lineage = version.path / "lineage.json"
    run_dir = json.loads(lineage.read_text()).get("run_dir") if lineage.is_file() else None
    holdout = Path(run_dir) / "holdout.parquet" if run_dir else None
    if holdout is not None and holdout.is_file():
        frame = pd.read_parquet(holdout, columns=spec.spec.names)
        return frame.sample(n, replace=len(frame) < n, random_state=seed).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for feat in spec.spec.numeric:
        z = rng.normal(spec.means[feat.name], spec.stds[feat.name], n)
        columns[feat.name] = np.expm1(np.clip(z, 0, None)) if feat.log1p else z
    for feat in spec.spec.categorical:
        columns[feat.name] = rng.choice(spec.vocabularies[feat.name] or ["unknown"], n)
    return pd.DataFrame(columns)


def model_inputs(version: ModelVersion) -> list[tuple[str, str]]:
    return [(i["name"], DATATYPES[i["dtype"]]) for i in version.metadata["inputs"]]


def request_columns(records: pd.DataFrame, rows: int, count: int = BODIES_PER_POINT) -> list[dict[str, np.ndarray]]:
    """`count` different requests of `rows` consecutive records each (wrapping around the records)."""
    out = []
    for k in range(count):
        index = np.arange(k * rows, (k + 1) * rows) % len(records)
        out.append({c: records[c].to_numpy()[index] for c in records.columns})
    return out


def check_answers(server: TritonServer, model: str, identity: str, echo: str, output: str, body: bytes) -> None:
    """One HTTP request per model with the exact bytes wrk will send: both must answer, correctly shaped;
    the identity must return the echoed input and the model a probability in [0, 1]."""
    sent = {i["name"]: i["data"] for i in json.loads(body)["inputs"]}
    for name in (model, identity):
        reply = requests.post(f"http://{server.http_url}/v2/models/{name}/infer", data=body, timeout=30)
        if reply.status_code != 200:
            raise ServingError(f"model '{name}' refused the benchmark request: {reply.text[:500]}")
        values = next(o for o in reply.json()["outputs"] if o["name"] == output)["data"]
        if len(values) != len(sent[echo]):
            raise ServingError(f"model '{name}' answered {len(values)} values for {len(sent[echo])} rows")
        if name == identity and not np.allclose(values, np.asarray(sent[echo], dtype=np.float32)):
            raise ServingError("the identity model did not echo its input")
        if name == model and not all(0.0 <= v <= 1.0 for v in values):
            raise ServingError(f"model '{name}' returned values outside [0, 1]")


# --- measurement around one load run ---------------------------------------------------------------------


def _tree_cpu_seconds(process: psutil.Process) -> float:
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
    stats = requests.get(f"http://{server.http_url}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
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


@dataclass(frozen=True)
class LoadPlan:
    """Everything a load run needs besides the server, the model and the point."""

    bodies: dict[int, list[bytes]]  # rows per request -> KServe-v2 JSON bodies (HTTP)
    grpc_sets: dict[int, list[list[InferInput]]]  # rows per request -> prepared gRPC tensors
    output: str
    duration_s: float
    timeout_s: float
    wrk: str | None
    grpc_channels: int | None = None

    def run(self, server: TritonServer, protocol: str, model: str, point: SweepPoint) -> loadgen.LoadResult:
        rows = point.rows_per_request
        if protocol == "http":
            url = f"http://{server.http_url}/v2/models/{model}/infer"
            return loadgen.run_wrk(
                url, self.bodies[rows], point.concurrency, rows, self.duration_s, self.timeout_s, wrk=self.wrk or "wrk"
            )
        return loadgen.run_grpc(
            server.grpc_url,
            model,
            self.grpc_sets[rows],
            self.output,
            point.concurrency,
            rows,
            self.duration_s,
            self.timeout_s,
            channels=self.grpc_channels,
        )


def measure_point(server: TritonServer, model: str, run: Any) -> dict[str, Any]:
    """Run `run()` (a load generator call) and add the server's and the machine's CPU over its window."""
    server_process = psutil.Process(server.process.pid)
    stats_before = _model_stats(server, model)
    server_before, machine_before, t0 = _tree_cpu_seconds(server_process), _machine_busy_seconds(), time.monotonic()
    result: loadgen.LoadResult = run()
    wall = time.monotonic() - t0
    server_cpu = (_tree_cpu_seconds(server_process) - server_before) / wall
    machine_cpu = (_machine_busy_seconds() - machine_before) / wall
    row = {"model": model, **result.to_dict()}
    row["server_cpu"] = round(server_cpu, 3)
    row["machine_cpu"] = round(machine_cpu, 3)
    row["other_cpu"] = round(max(0.0, machine_cpu - server_cpu - result.client_cpu), 3)
    row.update(_server_view(stats_before, _model_stats(server, model)))
    return row


# --- the sweep --------------------------------------------------------------------------------------------


def run_benchmark(
    version: ModelVersion,
    out_json: Path,
    out_png: Path | None = None,
    points: Sequence[SweepPoint] = FULL_POINTS,
    protocols: Sequence[str] = ("http", "grpc"),
    duration_s: float = 6.0,
    timeout_s: float = 10.0,
    options: dict[str, Any] | None = None,
    grpc_channels: int | None = None,
    records: pd.DataFrame | None = None,
    note: str = SHARED_MACHINE_NOTE,
    pause_s: float = 1.0,
) -> dict[str, Any]:
    """Serve `version` + the identity model in one real Triton, sweep `points` per protocol, write reports."""
    unknown = sorted(set(protocols) - {"http", "grpc"})
    if unknown:
        raise FulqrunMLError(f"unknown protocol(s) {unknown}; choose from http, grpc")
    options = options or serving_options()
    too_big = [p for p in points if p.rows_per_request > options["max_batch_size"]]
    if too_big:
        raise FulqrunMLError(f"rows_per_request {too_big[0].rows_per_request} > max_batch_size")
    wanted_files = max(p.concurrency for p in points) + 1024
    nofile = loadgen.raise_open_file_limit(wanted_files)
    if nofile[0] < wanted_files:
        log.warning("open-file limit %d < %d: the largest concurrency may fail to connect", nofile[0], wanted_files)
    wrk = loadgen.ensure_wrk() if "http" in protocols else None
    inputs = model_inputs(version)
    records = records if records is not None else benchmark_records(version, 4096)
    payloads = {
        rows: request_columns(records[[n for n, _ in inputs]], rows) for rows in {p.rows_per_request for p in points}
    }
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fulqrun-bench-") as tmp:
        repository = Path(tmp) / "repository"
        model_cfg, identity_cfg = build_bench_repository(version, repository, options)
        models = (identity_cfg.name, model_cfg.name)
        output = model_cfg.outputs[0].name
        echo = identity_cfg.parameters["echo_input"]
        bodies = {rows: [loadgen.kserve_json_body(c, inputs) for c in cols] for rows, cols in payloads.items()}
        plan = LoadPlan(
            bodies=bodies,
            grpc_sets={rows: [loadgen.grpc_inputs(c, inputs) for c in cols] for rows, cols in payloads.items()},
            output=output,
            duration_s=duration_s,
            timeout_s=timeout_s,
            wrk=wrk,
            grpc_channels=grpc_channels,
        )
        starts = 0

        def start_server() -> TritonServer:
            nonlocal starts
            starts += 1
            return TritonServer(repository, log_path=Path(tmp) / f"tritonserver-{starts}.log").start()

        server = start_server()
        fresh = True
        try:
            for rows in bodies:
                check_answers(server, model_cfg.name, identity_cfg.name, echo, output, bodies[rows][0])
            server_version = requests.get(f"http://{server.http_url}/v2", timeout=10).json().get("version")
            for protocol in protocols:
                for point in points:
                    for model in models:
                        idle = settle_server(server, models)
                        short = idle["server_open_fds_before"] + point.concurrency + FD_MARGIN > nofile[0]
                        restarted = short or (point.concurrency >= FRESH_SERVER_AT and not fresh)
                        if restarted:  # see FRESH_SERVER_AT
                            log.info("restarting Triton: it holds %d descriptors", idle["server_open_fds_before"])
                            server.stop()
                            server = start_server()
                            idle = settle_server(server, models)
                        fresh = False
                        row = measure_point(server, model, lambda: plan.run(server, protocol, model, point))  # noqa: B023
                        row.update(idle, server_restarted_before=restarted)
                        rows_out.append(row)
                        log.info(
                            "%-8s %-5s c=%-6d rows=%-3d %9.0f pred/s  p50 %s  p99 %s ms  errors %d  "
                            "cpu client/server %.2f/%.2f",
                            model,
                            protocol,
                            point.concurrency,
                            point.rows_per_request,
                            row["predictions_per_s"],
                            _ms(row["p50_ms"]),
                            _ms(row["p99_ms"]),
                            row["errors"],
                            row["client_cpu"],
                            row["server_cpu"],
                        )
                        time.sleep(pause_s)
            if server.process is None or server.process.poll() is not None:
                raise ServingError(f"tritonserver died during the benchmark:\n{server.log_tail()}")
        finally:
            server.stop()
    report = {
        "benchmark": "serving",
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "note": note,
        "model": {"name": version.name, "version": version.version, "path": str(version.path)},
        "baseline": f"model '{IDENTITY}': same inputs, batching and instances, echoes '{echo}' (Triton's floor)",
        "settings": {
            "server_starts": starts,
            "duration_s": duration_s,
            "timeout_s": timeout_s,
            "protocols": list(protocols),
            "points": [vars(p) for p in points],
            "serving": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "triton_config": model_cfg.to_pbtxt(),
            "loopback_only": True,
        },
        "machine": bench_machine(wrk, server_version, nofile, load_before),
        "rows": rows_out,
        "targets": evaluate_targets(rows_out, version.name),
    }
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = out_json.with_name(out_json.name + ".tmp")
    tmp_json.write_text(json.dumps(report, indent=2, default=str))
    tmp_json.replace(out_json)
    if out_png is not None:
        plot_report(report, Path(out_png))
    return report


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


def _find(rows: list[dict[str, Any]], model: str, protocol: str, concurrency: int, rows_per_request: int = 1):
    return next(
        (
            r
            for r in rows
            if r["model"] == model
            and r["protocol"] == protocol
            and r["concurrency"] == concurrency
            and r["rows_per_request"] == rows_per_request
        ),
        None,
    )


def _ms(value: float | None) -> str:
    return "   (none)" if value is None else f"{value:9.2f}"


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value


def _at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def evaluate_targets(rows: list[dict[str, Any]], model: str) -> list[dict[str, Any]]:
    """The issue's serving targets, checked against this run's rows (met or the gap, in numbers)."""
    out = []
    for protocol in sorted({r["protocol"] for r in rows}):
        checks = []
        one = _find(rows, model, protocol, 1)
        if one:
            checks.append(("single-record p99 <= 2 ms at concurrency 1", one["p99_ms"], _at_most(one["p99_ms"], 2.0)))
        m64, i64 = _find(rows, model, protocol, 64), _find(rows, IDENTITY, protocol, 64)
        if m64 and i64 and i64["rps"]:
            ratio = m64["rps"] / i64["rps"]
            checks.append(("throughput >= 0.8 x identity at concurrency 64", round(ratio, 3), ratio >= 0.8))
        big = _find(rows, model, protocol, 10000)
        if big:
            ok = big["requests"] > 0 and big["errors"] == 0 and _at_most(big["p99_ms"], 1500)
            checks.append(("10,000 concurrent: 0 errors and p99 <= 1.5 s", [big["errors"], big["p99_ms"]], ok))
        batched = _find(rows, model, protocol, 160, 64)
        if batched:
            ok = _at_most(batched["p99_ms"], 99.999) and batched["predictions_per_s"] >= 150_000
            value = [batched["p99_ms"], batched["predictions_per_s"]]
            checks.append(("10,240 in flight: p99 < 100 ms and >= 150k predictions/s", value, ok))
        out += [{"protocol": protocol, "target": t, "value": v, "met": bool(m)} for t, v, m in checks]
    return out


# --- the plot ---------------------------------------------------------------------------------------------


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Throughput and p99 vs concurrency, model vs identity, one line per model x protocol; the batched
    mode (many records per request) is drawn as separate markers in predictions/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, (ax_t, ax_p) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {"http": "-", "grpc": "--"}
    colors = {IDENTITY: "tab:gray"}
    for model in dict.fromkeys(r["model"] for r in rows):
        color = colors.get(model, "tab:blue")
        for protocol in dict.fromkeys(r["protocol"] for r in rows):
            single = sorted(
                (r for r in rows if r["model"] == model and r["protocol"] == protocol and r["rows_per_request"] == 1),
                key=lambda r: r["concurrency"],
            )
            label = f"{model} {protocol}"
            if single:
                xs = [r["concurrency"] for r in single]
                ax_t.plot(
                    xs, [r["predictions_per_s"] for r in single], styles[protocol], color=color, marker="o", label=label
                )
                ax_p.plot(
                    xs, [_nan(r["p99_ms"]) for r in single], styles[protocol], color=color, marker="o", label=label
                )
            for r in rows:
                if r["model"] == model and r["protocol"] == protocol and r["rows_per_request"] > 1:
                    marker = "*" if protocol == "http" else "P"
                    batch_label = f"{label}, {r['rows_per_request']} rows/request"
                    ax_t.scatter(
                        r["concurrency"], r["predictions_per_s"], s=120, marker=marker, color=color, label=batch_label
                    )
                    ax_p.scatter(
                        r["concurrency"], _nan(r["p99_ms"]), s=120, marker=marker, color=color, label=batch_label
                    )
    for ax, title, unit in ((ax_t, "throughput", "predictions / s"), (ax_p, "p99 latency", "ms")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("concurrent requests")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.legend(fontsize=7)
    m = report["model"]
    fig.suptitle(
        f"Triton on {report['machine']['cpu_count']} CPUs: {m['name']} v{m['version']} vs identity "
        "(load and client on the same cores)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- command line -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml bench serve", description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", default="models", help="registry root holding <model>/<version>/")
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--out", default="reports/bench_serving.json")
    parser.add_argument("--plot", default=None, help="PNG path (default: --out with .png)")
    parser.add_argument("--quick", action="store_true", help="tiny sweep, 1 s per point (tests, smoke checks)")
    parser.add_argument("--points", default=None, help="e.g. '1,64,1000,10000,160x64' (CONCURRENCY[xROWS])")
    parser.add_argument("--protocols", default="http,grpc")
    parser.add_argument("--duration", type=float, default=None, help="seconds per point (default 6, quick 1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds")
    parser.add_argument("--grpc-channels", type=int, default=None, help="default: max(4, concurrency/500)")
    parser.add_argument("--serving-config", default=str(CONFIG_DIR / "serving" / "cpu.yaml"))
    parser.add_argument("--note", default=SHARED_MACHINE_NOTE)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    version = get_version(Path(args.models_dir), args.model, args.version)
    points = parse_points(args.points) if args.points else (QUICK_POINTS if args.quick else FULL_POINTS)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 6.0)
    out = Path(args.out)
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    report = run_benchmark(
        version,
        out,
        png,
        points=points,
        protocols=[p.strip() for p in args.protocols.split(",") if p.strip()],
        duration_s=duration,
        timeout_s=args.timeout,
        options=serving_options(Path(args.serving_config)),
        grpc_channels=args.grpc_channels,
        note=args.note,
        pause_s=0.2 if args.quick else 1.0,
    )
    errors = sum(r["errors"] for r in report["rows"])
    print(f"wrote {out} ({len(report['rows'])} rows, {errors} errors) and {png}")
    for t in report["targets"]:
        print(f"  [{'met' if t['met'] else 'GAP'}] {t['protocol']}: {t['target']}: {t['value']}")
    return 0
