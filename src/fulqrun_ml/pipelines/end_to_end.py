"""`fulqrun-ml run` (`make run`): the whole spine on the embedded default, with a report a person can read.

Synthetic CRM -> train -> export through the run's own pipeline -> promote to production -> the Triton
repository `fulqrun-ml serve` builds (`serving.deploy`) -> a real server on free loopback ports -> the open
deals scored, a bad field refused with its name while the server keeps serving, sequential latency measured,
and the top reasons of five deals. Writes reports/run.json and prints the same content as tables.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.aliases import promote
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

OPEN_DEALS_FILE = "open_deals.parquet"  # the deals open at the end of the data, written by the deal-win run
N_EXPLAINED = 5


def _measure_latency(client: TritonPredictionClient, records: list[dict[str, Any]], n: int) -> list[float]:
    """Milliseconds per single-record request, sent one after another through the client SDK."""
    timings = []
    for i in range(n):
        t0 = time.perf_counter()
        client.predict([records[i % len(records)]])
        timings.append((time.perf_counter() - t0) * 1e3)
    return timings


def run_end_to_end(overrides: list[str], n_requests: int = 1000) -> dict[str, Any]:
    """Synthetic CRM -> train -> export -> Triton -> predictions, then print and save a short report."""
    t_start = time.perf_counter()
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    cfg = compose_config("train", [f"paths.output_dir=${{paths.log_dir}}/${{task.name}}/runs/{stamp}", *overrides])
    result = train(cfg)
    t_trained = time.perf_counter()
    run_dir, models_dir = Path(result["run_dir"]), Path(cfg.paths.models_dir)
    version, parity = load_pipeline(run_dir).export(run_dir, models_dir, cfg.task.name)
    promote(models_dir, version.name, version.version, alias="production", actor="fulqrun-ml run")
    t_exported = time.perf_counter()

    serve_cfg = compose_config("serve", [f"paths.root_dir={cfg.paths.root_dir}"])
    repo, _ = build_repositories(version, serve_cfg.serving, models_dir)
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    open_deals = read_snapshot(run_dir / OPEN_DEALS_FILE)
    records = open_deals[spec.spec.names].to_dict(orient="records")
    # Free loopback ports, so a running `serve` never collides.
    with TritonServer(repo) as server, TritonPredictionClient(server.http_url, version.name) as client:
        served = client.predict(open_deals[spec.spec.names])
        bad = {**records[0], "value": float("nan")}
        try:
            client.predict([bad])
            bad_field_error = None
        except FieldValidationError as exc:
            bad_field_error = str(exc)
        healthy_after_bad = server.is_ready() and len(client.predict(records[:1])) == 1
        latencies = _measure_latency(client, records, n_requests)
        sample = open_deals.head(N_EXPLAINED)
        with TritonPredictionClient(server.http_url, f"{version.name}_reasons") as explainer:
            explained = explainer.predict_detailed(sample[spec.spec.names])
    local = onnx_probabilities(version.path / "model.onnx", spec, open_deals)

    report = {
        "model": {"name": version.name, "version": version.version, "path": str(version.path)},
        "run_dir": str(run_dir),
        "wandb_run_id": result["wandb_run_id"],
        "data": result["sizes"],
        "metrics": result["metrics"],
        "parity_max_abs_diff": parity,
        "served_vs_onnxruntime_max_abs_diff": float(np.max(np.abs(served - local))),
        "serving": {
            "protocol": "http",
            "n_requests": len(latencies),
            "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99)),
            "mean_ms": float(np.mean(latencies)),
            "bad_field_error": bad_field_error,
            "healthy_after_bad_request": bool(healthy_after_bad),
            "triton_repository": str(repo),
        },
        "predictions": [
            {
                "opportunity_id": row.opportunity_id,
                "stage": row.stage,
                "value": round(float(row.value), 2),
                "rep_probability": float(row.rep_probability),
                "model_probability": round(float(p.probability), 4),
                "model_version": p.model_version,
                "reasons": p.reasons,
            }
            for row, p in zip(sample.itertuples(), explained, strict=True)
        ],
        "seconds": {
            "train": round(t_trained - t_start, 1),
            "export": round(t_exported - t_trained, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },
        "machine": machine_info(),
    }
    reports_dir = Path(cfg.paths.reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / "run.json").write_text(json.dumps(report, indent=2, default=str))
    print_report(report, reports_dir / "run.json")
    return report


def _reason_summary(reasons: dict[str, list[dict[str, Any]]] | None) -> str:
    """'+ a, b / - c, d': the two fields pushing a probability most up and most down."""
    if not reasons:
        return ""
    up = ", ".join(r["field"] for r in reasons["positive"][:2])
    down = ", ".join(r["field"] for r in reasons["negative"][:2])
    return f"+ {up or '-'} / - {down or '-'}"


def print_report(report: dict[str, Any], path: Path) -> None:
    """The report as a person reads it: data sizes, holdout table, parity, latency, the scored open deals."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    data = report["data"]
    console.rule("[bold]FulQrun ML - deal win, end to end")
    console.print(
        f"data: {data['opportunities']:,} opportunities, {data['activities']:,} activities -> "
        f"{data['snapshots']:,} point-in-time snapshots (train {data['train_rows']:,} / val {data['val_rows']:,} / "
        f"test {data['test_rows']:,}; {data['embargoed']:,} embargoed)"
    )
    table = Table(title="holdout (latest period)")
    for column in ("", "AUC", "log loss", "Brier", "ECE", "accuracy"):
        table.add_column(column, justify="right")
    for who, label in (
        ("model", "model (calibrated)"),
        ("model_uncalibrated", "model before calibration"),
        ("rep", "rep's probability"),
        ("oracle", "oracle (latent truth)"),
    ):
        m = report["metrics"].get(who)
        if m:
            table.add_row(label, *(f"{m[k]:.4f}" for k in ("auc", "log_loss", "brier", "ece", "accuracy")))
    console.print(table)
    serving = report["serving"]
    console.print(
        f"export parity (PyTorch vs ONNX): {report['parity_max_abs_diff']:.2e}   "
        f"served vs onnxruntime: {report['served_vs_onnxruntime_max_abs_diff']:.2e}"
    )
    console.print(
        f"Triton ({report['model']['name']} v{report['model']['version']}): {serving['n_requests']} sequential "
        f"requests, p50 {serving['p50_ms']:.2f} ms, p99 {serving['p99_ms']:.2f} ms"
    )
    console.print(
        f"bad field -> {serving['bad_field_error']!r}; server healthy after: {serving['healthy_after_bad_request']}"
    )
    predictions = Table(title="open deals scored by Triton")
    for column in ("opportunity", "stage", "value", "rep", "model", "top reasons (+ / -)"):
        predictions.add_column(column)
    for p in report["predictions"]:
        predictions.add_row(
            p["opportunity_id"][:8],
            p["stage"],
            f"{p['value']:,.0f}",
            f"{p['rep_probability']:.2f}",
            f"{p['model_probability']:.3f}",
            _reason_summary(p["reasons"]),
        )
    console.print(predictions)
    console.print(f"took {report['seconds']['total']:.0f} s; report: {path}; model: {report['model']['path']}")
