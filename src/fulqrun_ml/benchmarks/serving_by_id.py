"""Serving by id against serving by record: the same deals, the same Triton server, the same run.

Why this comparison: `<model>_by_id` does everything `<model>` does (it calls it, BLS) plus a pipelined Redis
read and a second Python-backend hop per batch; the issue's goal is by-id throughput >= 0.7 x record
throughput. Both endpoints are driven by the asyncio gRPC load generator (`loadgen.run_grpc`), one row per
request, at the same concurrency, alternating record / by-id rounds so that a slow moment of a shared
machine does not land on one side only. Each point carries the client's, the server's and the rest of
the machine's CPU (`serving_measure.measure_point`).

`compare_by_id_and_record` measures a running server (the freshness benchmark reuses it); `main` sets one
up: its own Redis (scripts/redis.sh), open deals of a simulated CRM materialised through `OnlineStore.write`,
the registry's version served as `<model>` + `<model>_by_id`, and prints the JSON (nothing is committed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tritonclient.grpc import InferInput

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.benchmarks.serving_measure import measure_point, settle_server
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.machine import machine_info
from fulqrun_ml.online.live_update import build_by_id_repository, service_script
from fulqrun_ml.online.store import OnlineStore, as_of_now
from fulqrun_ml.online.views import view_for_version
from fulqrun_ml.project import REPO_ROOT
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.codec import ID_INPUT, by_id_name
from fulqrun_ml.serving.server import TritonServer


def by_id_request_sets(ids: Sequence[str]) -> list[list[InferInput]]:
    """One single-id request per id, built once and rotated by the load generator."""
    sets = []
    for entity in ids:
        tensor = InferInput(ID_INPUT, [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[entity.encode()]], dtype=np.object_))
        sets.append([tensor])
    return sets


def record_request_sets(records: pd.DataFrame, inputs: Sequence[tuple[str, str]]) -> list[list[InferInput]]:
    """One single-record request per row, with every raw field the model takes."""
    return [
        loadgen.grpc_inputs({n: records[n].to_numpy()[i : i + 1] for n, _ in inputs}, inputs)
        for i in range(len(records))
    ]


def compare_by_id_and_record(
    server: TritonServer,
    model: str,
    ids: Sequence[str],
    records: pd.DataFrame,
    inputs: Sequence[tuple[str, str]],
    output: str = "probability",
    concurrency: int = 64,
    duration_s: float = 10.0,
    rounds: int = 2,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Alternating rounds of `<model>` (records) and `<model>_by_id` (the same deals' ids) at `concurrency`;
    the medians and their ratio (the goal: >= 0.7)."""
    sides = {
        "record": (model, record_request_sets(records, inputs)),
        "by_id": (by_id_name(model), by_id_request_sets(ids)),
    }
    points: dict[str, list[dict[str, Any]]] = {"record": [], "by_id": []}
    for _ in range(rounds):
        for side, (name, request_sets) in sides.items():
            settle_server(server, [model, by_id_name(model)])

            def run(name: str = name, request_sets: list = request_sets) -> loadgen.LoadResult:
                return loadgen.run_grpc(
                    server.grpc_url, name, request_sets, output, concurrency, 1, duration_s, timeout_s
                )

            points[side].append(measure_point(server, name, run))
    record_rps = statistics.median(p["rps"] for p in points["record"])
    by_id_rps = statistics.median(p["rps"] for p in points["by_id"])
    return {
        "protocol": "grpc",
        "concurrency": concurrency,
        "rows_per_request": 1,
        "duration_s": duration_s,
        "rounds": rounds,
        "record_rps": record_rps,
        "by_id_rps": by_id_rps,
        "by_id_over_record": round(by_id_rps / record_rps, 3) if record_rps else None,
        "goal": 0.7,
        "points": points,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fulqrun_ml.benchmarks.serving_by_id", description=__doc__)
    parser.add_argument("--models-dir", default=str(REPO_ROOT / "models"))
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--deals", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)

    version = get_version(Path(args.models_dir), args.model, args.version)
    view = view_for_version({**version.metadata, "name": version.name, "version": version.version})
    crm = simulate_crm(n_opportunities=3000, n_companies=400, n_reps=20, seed=11)
    now = as_of_now()
    as_of = crm.tables.activities["created_at"].max()
    ids = list(view.open_entities(crm.tables, as_of)[: args.deals]) if view.open_entities else []
    features = view.compute_at(crm.tables, ids, as_of)
    data_dir = f"/tmp/fulqrun-redis-bench-byid-{uuid.uuid4().hex[:8]}"
    url = service_script("redis.sh", "start", data_dir)
    try:
        store = OnlineStore(url)
        store.write(view, features.assign(as_of=now))
        store.register(view, version.name, version.version)
        with tempfile.TemporaryDirectory(prefix="fulqrun-bench-byid-") as repo:
            inputs = build_by_id_repository(version, url, Path(repo))
            with TritonServer(Path(repo)) as server:
                result = compare_by_id_and_record(
                    server,
                    version.name,
                    [str(i) for i in features[view.entity_column]],
                    features,
                    inputs,
                    concurrency=args.concurrency,
                    duration_s=args.duration,
                    rounds=args.rounds,
                )
        result["model"] = f"{version.name} v{version.version}"
        result["machine"] = machine_info()
    finally:
        service_script("redis.sh", "stop", data_dir, "--purge")
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
