"""`fulqrun-ml`: a thin dispatcher over the package (the only module allowed to import everything).

fulqrun-ml train [hydra overrides | -m ...]     train + evaluate; writes a run directory
fulqrun-ml export [--run-dir DIR]               ONNX (+ parity) -> models/<name>/<version>/
fulqrun-ml serve [overrides]                    generate the Triton repository and serve until Ctrl-C
fulqrun-ml predict --input FILE [--url ...]     score JSON-lines or CSV records through Triton
fulqrun-ml run [train overrides]                all of the above on the embedded default, with a report
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import runpy
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
import requests
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.export.package import export_run
from fulqrun_ml.export.tensorrt import PLAN_FILE
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.forecasting.export import export_forecast_run
from fulqrun_ml.machine import machine_info
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT, git_commit
from fulqrun_ml.registry.aliases import AliasChange, promote, rollback
from fulqrun_ml.registry.commands import default_models_dir, models_main
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.scoring.command import main as score_main
from fulqrun_ml.sequence.export import export_sequence_run
from fulqrun_ml.serving.client import SURVIVAL_OUTPUTS, TritonPredictionClient
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.repository import (
    TritonModelConfig,
    TritonRepositoryBuilder,
    config_for_version,
    cpu_variant,
    tensorrt_ensemble_configs,
)
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.compare import compare_main
from fulqrun_ml.training.reproduce import config_from_lineage
from fulqrun_ml.training.sweep import run_sweep
from fulqrun_ml.training.train import train

log = logging.getLogger("fulqrun_ml")


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(name, overrides=overrides)


def latest_run_dir(log_dir: Path = Path("logs")) -> Path:
    runs = sorted(log_dir.glob("*/runs/*/run_info.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FulqrunMLError(f"no finished training run under {log_dir}/; run `fulqrun-ml train` first")
    return runs[-1].parent


def _batching_options(serving: DictConfig) -> dict[str, Any]:
    """The dynamic-batching settings every variant shares (configs/serving/cpu.yaml)."""
    return {
        "max_batch_size": serving.max_batch_size,
        "max_queue_delay_microseconds": serving.max_queue_delay_microseconds,
        "preferred_batch_sizes": tuple(serving.preferred_batch_sizes),
    }


def cpu_serving_configs(version: ModelVersion, serving: DictConfig) -> list[TritonModelConfig]:
    """What this machine serves for a version: the fast endpoint and, for tabular models, the
    `<name>_reasons` endpoint. Tensor-input models (revenue forecaster, sequence fusion) get the
    python-tensor endpoint only: reasons ablate raw CRM columns, which they do not (all) take."""
    options = {
        **_batching_options(serving),
        "instance_count": serving.instance_count,
        "ort_intra_op_threads": serving.ort_intra_op_threads,
    }
    if cpu_variant(version) == "python-tensor":
        return [config_for_version(version, "python-tensor", **options)]
    return [
        config_for_version(version, "python-ort", **options),
        config_for_version(version, "python-ort", reasons_top_k=serving.reasons_top_k, **options),
    ]


def build_repositories(version: ModelVersion, serving: DictConfig, models_dir: Path) -> tuple[Path, list[str]]:
    """Write the CPU repository (served here) and the GPU-host variant (for the NGC container).

    Returns the CPU repository and the model names in it."""
    cpu_repo = models_dir / "triton_repo"
    configs = cpu_serving_configs(version, serving)
    for config in configs:
        TritonRepositoryBuilder(cpu_repo).add(version, config)
    gpu_builder = TritonRepositoryBuilder(models_dir / "triton_repo_gpu")
    if (version.path / PLAN_FILE).is_file():  # exported with --tensorrt: the ensemble around the engine
        for config in tensorrt_ensemble_configs(
            version, instance_count=serving.instance_count, **_batching_options(serving)
        ):
            gpu_builder.add(version, config)
    else:
        gpu_builder.add(
            version,
            config_for_version(
                version,
                "onnxruntime",
                tensorrt_accelerator=serving.gpu_tensorrt_accelerator,
                **_batching_options(serving),
            ),
        )
    return cpu_repo, [c.name for c in configs]


def headline(metrics: dict[str, float], digits: int = 4) -> str:
    """The metric a run is judged by: AUC for binary tasks, WAPE and interval coverage for forecasts, Harrell's C,
    integrated Brier and the median's MAE for survival, RMSE and MAE for regression."""
    if "auc" in metrics:
        return f"AUC {metrics['auc']:.{digits}f}"
    if "wape" in metrics:
        return f"WAPE {metrics['wape']:.{digits}f}, coverage@80 {metrics['coverage']:.3f}"
    if "integrated_brier" in metrics:
        return (
            f"C {metrics['concordance']:.{digits}f}, integrated Brier {metrics['integrated_brier']:.{digits}f}, "
            f"MAE(median) {metrics['mae_median_days']:.{digits}f} days"
        )
    return f"RMSE {metrics['rmse']:.{digits}f}, MAE {metrics['mae']:.{digits}f}"


