"""Served latency of next best action: `nba_uplift_actions` (top-k actions with reasons) next to the plain deal-win
model and the raw per-arm uplift graph `nba_uplift`, in ONE Triton server and ONE run (issue 14, item 8).

Writes the `served` section of reports/bench_recommendations.json (read, replace `served` only, atomic write) and
reports/bench_recommendations_served.png. Each point: gRPC (tritonclient asyncio, the project's loadgen), one deal
per request, `concurrency` requests in flight for `--duration` seconds, p50/p99 over every answered request, plus
the server's, client's and the rest of the machine's CPU and Triton's own queue/compute times (serving_measure).

What is measured is what `fulqrun-ml serve` serves: the repository is built by `serving.deploy.cpu_serving_configs`
with configs/serving/cpu.yaml (the prediction log off for all three, so no model pays for a spool the others skip).
Latency depends on the architecture, not on how long it trained: both models are the default architectures
(nba_uplift: 3 ensemble members) trained briefly on a small simulated CRM.

    .venv/bin/python scripts/bench_recommend_serving.py [--duration 8] [--k 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import requests
from matplotlib.figure import Figure  # no pyplot: no GUI backend on a headless machine
from tritonclient.grpc import InferInput

from fulqrun_ml.benchmarks import loadgen
from fulqrun_ml.benchmarks.serving_identity import load_serving_config
from fulqrun_ml.benchmarks.serving_measure import bench_machine, tree_cpu_seconds
from fulqrun_ml.benchmarks.workload import BENCH_ROOT, benchmark_records, configure_logging, publish_small_model
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import REPO_ROOT, compose_config
from fulqrun_ml.recommend.actions import CATEGORICAL_STATE, NUMERIC_STATE
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.serving.access import CONTROL_HEADER
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.nba import K_INPUT, OUTPUT, actions_name
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

log = logging.getLogger("bench_recommend_serving")
REPORT = REPO_ROOT / "reports" / "bench_recommendations.json"
PNG = REPO_ROOT / "reports" / "bench_recommendations_served.png"
GOAL_P99_MS = 20.0
CONCURRENCIES = (1, 64)
REQUEST_SETS = 64  # different deals cycled through by the clients
NBA_MODEL = (
    "task=nba_uplift",
    "task.datamodule.crm.n_opportunities=4000",
    "task.datamodule.crm.n_companies=570",
    "task.datamodule.crm.n_reps=20",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
)


def publish_nba(root: Path) -> ModelVersion:
    """Train the default next-best-action effect model briefly and publish it (what `fulqrun-ml export` does)."""
    run_dir = root / "runs" / datetime.now().strftime("nba_%Y-%m-%d_%H-%M-%S")
    cfg = compose_config("train", [f"paths.output_dir={run_dir}", f"paths.root_dir={root}", *NBA_MODEL])
    result_dir = Path(train(cfg)["run_dir"])
    version, _ = load_pipeline(result_dir).export(result_dir, root / "models")
    return version


def nba_request_sets(states: pd.DataFrame, k: int | None) -> list[list[InferInput]]:
    """One deal per request, as gRPC tensors; with `k`, the actions endpoint's extra INT64 input."""
    sets = []
    for r in range(REQUEST_SETS):
        row = states.iloc[r % len(states)]
        arrays = [(n, np.array([[row[n]]], dtype=np.float32), "FP32") for n in NUMERIC_STATE]
        arrays += [(n, np.array([[str(row[n])]], dtype=object), "BYTES") for n in CATEGORICAL_STATE]
        if k is not None:
            arrays.append((K_INPUT, np.array([[k]], dtype=np.int64), "INT64"))
        tensors = []
        for name, array, datatype in arrays:
            tensor = InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        sets.append(tensors)
    return sets


def plan(deal_win: ModelVersion, nba: ModelVersion, k: int) -> dict[str, tuple[list, str]]:
    """model -> (request sets, the output to ask for)."""
    records = benchmark_records(deal_win, REQUEST_SETS)
    inputs = [(i["name"], {"float32": "FP32", "string": "BYTES"}[i["dtype"]]) for i in deal_win.metadata["inputs"]]
    win_sets = [
        loadgen.grpc_inputs({c: records[c].to_numpy()[[r]] for c in records.columns}, inputs)
        for r in range(REQUEST_SETS)
    ]
    states = benchmark_records(nba, REQUEST_SETS)  # the run's holdout deal states
    return {
        deal_win.name: (win_sets, deal_win.metadata["outputs"][0]["name"]),
        nba.name: (nba_request_sets(states, None), "uplift"),
        actions_name(nba.name): (nba_request_sets(states, k), OUTPUT),
    }


def triton_stats(server: TritonServer, model: str) -> dict[str, float]:
    """Triton's counters for `model`. Statistics are a restricted API (serving/access.py): the request carries the
    control key. Why not serving_measure.measure_point: its statistics calls do not send the key (yet), so they fail
    against a server started by TritonServer; this is the same measurement with the header."""
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    stats = requests.get(url, headers={CONTROL_HEADER: server.control_key}, timeout=10).json()["model_stats"][0]
    inference = stats["inference_stats"]
    return {
        "inference_count": float(stats["inference_count"]),
        "execution_count": float(stats["execution_count"]),
        "queue_ns": float(inference["queue"]["ns"]),
        "compute_ns": float(inference["compute_infer"]["ns"]),
        "compute_count": float(inference["compute_infer"]["count"]),
    }


