"""Issue 17 item 1, measured: a user event table through `task=events`, fusion vs LightGBM vs the ablations.

For each seed, the purchases/churn fixture (`data/event_fixture.py`, drawn with that seed) is written as CSV
files and trained through the real spine (`train` with `task=events`): the fused model, its aggregates-only and
sequence-only networks (same seed, recipe and split) and LightGBM on the same aggregates and split. Per arm the
holdout AUC and log loss are summarised over seeds (mean, 95% t-interval), with the paired difference fusion minus
LightGBM (the issue's goal: fusion >= LightGBM) and the training time. The first seed's model is exported,
served by a real Triton (the python-tensor backend, the repository `fulqrun-ml serve` builds) and timed through
the SDK: sequential single-query requests with prebuilt inputs, and the time to build a query's inputs from the
raw files. Writes reports/sequence_user_events.{json,md}.

    python scripts/bench_events.py --seeds 0 1 2 --customers 1500
    python scripts/bench_events.py --pretraining --sizes 200 500 1000    (benchmarks/sequence_event_pretrain.py)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.benchmarks import sequence_event_pretrain
from fulqrun_ml.benchmarks.leaderboard_stats import t_interval
from fulqrun_ml.data.event_fixture import write_event_fixture
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import REPO_ROOT, compose_config
from fulqrun_ml.sequence.event_export import event_outputs
from fulqrun_ml.sequence.event_inputs import event_model_inputs
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

ARMS = ("model", "aggregates_only", "sequence_only", "lightgbm")
LABELS = {
    "model": "fusion (sequence + aggregates)",
    "aggregates_only": "aggregates only (network)",
    "sequence_only": "sequence only (network)",
    "lightgbm": "LightGBM on the aggregates",
}
REPORT = "sequence_user_events"


def overrides(events: Path, labels: Path, out: Path, models: Path, seed: int, args: argparse.Namespace) -> list[str]:
    """The documented command's overrides, plus the CPU-sized recipe this study states in its report."""
    return [
        "task=events",
        "model=event_fusion",
        f"data.events_path={events}",
        f"data.labels_path={labels}",
        "data.entity_col=customer_id",
        "data.time_col=ts",
        "data.target=churned",
        "data.as_of_col=as_of",
        "data.embargo_days=60",  # the labels look 60 days ahead
        f"data.max_len={args.max_len}",
        f"trainer.max_epochs={args.max_epochs}",
        f"callbacks.early_stopping.patience={args.patience}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"seed={seed}",
        f"paths.output_dir={out}",
        f"paths.models_dir={models}",
    ]


