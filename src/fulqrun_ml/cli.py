"""`fulqrun-ml`: a thin dispatcher over the package (the only module allowed to import everything).

fulqrun-ml train [hydra overrides | -m hparams_search=...]   train + evaluate; writes a run directory
fulqrun-ml export [--run-dir DIR | --task TASK]              ONNX (+ parity) -> models/<name>/<version>/
fulqrun-ml serve [overrides]                                 serve the production alias with Triton until Ctrl-C
fulqrun-ml predict --input FILE [--url ...]                  score JSON-lines, CSV or Parquet records through Triton
fulqrun-ml predict --ids a,b,c|FILE [--url ...]              score entities by id (features from the online store)
fulqrun-ml predict --meddpicc FILE [--url ...]               deals with MEDDPICC history + note text (deal_win_meddpicc)
fulqrun-ml predict --series FILE --model-dir DIR --output F   future quantiles per series (an exported forecaster)
fulqrun-ml predict --events E.csv --queries Q.csv --model-dir DIR [--url ...] --model events   event histories
fulqrun-ml run [train overrides]                             all of the above on the embedded default, with a report
fulqrun-ml optimize territories|assignment [options]         territory design and rep-account assignment (HiGHS)
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.pipelines import load_pipeline
from fulqrun_ml.pipelines.end_to_end import run_end_to_end
from fulqrun_ml.pipelines.sweep import is_sweep, sweep_and_register, sweep_report
from fulqrun_ml.project import CONFIG_DIR, compose_config
from fulqrun_ml.registry.aliases import AliasChange, rollback
from fulqrun_ml.registry.commands import default_models_dir, models_main
from fulqrun_ml.registry.run_record import finished_runs
from fulqrun_ml.scoring.command import main as score_main
from fulqrun_ml.serving.deploy import serve_until_stopped, sync_live_server
from fulqrun_ml.serving.predict import predict_file, predict_ids
from fulqrun_ml.training.compare import compare_main
from fulqrun_ml.training.config_checks import override_problem
from fulqrun_ml.training.reproduce import reproduce_version
from fulqrun_ml.training.train import train

# `fulqrun-ml bench <name>` -> fulqrun_ml.benchmarks.<module>.main(argv)
# Pass-through command groups that parse their own options: `fulqrun-ml <group> ...` -> <module>.main(argv).
COMMAND_GROUPS = {
    "online": (
        "fulqrun_ml.online.commands",
        "the real-time feature store: redis | materialise | backfill | stream | skew | cdc | demo",
    ),
    "monitor": (
        "fulqrun_ml.monitoring.commands",
        "production monitoring: ship | watch | drift | performance | alerts | automations | simulate | refresh",
    ),
    "governance": (
        "fulqrun_ml.erasure.cli",
        "compliance: report <model> <version> | forget --contact/--company ID (erasure) | scan (PII in every store)",
    ),
    "experiment": ("fulqrun_ml.monitoring.experiments", "A/B experiments: assign | analyse | simulate"),
    "optimize": (
        "fulqrun_ml.optimize.commands",
        "territories | assignment | routes | coverage: solvers on CRM estimates",
    ),
    "recommend": (
        "fulqrun_ml.recommend.commands",
        "next best actions for open deals, and pricing | coaching | strategy insights",
    ),
    "analytics": (
        "fulqrun_ml.analytics.commands",
        "pipeline | competitive | forecast-pipeline | benchmark: pipeline health, market, DP peer benchmark",
    ),
    "similar": ("fulqrun_ml.search.commands", "won deals most like this one, and what they did next (vector search)"),
    "insights": ("fulqrun_ml.insights.commands", "deal summary | risk | next steps: offline writer or grounded LLM"),
    "pretrain": (
        "fulqrun_ml.pipelines.pretrain",
        "CoLES-pretrain a sequence-fusion task's encoder and publish it (train overrides follow; init_from it)",
    ),
    "dashboard": (
        "fulqrun_ml.dashboard.app",
        "the analytics web app on 127.0.0.1 (--port, --models-dir, --triton, --views-dsn-env, --insights-config)",
    ),
    "deploy": (
        "fulqrun_ml.serving.k8s_commands",
        "`deploy k8s --out DIR --s3 s3://bucket/prefix`: validated Kubernetes manifests for a registry version",
    ),
    "federated": ("fulqrun_ml.federated.train", "federated train: FedAvg/FedProx across organisations' processes"),
}
BENCHMARKS = {"models": "leaderboard", "serve": "serving", "score": "scoring", "incremental": "incremental"}
DEFAULT_EXPORT_TASK = "deal_win"


def _train(argv: list[str]) -> None:
    if is_sweep(argv):
        print(sweep_report(*sweep_and_register(argv)))
        return

    failures: list[BaseException] = []

    @hydra.main(config_path=str(CONFIG_DIR), config_name="train", version_base="1.3")
    def entry(cfg: DictConfig) -> float:
        try:
            result = train(cfg)
        except Exception as exc:  # our errors carry a one-line message: print it, not Hydra's traceback
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, FulqrunMLError):
                cause = cause.__cause__  # Hydra wraps what a config node's constructor raised
            if cause is None:
                raise
            failures.append(cause)
            return float("nan")
        if "metrics" not in result:  # a DDP worker other than rank 0: rank 0 reports
            return float("nan")
        pipeline = load_pipeline(Path(result["run_dir"]))
        print(f"run dir: {result['run_dir']}\nholdout {pipeline.headline(result['metrics'])}")
        print(f"next: fulqrun-ml export --run-dir {result['run_dir']}")
        return pipeline.objective(result["metrics"])  # what Hydra sweepers maximise

    if problem := override_problem(argv):  # one Hydra crashes on with a traceback (training/config_checks.py)
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    sys.argv = ["fulqrun-ml train", *argv]
    entry()
    if failures:
        print(f"error: {failures[0]}", file=sys.stderr)
        raise SystemExit(2)


def _export(args: argparse.Namespace) -> None:
    if args.run_dir:
        run_dir = Path(args.run_dir)
    else:
        log_dir = Path(os.environ.get("FULQRUN_ROOT", ".")) / "logs"
        runs = finished_runs(log_dir, args.task)
        if not runs:
            raise FulqrunMLError(f"no finished {args.task} run under {log_dir}/; run `fulqrun-ml train` first")
        run_dir = runs[-1]
        print(f"exporting the newest finished {args.task} run: {run_dir}")
    version, parity = load_pipeline(run_dir).export(
        run_dir,
        Path(args.models_dir),
        args.name,
        optimize=args.optimize,
        quantize=args.quantize,
        tensorrt=args.tensorrt,
    )
    print(f"published {version.name} v{version.version} at {version.path} (parity max abs diff {parity:.2e})")


def _on_alias_change(change: AliasChange, serve_overrides: list[str] | None = None) -> None:
    """After promote/rollback: a live `fulqrun-ml serve` on this machine switches to the new production version."""
    cfg = compose_config("serve", [f"model_name={change.name}", *(serve_overrides or [])])
    message = sync_live_server(change, Path(cfg.paths.models_dir), cfg.serving)
    if message:
        print(message)


def _serve(overrides: list[str]) -> None:
    if overrides and overrides[0] == "rollback":
        if len(overrides) < 2:
            raise FulqrunMLError(
                "usage: fulqrun-ml serve rollback <model> [serve overrides, e.g. serving.http_port=8000]"
            )
        models_dir = Path(compose_config("serve", overrides[2:]).paths.models_dir)
        _on_alias_change(rollback(models_dir, overrides[1], actor="fulqrun-ml serve rollback"), overrides[2:])
        return
    replicas, overrides = _pop_replicas(overrides)
    cfg = compose_config("serve", overrides)
    serve_until_stopped(Path(cfg.paths.models_dir), cfg.model_name, cfg.version, cfg.serving, replicas=replicas)


def _pop_replicas(overrides: list[str]) -> tuple[int, list[str]]:
    """`serve --replicas N` (or `--replicas=N`) out of the Hydra overrides; 1 when absent."""
    rest, replicas, it = [], "1", iter(overrides)
    for arg in it:
        if arg == "--replicas":
            replicas = next(it, "")
        elif arg.startswith("--replicas="):
            replicas = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if not replicas.isdigit() or int(replicas) < 1:
        raise FulqrunMLError(f"--replicas must be a positive integer, got {replicas!r}")
    return int(replicas), rest


def _bench(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        raise FulqrunMLError(f"usage: fulqrun-ml bench {{{'|'.join(BENCHMARKS)}}} [options]")
    benchmark = importlib.import_module(f"fulqrun_ml.benchmarks.{BENCHMARKS[argv[0]]}")
    return int(benchmark.main(argv[1:]) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train", help="train a model (Hydra overrides follow)")
    p_export = sub.add_parser("export", help="export a run to ONNX and publish a model version")
    which = p_export.add_mutually_exclusive_group()
    which.add_argument("--run-dir", help="training run directory")
    which.add_argument(
        "--task", default=DEFAULT_EXPORT_TASK, help="export the newest finished run of this task (default: %(default)s)"
    )
    p_export.add_argument("--models-dir", default=default_models_dir())
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
        help="serve the registry's production version (`version=` picks another) with Triton; Hydra overrides "
        "follow. `serve rollback <model>` returns a live server to the previous production version; "
        "`--replicas N` runs N Triton processes behind nginx",
    )
    # Pass-through commands parse their own options (add_help=False lets `--help` reach them).
    sub.add_parser("models", add_help=False, help="the model registry: list | show | promote | rollback | diff")
    sub.add_parser("runs", add_help=False, help="`runs compare [--task T] [--tag X]`: configs and metrics of runs")
    p_reproduce = sub.add_parser("reproduce", help="retrain a registered version from its lineage and compare")
    p_reproduce.add_argument("name")
    p_reproduce.add_argument("version", help="a number, latest, production or candidate")
    p_reproduce.add_argument("--models-dir", default=default_models_dir())
    sub.add_parser("bench", add_help=False, help=f"`bench {'|'.join(BENCHMARKS)}`: reports/*.json")
    sub.add_parser("score", add_help=False, help="score a whole Parquet/CSV table offline with onnxruntime")
    p_predict = sub.add_parser(
        "predict", help="score records (JSON lines, CSV or Parquet), or entities by id (--ids), through Triton"
    )
    source = p_predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="records to score")
    source.add_argument(
        "--ids", help="ids to score through <model>_by_id (features from the online store): a,b,c or a file"
    )
    source.add_argument("--series", help="a long-format series table: future quantiles per series (--model-dir)")
    source.add_argument("--events", help="an event table: score --queries (entity, as_of) rows (--model-dir)")
    source.add_argument("--meddpicc", help="JSON-lines deals with MEDDPICC history and note text (deal_win_meddpicc)")
    p_predict.add_argument("--queries", help="with --events: the (entity, as_of) rows to score")
    p_predict.add_argument("--model-dir", help="with --series / --events: the exported model's version directory")
    p_predict.add_argument("--output", help="with --series / --events: where the predictions go (CSV or Parquet)")
    p_predict.add_argument("--reconcile", choices=["bottom_up", "none"], default="bottom_up")
    p_predict.add_argument("--url", default="127.0.0.1:8000")
    p_predict.add_argument("--model", default="deal_win")
    p_predict.add_argument("--protocol", choices=["http", "grpc"], default="http")
    sub.add_parser("run", help="the whole spine end to end with a report (train overrides follow)")
    for group, (_module, group_help) in COMMAND_GROUPS.items():
        sub.add_parser(group, add_help=False, help=group_help)
    return parser


def _predict_series(args: argparse.Namespace) -> int:
    """`predict --series`: the forecaster reads the table itself (no Triton round trip per series)."""
    from fulqrun_ml.forecasting.series_predict import main as series_main

    if not args.model_dir or not args.output:
        raise FulqrunMLError("--series needs --model-dir and --output")
    return series_main(
        ["--model-dir", args.model_dir, "--input", args.series, "--output", args.output, "--reconcile", args.reconcile]
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter logs every optimisation pass
        logging.getLogger(chatty).setLevel(logging.WARNING)
    # A DDP worker: Lightning re-runs this process's argv, which `train` had already reduced to the Hydra
    # overrides (plus the hydra.run.dir it pins for the worker), so the `train` command word is gone.
    ddp_worker = bool(argv) and "=" in argv[0] and "LOCAL_RANK" in os.environ
    if argv[:1] == ["train"] or ddp_worker:
        _train(argv[1:] if argv[:1] == ["train"] else argv)
        return 0
    args, rest = build_parser().parse_known_args(argv)
    try:
        if args.command == "export":
            _export(args)
        elif args.command == "serve":
            _serve(rest)
        elif args.command == "predict":
            if args.series is not None:
                return _predict_series(args)
            if args.events is not None:
                if not args.model_dir or not args.queries:
                    raise FulqrunMLError("--events needs --queries and --model-dir (the event model's version)")
                from fulqrun_ml.serving.event_predict import predict_event_rows, predict_events, write_predictions

                where = (args.model_dir, args.events, args.queries, args.url, args.model, args.protocol)
                if args.output:  # the whole answer in one file, published atomically
                    rows = predict_event_rows(*where)
                    print(f"wrote {len(rows)} predictions to {write_predictions(rows, args.output)}")
                    return 0
                for line in predict_events(*where):
                    print(line)
                return 0
            if args.meddpicc is not None:
                from fulqrun_ml.serving.meddpicc_predict import predict_meddpicc_file

                model = "deal_win_meddpicc" if args.model == "deal_win" else args.model
                lines = predict_meddpicc_file(args.meddpicc, args.url, model, args.protocol)
            elif args.ids is not None:
                lines = predict_ids(args.ids, args.url, args.model, args.protocol)
            else:
                lines = predict_file(Path(args.input), args.url, args.model, args.protocol)
            for line in lines:
                print(line)
        elif args.command == "run":
            run_end_to_end(rest)
        elif args.command == "models":
            return models_main(rest, on_change=_on_alias_change)
        elif args.command == "runs":
            return compare_main(rest)
        elif args.command == "bench":
            return _bench(rest)
        elif args.command == "reproduce":
            reproduction = reproduce_version(Path(args.models_dir), args.name, args.version)
            print(reproduction.report())
            return 0 if reproduction.identical else 1
        elif args.command == "score":
            return score_main(rest)
        elif args.command in COMMAND_GROUPS:
            return int(importlib.import_module(COMMAND_GROUPS[args.command][0]).main(rest) or 0)
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