def measure(server: TritonServer, model: str, run: Any) -> dict[str, Any]:
    """One load run plus the server's CPU (process tree) and Triton's average batch, queue and compute times."""
    time.sleep(1.0)  # let the previous point's stragglers drain (64 in flight at most: no large backlog)
    process = psutil.Process(server.process.pid)
    before, cpu_before, t0 = triton_stats(server, model), tree_cpu_seconds(process), time.monotonic()
    result = run()
    wall = time.monotonic() - t0
    after = triton_stats(server, model)
    d = {key: after[key] - before[key] for key in before}
    row = {"model": model, **result.to_dict()}
    row["server_cpu"] = round((tree_cpu_seconds(process) - cpu_before) / wall, 3)
    row["server_avg_batch_rows"] = (
        round(d["inference_count"] / d["execution_count"], 2) if d["execution_count"] else None
    )
    row["server_queue_ms"] = round(d["queue_ns"] / d["inference_count"] * 1e-6, 3) if d["inference_count"] else None
    row["server_compute_ms"] = round(d["compute_ns"] / d["compute_count"] * 1e-6, 3) if d["compute_count"] else None
    row["load_average_1m"] = round(os.getloadavg()[0], 2)
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    return {
        m: {
            f"concurrency_{r['concurrency']}": {"p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "rps": r["rps"]}
            for r in rows
            if r["model"] == m
        }
        for m in dict.fromkeys(r["model"] for r in rows)
    }


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, len(CONCURRENCIES))
    for ax, c in zip(axes, CONCURRENCIES, strict=True):
        models = list(summary)
        x = np.arange(len(models))
        for offset, key in ((-0.2, "p50_ms"), (0.2, "p99_ms")):
            values = [summary[m].get(f"concurrency_{c}", {}).get(key) or 0 for m in models]
            ax.bar(x + offset, values, 0.4, label=key.replace("_ms", ""))
        if c == 1:
            ax.axhline(GOAL_P99_MS, color="red", linestyle="--", label=f"goal p99 {GOAL_P99_MS:.0f} ms")
        ax.set_xticks(x, models, rotation=15)
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"concurrency {c}")
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per point")
    parser.add_argument("--k", type=int, default=5, help="actions per deal asked of the actions endpoint")
    parser.add_argument("--reuse", action="store_true", help="serve the versions a previous run published")
    parser.add_argument("--root", default=str(BENCH_ROOT / "recommend_serving"), help="work directory")
    args = parser.parse_args()
    configure_logging()
    root = Path(args.root)
    if args.reuse and (root / "models" / "nba_uplift").is_dir():
        deal_win, nba = (get_version(root / "models", n, "latest") for n in ("deal_win", "nba_uplift"))
    else:
        deal_win, nba = publish_small_model(root, name="deal_win"), publish_nba(root)
    serving = dict(load_serving_config())
    serving["prediction_log"] = {"enabled": False}
    repo = root / "triton_repo"
    configs = [*cpu_serving_configs(deal_win, serving), *cpu_serving_configs(nba, serving)]
    builder = TritonRepositoryBuilder(repo)
    for config in configs:
        builder.add(deal_win if config.name.startswith(deal_win.name) else nba, config)
    requests_by_model = plan(deal_win, nba, args.k)
    load_before = os.getloadavg()
    rows = []
    with TritonServer(repo, explicit_models=[c.name for c in configs]) as server:
        server_version = requests.get(f"http://{server.http_url}/v2", timeout=10).json().get("version")
        for concurrency in CONCURRENCIES:
            for model, (sets, output) in requests_by_model.items():
                row = measure(
                    server,
                    model,
                    lambda m=model, s=sets, o=output, c=concurrency: loadgen.run_grpc(
                        server.grpc_url, m, s, o, c, 1, args.duration, timeout_s=30.0
                    ),
                )
                rows.append(row)
                log.info(
                    "%s c=%d: p50 %s ms p99 %s ms (%s errors)",
                    model,
                    concurrency,
                    row["p50_ms"],
                    row["p99_ms"],
                    row["errors"],
                )
    load_after = os.getloadavg()
    summary = summarise(rows)
    served_p99 = summary[actions_name(nba.name)]["concurrency_1"]["p99_ms"]
    served = {
        "served_p99_ms": served_p99,
        "goal_p99_ms_at_concurrency_1": GOAL_P99_MS,
        "goal_met": served_p99 is not None and served_p99 <= GOAL_P99_MS,
        "endpoint": actions_name(nba.name),
        "compared_with": [deal_win.name, nba.name],
        "summary": summary,
        "rows": rows,
        "k": args.k,
        "protocol": "grpc",
        "rows_per_request": 1,
        "duration_s_per_point": args.duration,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "machine": bench_machine(None, server_version, (0, 0), load_before),
        "note": (
            "one Triton server, one run: deal_win (python-ort), nba_uplift (per-arm uplift graph, python-tensor) and "
            "nba_uplift_actions (graph + FeatureSpec encoder + support mask + ranking of 336 actions + reasons, "
            "python-nba); prediction log off for all; load generator on the same shared 2 cores"
        ),
    }
    report = json.loads(REPORT.read_text()) if REPORT.is_file() else {}
    report["served"] = served
    # Atomic, and formatted like scripts/bench_recommendations.py writes the other sections (insertion order, not
    # atomic_write_json's sorted keys), so replacing `served` leaves their bytes unchanged.
    atomic_write_text(REPORT, json.dumps(report, indent=2))
    title = (
        f"served latency, 1 deal/request, gRPC, k={args.k}; load avg before {load_before[0]:.1f} "
        f"after {load_after[0]:.1f} on {os.cpu_count()} cores"
    )
    plot(summary, PNG, title)
    print(json.dumps({"served_p99_ms": served_p99, "summary": summary, "load": [load_before, load_after]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