def run_seed(seed: int, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    events, labels = write_event_fixture(root / f"data_{seed}", n_customers=args.customers, seed=seed)
    t0 = time.perf_counter()
    result = train(
        compose_config("train", overrides(events, labels, root / f"run_{seed}", root / "models", seed, args))
    )
    seconds = time.perf_counter() - t0
    metrics = result["metrics"]
    return {
        "seed": seed,
        "run_dir": result["run_dir"],
        "events": str(events),
        "labels": str(labels),
        "sizes": result["sizes"],
        "train_seconds": round(seconds, 1),
        "fit_seconds": result["seconds"]["fit"],
        "lightgbm_fit_seconds": metrics["lightgbm"].get("fit_seconds"),
        "epochs": result["epochs"],
        "metrics": {who: {k: metrics[who][k] for k in ("auc", "log_loss", "brier", "ece")} for who in ARMS},
    }


def serve_and_time(first: dict[str, Any], root: Path, n_requests: int) -> dict[str, Any]:
    """Export the first seed's run, serve it, and time single-query requests through the SDK."""
    run = Path(first["run_dir"])
    models = root / "models"
    t0 = time.perf_counter()
    version, parity = load_pipeline(run).export(run, models, "events")
    export_seconds = time.perf_counter() - t0
    queries = root / "queries.csv"
    pd.read_csv(first["labels"]).drop(columns=["churned", "spend_next"]).tail(200).to_csv(queries, index=False)
    t0 = time.perf_counter()
    inputs = event_model_inputs(version.path, first["events"], queries)
    build_ms_per_query = (time.perf_counter() - t0) * 1e3 / len(inputs.queries)
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    local = event_outputs((version.path / "model.onnx").read_bytes(), spec, inputs.records, inputs.sequences)
    cfg = compose_config("serve", [f"paths.models_dir={models}"])
    repo, _ = build_repositories(version, cfg.serving, models)
    with TritonServer(repo) as server, TritonPredictionClient(server.http_url, "events") as client:
        served = client.predict(inputs.records, sequences=inputs.sequences)
        timings = []
        for i in range(n_requests):
            row = i % len(inputs.queries)
            one = {k: v[row : row + 1] for k, v in inputs.sequences.items()}
            t = time.perf_counter()
            client.predict(inputs.records.iloc[row : row + 1], sequences=one)
            timings.append((time.perf_counter() - t) * 1e3)
    return {
        "version": f"{version.name}@{version.version}",
        "export_seconds": round(export_seconds, 1),
        "parity_max_abs_diff": parity,
        "served_vs_onnxruntime_max_abs_diff": float(np.max(np.abs(served - local))),
        "protocol": "http",
        "backend": "python-tensor",
        "n_requests": n_requests,
        "p50_ms": round(float(np.percentile(timings, 50)), 3),
        "p99_ms": round(float(np.percentile(timings, 99)), 3),
        "mean_ms": round(float(np.mean(timings)), 3),
        "input_build_ms_per_query": round(build_ms_per_query, 3),
    }


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"arms": {}}
    for who in ARMS:
        summary["arms"][who] = {
            "label": LABELS[who],
            **{m: t_interval([s["metrics"][who][m] for s in per_seed]) for m in ("auc", "log_loss")},
        }
    for other in ("lightgbm", "aggregates_only", "sequence_only"):
        diff = [s["metrics"]["model"]["auc"] - s["metrics"][other]["auc"] for s in per_seed]
        summary[f"fusion_minus_{other}_auc"] = t_interval(diff)
    gap = summary["fusion_minus_lightgbm_auc"]
    summary["goal"] = {
        "text": "fusion AUC >= LightGBM AUC on the derived aggregates",
        # bool(): numpy booleans reach the JSON as the string "False", which reads back as true.
        "met_on_mean": bool(gap["mean"] >= 0),
        "ci_excludes_a_loss": bool(gap["ci95"] is not None and gap["ci95"][0] >= 0),
    }
    summary["train_seconds"] = t_interval([s["train_seconds"] for s in per_seed])
    return summary