def _train_main(argv: list[str]) -> None:
    @hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
    def entry(cfg: DictConfig) -> float:
        result = train(cfg)
        if "metrics" not in result:  # a DDP worker other than rank 0: rank 0 reports
            return float("nan")
        metrics = result["metrics"]  # forecasts report per level: the first level headlines
        model = metrics["model"] if "model" in metrics else next(iter(metrics.values()))["model"]
        print(f"run dir: {result['run_dir']}\nholdout {headline(model)}")
        print(f"next: fulqrun-ml export --run-dir {result['run_dir']}")
        # Hydra sweepers maximise this.
        if "integrated_brier" in model:  # survival: higher concordance is better
            return model["concordance"]
        return model["auc"] if "auc" in model else -model["wape"] if "wape" in model else -model["rmse"]

    if any(a.startswith("hparams_search=") for a in argv):
        _sweep(argv)
        return
    sys.argv = ["fulqrun-ml train", *argv]
    entry()


def _sweep(argv: list[str]) -> dict[str, Any]:
    """`train -m hparams_search=<name> [hparams_search.key=value ...] [train overrides]`: Optuna study,
    then the best trial retrained on the same data, exported, and registered as `candidate`."""
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("hparams_search="))
    search_overrides = [a.removeprefix("hparams_search.") for a in argv if a.startswith("hparams_search.")]
    train_overrides = [a for a in argv if not a.startswith("hparams_search") and a not in ("-m", "--multirun")]
    path = CONFIG_DIR / "hparams_search" / f"{name}.yaml"
    if not path.is_file():
        raise FulqrunMLError(f"no search space '{name}' ({path} does not exist)")
    search = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(search_overrides))
    base = compose_config("train", train_overrides)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(base.paths.log_dir) / base.task.name / "sweeps" / f"{name}_{stamp}"
    summary = run_sweep(search, lambda ov: compose_config("train", ov), train, out, train_overrides)
    best_cfg = compose_config("train", [*train_overrides, *summary["best_overrides"], f"paths.output_dir={out}/best"])
    best = train(best_cfg)
    models_dir = Path(best_cfg.paths.models_dir)
    version, _ = export_run(Path(best["run_dir"]), models_dir, best_cfg.task.name)
    promote(models_dir, version.name, version.version, alias="candidate", actor="sweep:" + name)
    summary["registered"] = {
        "name": version.name,
        "version": version.version,
        "alias": "candidate",
        "holdout": best["metrics"]["model"],
    }
    (out / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"sweep {name}: best {summary['metric']}={summary['best_value']:.4f} with {summary['best_overrides']}")
    print(f"registered {version.name} v{version.version} as candidate; see {out}/sweep.md and sweep.png")
    return summary


def _export(args: argparse.Namespace) -> None:
    """Publish a run with the exporter of its kind: forecasters and sequence models have their own inputs and
    graphs; every tabular task (binary or regression) goes through `export_run`."""
    run_dir = Path(args.run_dir) if args.run_dir else latest_run_dir()
    info_path = run_dir / "run_info.json"
    task = json.loads(info_path.read_text()).get("task") if info_path.is_file() else None
    special = {"revenue_forecast": export_forecast_run, "deal_win_sequence": export_sequence_run}
    if task in special:
        if args.optimize or args.quantize or args.tensorrt:
            raise FulqrunMLError(f"--optimize/--quantize/--tensorrt apply to tabular models, not to a {task} run")
        version, parity = special[task](run_dir, Path(args.models_dir), args.name or task)
    else:
        version, parity = export_run(
            run_dir, Path(args.models_dir), args.name, args.optimize, args.quantize, tensorrt=args.tensorrt
        )
    print(f"published {version.name} v{version.version} at {version.path} (parity max abs diff {parity:.2e})")


