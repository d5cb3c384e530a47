"""`fulqrun-ml bench serve`: load a real Triton serving a published model AND an identity model, sweep, report.

What it measures and why:
- the published model (Python backend: validation + onnxruntime, the repository `fulqrun-ml serve` uses),
  sent the SDK's layout (`--layout packed`, the default: two tensors, serving/packed.py; or `named`, one
  tensor per field as any KServe client sends), an **identity model** in the same server with the same inputs,
  batching and instances (serving/identity/model.py echoes one input), and the **one-tensor floor** (an identity
  taking one FP32 tensor of as many values as the model has fields). model/identity is what our code costs;
  model/floor (`floor_ratio` on every row) what our code and our request layout cost, independent of how fast
  this machine is today.
- single-record requests at concurrency 1 / 64 / 1,000 / 10,000 and a batched mode (64 records per
  request, 160 concurrent = 10,240 predictions in flight), over HTTP (`wrk`) and gRPC (asyncio
  tritonclient), models interleaved point by point so drift on a shared machine hits both alike.
- per point: throughput (requests/s, predictions/s), p50/p95/p99/max latency, errors and timeouts,
  CPU cores used by the client, by the server (tritonserver + its Python stubs) and by everything else
  on the machine, the 1-minute load average, and Triton's own statistics: average executed batch, and per
  request the time queued and the compute time of the batch it ran in.

Everything binds to 127.0.0.1; every point is time-bounded. Output: a JSON report (machine info, one
row per model x protocol x concurrency x rows_per_request, the issue's targets with met/gap) and a PNG.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import requests
from omegaconf import OmegaConf
from tritonclient.grpc import InferInput

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.benchmarks.serving_identity import (
    SERVING_CONFIG,
    build_bench_repository,
    check_answers,
    load_serving_config,
)
from fulqrun_ml.benchmarks.serving_measure import bench_machine, measure_point, settle_server, top_functions
from fulqrun_ml.benchmarks.serving_payloads import layout_payloads
from fulqrun_ml.benchmarks.serving_payloads import model_inputs as model_inputs  # re-exported (prediction_log)
from fulqrun_ml.benchmarks.serving_payloads import request_columns as request_columns
from fulqrun_ml.benchmarks.serving_report import (
    FLOOR,
    FLOOR_INPUT,
    IDENTITY,
    add_floor_ratios,
    evaluate_targets,
    plot_report,
)
from fulqrun_ml.benchmarks.workload import benchmark_records, configure_logging, publish_small_model
from fulqrun_ml.errors import FulqrunMLError, ServingError
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving.deploy import cpu_options
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)
FD_MARGIN = 512  # descriptors the server needs besides one per client connection
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


# --- measurement around one load run ---------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    """Everything a load run needs besides the server, the model and the point."""

    bodies: dict[tuple[str, int], list[bytes]]  # (model, rows per request) -> KServe-v2 JSON bodies (HTTP)
    grpc_sets: dict[tuple[str, int], list[list[InferInput]]]  # (model, rows per request) -> prepared gRPC tensors
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
                url,
                self.bodies[model, rows],
                point.concurrency,
                rows,
                self.duration_s,
                self.timeout_s,
                wrk=self.wrk or "wrk",
            )
        return loadgen.run_grpc(
            server.grpc_url,
            model,
            self.grpc_sets[model, rows],
            self.output,
            point.concurrency,
            rows,
            self.duration_s,
            self.timeout_s,
            channels=self.grpc_channels,
        )


# --- the sweep --------------------------------------------------------------------------------------------


def run_benchmark(
    version: ModelVersion,
    out_json: Path,
    out_png: Path | None = None,
    points: Sequence[SweepPoint] = FULL_POINTS,
    protocols: Sequence[str] = ("http", "grpc"),
    duration_s: float = 6.0,
    timeout_s: float = 10.0,
    serving: Mapping[str, Any] | None = None,
    grpc_channels: int | None = None,
    records: pd.DataFrame | None = None,
    note: str = SHARED_MACHINE_NOTE,
    pause_s: float = 1.0,
    layout: str = "packed",
    profile: bool = False,
    gateway: bool = False,
) -> dict[str, Any]:
    """Serve `version`, its identity and the one-tensor floor in one real Triton, sweep `points` per protocol,
    write reports.

    `serving` is the serving config group (default configs/serving/cpu.yaml): the same batching and instances
    `fulqrun-ml serve` gives the version. `layout`: how the model and its identity are sent records.
    `profile`: the model's backend runs under cProfile and the report gets its top functions (use points below
    FRESH_SERVER_AT: a restart starts afresh). `gateway`: HTTP goes through serving/gateway.py (tenant header,
    400s for malformed requests) as `fulqrun-ml serve` runs it, in this process; gRPC stays direct."""
    unknown = sorted(set(protocols) - {"http", "grpc"})
    if unknown:
        raise FulqrunMLError(f"unknown protocol(s) {unknown}; choose from http, grpc")
    serving = serving if serving is not None else load_serving_config()
    options = cpu_options(serving)
    too_big = [p for p in points if p.rows_per_request > options["max_batch_size"]]
    if too_big:
        raise FulqrunMLError(f"rows_per_request {too_big[0].rows_per_request} > max_batch_size")
    wanted_files = max(p.concurrency for p in points) + 1024
    nofile = loadgen.raise_open_file_limit(wanted_files)
    if nofile[0] < wanted_files:
        log.warning("open-file limit %d < %d: the largest concurrency may fail to connect", nofile[0], wanted_files)
    wrk = loadgen.ensure_wrk() if "http" in protocols else None
    records = records if records is not None else benchmark_records(version, 4096)
    payloads = {rows: layout_payloads(version, records, rows, layout) for rows in {p.rows_per_request for p in points}}
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    rows_out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="fulqrun-bench-") as tmp:
        serving = _log_predictions_under(serving, Path(tmp))
        options = cpu_options(serving)
        repository = Path(tmp) / "repository"
        profile_path = Path(tmp) / "model.prof" if profile else None
        model_cfg, identity_cfg, floor_cfg = build_bench_repository(version, repository, serving, layout, profile_path)
        kinds = {floor_cfg.name: "floor", identity_cfg.name: "identity", model_cfg.name: "model"}
        models = tuple(kinds)  # interleaved in this order at every point
        output = model_cfg.outputs[0].name
        echo = identity_cfg.parameters["echo_input"]
        echoes = {floor_cfg.name: FLOOR_INPUT, identity_cfg.name: echo, model_cfg.name: None}
        sets = {(m, rows): payload[kind] for rows, payload in payloads.items() for m, kind in kinds.items()}
        bodies = {key: [loadgen.kserve_json_body(c, inputs) for c in cols] for key, (inputs, cols) in sets.items()}
        plan = LoadPlan(
            bodies=bodies,
            grpc_sets={key: [loadgen.grpc_inputs(c, inputs) for c in cols] for key, (inputs, cols) in sets.items()},
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
            log_path = Path(tmp) / f"tritonserver-{starts}.log"
            return TritonServer(repository, log_path=log_path, gateway=gateway).start()

        server = start_server()
        fresh = True
        try:
            for (model, _), model_bodies in bodies.items():
                check_answers(server, model, echoes[model], output, model_bodies[0])
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
                        row.update(
                            idle, server_restarted_before=restarted, load_average_1m=round(os.getloadavg()[0], 2)
                        )
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
        hot_path = top_functions(profile_path) if profile_path is not None and profile_path.is_file() else None
    add_floor_ratios(rows_out)
    report = {
        "benchmark": "serving",
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "note": note,
        "model": {"name": version.name, "version": version.version, "path": str(version.path), "layout": layout},
        "baseline": (
            f"model '{IDENTITY}': same inputs, batching and instances, echoes '{echo}' (Triton's cost for the same "
            f"requests); model '{FLOOR}': one FP32 tensor of {len(version.metadata['inputs'])} values, same batching "
            "and instances (the transport floor); floor_ratio = predictions/s over the floor's at the same point"
        ),
        "settings": {
            "server_starts": starts,
            "duration_s": duration_s,
            "timeout_s": timeout_s,
            "protocols": list(protocols),
            "points": [vars(p) for p in points],
            "serving": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "triton_config": model_cfg.to_pbtxt(),
            "loopback_only": True,
            "http_gateway": gateway,
        },
        "machine": bench_machine(wrk, server_version, nofile, load_before),
        "rows": rows_out,
        "targets": evaluate_targets(rows_out, version.name),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "profile": hot_path,
    }
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    tmp_json = out_json.with_name(out_json.name + ".tmp")
    tmp_json.write_text(json.dumps(report, indent=2, default=str))
    tmp_json.replace(out_json)
    if out_png is not None:
        plot_report(report, Path(out_png))
    return report


def _log_predictions_under(serving: Mapping[str, Any], tmp: Path) -> Mapping[str, Any]:
    """`serving` with its prediction log (when enabled) spooled under the benchmark's temp directory: the log's cost
    stays in the measurement, but a sweep's millions of records do not land in the project's logs/ (838 MB once)."""
    if not (serving.get("prediction_log") or {}).get("enabled"):
        return serving
    copy = OmegaConf.create(OmegaConf.to_container(serving) if OmegaConf.is_config(serving) else dict(serving))
    copy.prediction_log.dir = str(tmp / "predictions")
    return copy


def _ms(value: float | None) -> str:
    return "   (none)" if value is None else f"{value:9.2f}"


# --- command line -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml bench serve", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models-dir", default=None, help="registry root holding <model>/<version>/ (default: train a small model)"
    )
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
    parser.add_argument("--serving-config", default=str(SERVING_CONFIG))
    parser.add_argument("--note", default=SHARED_MACHINE_NOTE)
    parser.add_argument("--layout", default="packed", choices=("packed", "named"), help="how records are sent")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the model's backend; top functions in the report"
    )
    parser.add_argument(
        "--gateway", action="store_true", help="HTTP through the inference gateway, as `fulqrun-ml serve` runs it"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Without --models-dir, first trains and publishes a small default model (see workload.py)."""
    configure_logging()
    args = build_parser().parse_args(argv)
    if args.models_dir is None:
        version = publish_small_model(name=args.model)
    else:
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
        serving=load_serving_config(Path(args.serving_config)),
        grpc_channels=args.grpc_channels,
        note=args.note,
        pause_s=0.2 if args.quick else 1.0,
        layout=args.layout,
        profile=args.profile,
        gateway=args.gateway,
    )
    errors = sum(r["errors"] for r in report["rows"])
    print(f"wrote {out} ({len(report['rows'])} rows, {errors} errors) and {png}")
    for t in report["targets"]:
        print(f"  [{'met' if t['met'] else 'GAP'}] {t['protocol']}: {t['target']}: {t['value']}")
    return 0