def markdown(report: dict[str, Any]) -> str:
    s, serving = report["summary"], report.get("serving")
    lines = [
        "# A user event table: purchases and churn (issue 17, item 1)",
        "",
        f"Generated by `python scripts/bench_events.py` ({report['config']}). Fixture: `data/event_fixture.py` "
        "(declining purchase frequency, a drift to the `sale` category and smaller baskets precede churn; see "
        "docs/simulator.md, 'Event-table fixture'). Each seed draws new data and a new initialisation; the split "
        "is by time (labels every 30 days; 60-day embargo before the test dates).",
        "",
        "| arm | holdout AUC (mean, 95% CI) | log loss |",
        "|---|---|---|",
    ]
    for arm in s["arms"].values():
        auc, ll = arm["auc"], arm["log_loss"]
        ci = f" [{auc['ci95'][0]:.4f}, {auc['ci95'][1]:.4f}]" if auc["ci95"] else ""
        lines.append(f"| {arm['label']} | {auc['mean']:.4f}{ci} | {ll['mean']:.4f} |")
    lines += ["", "Paired differences in AUC (same seed, same rows):", ""]
    for other in ("lightgbm", "aggregates_only", "sequence_only"):
        d = s[f"fusion_minus_{other}_auc"]
        ci = f" (95% CI [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}])" if d["ci95"] else ""
        lines.append(f"- fusion − {LABELS[other]}: {d['mean']:+.4f}{ci}")
    goal = s["goal"]
    lines += [
        "",
        f"**Goal** ({goal['text']}): {'met' if goal['met_on_mean'] else 'missed'} on the mean; the interval "
        f"{'excludes' if goal['ci_excludes_a_loss'] else 'does not exclude'} a loss.",
        "",
        f"Training time per seed (all three networks + LightGBM, wall clock on the shared machine below): "
        f"{s['train_seconds']['mean']:.0f} s mean.",
    ]
    if serving:
        lines += [
            "",
            f"Served ({serving['version']}, Triton {serving['backend']} backend, {serving['protocol']}, one query per "
            f"request through the SDK, {serving['n_requests']} requests): p50 {serving['p50_ms']:.2f} ms, p99 "
            f"{serving['p99_ms']:.2f} ms. Building a query's inputs from the raw files (validation, cut, aggregates, "
            f"sequences): {serving['input_build_ms_per_query']:.2f} ms per query in a batch of 200. Export parity "
            f"{serving['parity_max_abs_diff']:.1e}; served vs onnxruntime "
            f"{serving['served_vs_onnxruntime_max_abs_diff']:.1e}.",
        ]
    lines += ["", *sequence_event_pretrain.markdown_lines(report.get("pretraining"))]
    lines += sequence_event_pretrain.markdown_lines(report.get("pretraining_suffix"))
    lines += [f"Machine: {report['machine'].get('cpu_model')} ({report['machine'].get('cpu_count')} CPUs), "
              f"load average (1, 5, 15 min) {report['machine'].get('load_average_1m_5m_15m')}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--customers", type=int, default=1500)
    parser.add_argument("--max-len", type=int, default=32)
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--reports-dir", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--pretraining", action="store_true", help="run the CoLES pretraining study instead")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[200, 500, 1000], help="--pretraining: labelled entities"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=30, help="--pretraining: CoLES epochs")
    parser.add_argument("--data-seed", type=int, default=0, help="--pretraining: the fixture draw")
    parser.add_argument("--threads", type=int, default=1, help="--pretraining: torch threads")
    parser.add_argument("--slices", choices=("random", "suffix"), default="random", help="--pretraining: CoLES views")
    parser.add_argument(
        "--reuse-scratch",
        action="store_true",
        help="--pretraining --slices suffix: scratch/LightGBM from `pretraining`",
    )
    args = parser.parse_args(argv)
    if args.pretraining:
        return sequence_event_pretrain.main(args, args.reports_dir, REPORT, markdown)
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp:
        root = Path(tmp)
        per_seed = [run_seed(seed, root, args) for seed in args.seeds]
        serving = None if args.no_serve else serve_and_time(per_seed[0], root, args.requests)
    report = {
        "config": (
            f"seeds {args.seeds}, {args.customers} customers, max_len {args.max_len}, at most {args.max_epochs} "
            f"epochs, patience {args.patience}"
        ),
        "per_seed": [{k: v for k, v in s.items() if k not in ("run_dir", "events", "labels")} for s in per_seed],
        "summary": summarise(per_seed),
        "serving": serving,
        "machine": machine_info(),
    }
    previous = args.reports_dir / f"{REPORT}.json"
    if previous.is_file():  # the pretraining studies' sections are their own; kept
        kept = json.loads(previous.read_text())
        report.update({k: v for k, v in kept.items() if k.startswith("pretraining")})
    args.reports_dir.mkdir(parents=True, exist_ok=True)
    (args.reports_dir / f"{REPORT}.json").write_text(json.dumps(report, indent=2, default=str))
    (args.reports_dir / f"{REPORT}.md").write_text(markdown(report))
    print(markdown(report))
    return 0