def sync_live_server(change: AliasChange, serve_overrides: list[str] | None = None) -> None:
    """After the production alias moves, make a running `fulqrun-ml serve` serve the new version.

    Triton loads the new version, then retires the old one once its in-flight requests finish."""
    if change.alias != "production" or change.to_version is None:
        return
    cfg = compose_config("serve", [f"model_name={change.name}", *(serve_overrides or [])])
    models_dir = Path(cfg.paths.models_dir)
    url = f"127.0.0.1:{cfg.serving.http_port}"
    try:
        live = requests.get(f"http://{url}/v2/health/live", timeout=10).ok
    except requests.RequestException:
        live = False
    if not live:
        print(f"no live server at {url}; the next `fulqrun-ml serve` serves v{change.to_version}")
        return
    version = get_version(models_dir, change.name, change.to_version)
    controller = ModelController(url, TritonRepositoryBuilder(models_dir / "triton_repo"))
    try:
        for config in cpu_serving_configs(version, cfg.serving):
            controller.deploy(version, config)
    finally:
        controller.close()
    print(f"live server at {url} now serves {change.name} v{change.to_version}")


def _serve(overrides: list[str]) -> None:
    if overrides and overrides[0] == "rollback":
        if len(overrides) < 2:
            raise FulqrunMLError(
                "usage: fulqrun-ml serve rollback <model> [serve overrides, e.g. serving.http_port=8000]"
            )
        models_dir = Path(compose_config("serve", overrides[2:]).paths.models_dir)
        sync_live_server(rollback(models_dir, overrides[1], actor="fulqrun-ml serve rollback"), overrides[2:])
        return
    cfg = compose_config("serve", overrides)
    models_dir = Path(cfg.paths.models_dir)
    version = get_version(models_dir, cfg.model_name, cfg.version)
    repo, model_names = build_repositories(version, cfg.serving, models_dir)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    s = cfg.serving
    # Explicit model control, so `fulqrun-ml serve rollback` can swap versions on the live server.
    with TritonServer(repo, s.http_port, s.grpc_port, s.metrics_port, explicit_models=model_names) as server:
        print(
            f"serving {version.name} v{version.version}: http {server.http_url}  grpc {server.grpc_url}  (Ctrl-C stops)"
        )
        while not stop.wait(1.0):
            if server.process is None or server.process.poll() is not None:
                raise FulqrunMLError(f"tritonserver exited:\n{server.log_tail()}")
    print("server stopped")


def read_records(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path)
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


def _predict(args: argparse.Namespace) -> None:
    records = read_records(Path(args.input))
    with TritonPredictionClient(args.url, args.model, protocol=args.protocol) as client:
        names = {name for name, _ in client.inputs}
        # Columns the model does not take (ids, say) are echoed back, not sent; a misspelled input
        # still fails, because the correctly spelled field is then missing.
        keys = [c for c in records.columns if c not in names]
        features = records[[c for c in records.columns if c in names]]
        if set(SURVIVAL_OUTPUTS) <= set(client.interface.outputs):
            timing = client.predict_close_timing(features)
            answers = [
                {
                    "expected_days": round(float(timing.expected_days[i]), 3),
                    "close_probability": {
                        f"{edge:g}d": round(float(p), 6)
                        for edge, p in zip(timing.bin_edges[1:], timing.close_probability[i], strict=True)
                    },
                }
                for i in range(len(records))
            ]
        else:
            output = client.interface.outputs[0]
            answers = [{output: round(float(p), 6)} for p in client.predict(features)]
    for i, answer in enumerate(answers):
        print(json.dumps({**{k: records[k].iloc[i] for k in keys}, **answer}, default=str))


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
    cfg = compose_config("train", [f"paths.output_dir=${{paths.log_dir}}/deal_win/runs/{stamp}", *overrides])
    result = train(cfg)
    t_trained = time.perf_counter()
    run_dir, models_dir = Path(result["run_dir"]), Path(cfg.paths.models_dir)
    version, parity = export_run(run_dir, models_dir, "deal_win")
    promote(models_dir, version.name, version.version, alias="production", actor="fulqrun-ml run")
    t_exported = time.perf_counter()

    serve_cfg = compose_config("serve", [f"paths.root_dir={cfg.paths.root_dir}"])
    repo, _ = build_repositories(version, serve_cfg.serving, models_dir)
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    open_deals = pd.read_parquet(run_dir / "open_deals.parquet")
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
        sample = open_deals.head(5)
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
    if not reasons:
        return ""
    up = ", ".join(r["field"] for r in reasons["positive"][:2])
    down = ", ".join(r["field"] for r in reasons["negative"][:2])
    return f"+ {up or '-'} / - {down or '-'}"


def print_report(report: dict[str, Any], path: Path) -> None:
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


