"""Instance count x onnxruntime intra-op threads on this machine: the serving benchmark once per setting.

Why: configs/serving/cpu.yaml has two knobs for the Python backend, `instance_count` (Triton runs that many stub
processes, each with its own onnxruntime session) and `ort_intra_op_threads` (threads inside one onnxruntime run).
On 2 cores shared by Triton's frontend, the load generator and the stubs, which one helps is an empirical
question, so each setting runs the same points as `fulqrun-ml bench serve` (model, same-input identity and the
one-tensor floor interleaved, the same instances for all three) and the report keeps each setting's model rows
with their floor ratios, measured in the same run as their floor.

    .venv/bin/python scripts/bench_serving_knobs.py --models-dir /tmp/p_models --settings 1x1,2x1,1x2

Output: reports/bench_serving_knobs.json (machine info, one entry per setting, the best by 160x64 throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from omegaconf import OmegaConf

from fulqrun_ml.benchmarks.serving import parse_points, run_benchmark
from fulqrun_ml.benchmarks.serving_identity import SERVING_CONFIG, load_serving_config
from fulqrun_ml.benchmarks.workload import configure_logging, publish_small_model
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.store import get_version

KEPT = ("model", "protocol", "concurrency", "rows_per_request", "predictions_per_s", "p99_ms", "errors")
KEPT += ("floor_ratio", "floor_p99_ratio", "server_cpu", "machine_cpu", "other_cpu", "load_average_1m")


def parse_settings(text: str) -> list[tuple[int, int]]:
    """'1x1,2x1' -> [(instances, intra-op threads), ...]."""
    settings = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        instances, _, threads = item.partition("x")
        try:
            setting = (int(instances), int(threads or 1))
        except ValueError:
            raise FulqrunMLError(f"bad setting '{item}': expected INSTANCESxTHREADS, e.g. 2x1") from None
        if min(setting) < 1:
            raise FulqrunMLError(f"bad setting '{item}': instances and threads must be >= 1")
        settings.append(setting)
    if not settings:
        raise FulqrunMLError("no settings given")
    return settings


def main(argv: list[str] | None = None) -> int:
    configure_logging()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models-dir", default=None, help="registry root (default: train a small model)")
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="latest")
    parser.add_argument("--settings", default="1x1,2x1,1x2")
    parser.add_argument("--points", default="64,160x64")
    parser.add_argument("--protocols", default="http")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--out", default="reports/bench_serving_knobs.json")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    points = parse_points(args.points)
    version = (
        publish_small_model(name=args.model)
        if args.models_dir is None
        else get_version(Path(args.models_dir), args.model, args.version)
    )
    base = load_serving_config(SERVING_CONFIG)
    started = datetime.now(UTC)
    entries, machine = [], None
    with tempfile.TemporaryDirectory(prefix="fulqrun-knobs-") as tmp:
        for instances, threads in settings:
            serving = OmegaConf.merge(base, {"instance_count": instances, "ort_intra_op_threads": threads})
            report = run_benchmark(
                version,
                Path(tmp) / f"{instances}x{threads}.json",
                points=points,
                protocols=[p.strip() for p in args.protocols.split(",") if p.strip()],
                duration_s=args.duration,
                serving=serving,
            )
            machine = machine or report["machine"]
            rows = [{k: row.get(k) for k in KEPT} for row in report["rows"]]
            entries.append({"instance_count": instances, "ort_intra_op_threads": threads, "rows": rows})
            print(f"{instances}x{threads}: " + ", ".join(_summary(r) for r in rows if r["model"] == args.model))
    big = max(points, key=lambda p: p.concurrency * p.rows_per_request)

    def throughput(entry: dict) -> float:
        return next(
            r["predictions_per_s"]
            for r in entry["rows"]
            if r["model"] == args.model
            and (r["concurrency"], r["rows_per_request"]) == (big.concurrency, big.rows_per_request)
        )

    best = max(entries, key=throughput)
    out = {
        "benchmark": "serving_knobs",
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "note": (
            "each setting is one `bench serve` run (model, identity and floor interleaved, same instances); "
            "compare floor_ratio across settings, absolute numbers drift with the shared machine's load"
        ),
        "model": {"name": version.name, "version": version.version},
        "settings": {"points": [vars(p) for p in points], "duration_s": args.duration, "base": str(SERVING_CONFIG)},
        "machine": machine,
        "results": entries,
        "best_at_largest_point": {k: best[k] for k in ("instance_count", "ort_intra_op_threads")},
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".tmp")
    partial.write_text(json.dumps(out, indent=2, default=str))
    partial.replace(target)
    print(f"wrote {target}")
    return 0


def _summary(row: dict) -> str:
    return (
        f"{row['protocol']} c={row['concurrency']}x{row['rows_per_request']} {row['predictions_per_s']:.0f} pred/s "
        f"({row['floor_ratio']:.3f} of floor)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