def _reproduce(args: argparse.Namespace) -> int:
    """Retrain from the version's recorded config and data; 0 when the holdout metrics come out the same."""
    version = get_version(Path(args.models_dir), args.name, args.version)
    lineage = json.loads((version.path / "lineage.json").read_text())
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    output_dir = (
        Path(lineage["config"]["paths"]["log_dir"]) / version.name / "reproduced" / f"v{version.version}_{stamp}"
    )
    result = train(config_from_lineage(lineage, output_dir))
    recorded = json.loads((version.path / "metrics.json").read_text())["model"]
    same_data = result["data_hash"] == lineage["data_hash"]
    same = same_data and result["metrics"]["model"] == recorded
    verdict = "identical" if same else "DIFFERENT"
    print(
        f"{version.name} v{version.version}: data hash {'matches' if same_data else 'DIFFERS'}; holdout "
        f"{headline(result['metrics']['model'], 6)} vs recorded {headline(recorded, 6)}: {verdict}"
    )
    if lineage.get("git_commit", "").removesuffix("-dirty") != git_commit().removesuffix("-dirty"):
        print(f"note: recorded at commit {lineage.get('git_commit')}, now at {git_commit()}")
    return 0 if same else 1


BENCHMARKS = ("models", "serve", "score", "incremental")


def _bench(argv: list[str]) -> int:
    """Run scripts/bench_<name>.py (the benchmarks live as scripts so they can also run alone)."""
    if not argv or argv[0] not in BENCHMARKS:
        raise FulqrunMLError(f"usage: fulqrun-ml bench {{{'|'.join(BENCHMARKS)}}} [options]")
    name = {"serve": "serving"}.get(argv[0], argv[0])
    script = REPO_ROOT / "scripts" / f"bench_{name}.py"
    sys.argv = [str(script), *argv[1:]]
    sys.path.insert(0, str(script.parent))  # as when run directly: benchmarks share helpers next to them
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter logs every optimisation pass
        logging.getLogger(chatty).setLevel(logging.WARNING)
    if argv and argv[0] == "train":
        _train_main(argv[1:])
        return 0
    if argv and "=" in argv[0] and "LOCAL_RANK" in os.environ:
        # A DDP worker: Lightning re-runs this process's argv, which `train` had already reduced to the Hydra
        # overrides (plus the hydra.run.dir it pins for the worker), so the `train` command word is gone.
        _train_main(argv)
        return 0
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a model (Hydra overrides follow)")
    p_export = sub.add_parser("export", help="export a run to ONNX and publish a model version")
    p_export.add_argument("--run-dir", help="training run directory (default: the newest under logs/)")
    p_export.add_argument("--models-dir", default="models")
    p_export.add_argument("--name", help="registry model name (default: the run's task)")
    p_export.add_argument("--optimize", action="store_true", help="also write the ORT-optimised graph")
    p_export.add_argument(
        "--quantize", action="store_true", help="also write an INT8 graph; refuses to publish if AUC drops > 0.002"
    )
    p_export.add_argument(
        "--tensorrt", action="store_true", help="also build a TensorRT engine (needs the tensorrt package and a GPU)"
    )
    sub.add_parser(
        "serve",
        help="serve the registry's production model with Triton (Hydra overrides follow); "
        "`serve rollback <model>` returns a live server to the previous production version",
    )
    # Pass-through commands parse their own options (add_help=False lets `--help` reach them).
    sub.add_parser("models", add_help=False, help="the model registry: list | show | promote | rollback | diff")
    sub.add_parser(
        "runs",
        add_help=False,
        help="`runs compare [--task T] [--tag X]`: configs and metrics of training runs, with a plot",
    )
    p_reproduce = sub.add_parser("reproduce", help="retrain a registered version from its lineage and compare")
    p_reproduce.add_argument("name")
    p_reproduce.add_argument("version", help="a number, latest, production or candidate")
    p_reproduce.add_argument("--models-dir", default=default_models_dir())
    sub.add_parser("bench", add_help=False, help="`bench models|serve|score|incremental`: reports/*.json")
    sub.add_parser("score", add_help=False, help="score a whole Parquet/CSV table offline with onnxruntime")
    p_predict = sub.add_parser("predict", help="score records (JSON lines, CSV or Parquet) through Triton")
    p_predict.add_argument("--input", required=True)
    p_predict.add_argument("--url", default="127.0.0.1:8000")
    p_predict.add_argument("--model", default="deal_win")
    p_predict.add_argument("--protocol", choices=["http", "grpc"], default="http")
    sub.add_parser("run", help="the whole spine end to end with a report (train overrides follow)")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "export":
            _export(args)
        elif args.command == "serve":
            _serve(rest)
        elif args.command == "predict":
            _predict(args)
        elif args.command == "run":
            run_end_to_end(rest)
        elif args.command == "models":
            return models_main(rest, on_change=sync_live_server)
        elif args.command == "runs":
            return compare_main(rest)
        elif args.command == "bench":
            return _bench(rest)
        elif args.command == "reproduce":
            return _reproduce(args)
        elif args.command == "score":
            return score_main(rest)
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
