"""`fulqrun-ml online ...`: the real-time feature store's commands, printing JSON.

    fulqrun-ml online views [--redis-url URL]                     the defined views and those registered in Redis
    fulqrun-ml online materialise --task deal_win [--source simulator|parquet|csv|postgres ...] [--as-of T]
                                  [--ids a,b|FILE] [--model NAME [--model-version N]]   CRM snapshot -> Redis + history
    fulqrun-ml online backfill --task deal_win --start D --end D [--every-days N]   past rows -> history only
    fulqrun-ml online skew --task deal_win [--sample N --seed S --out FILE]   online == offline? exit 1 if not
    fulqrun-ml online redis start|stop|status [--data-dir DIR]     a local throwaway server (scripts/redis.sh)
    fulqrun-ml online demo [--deals 3]      change deals in a local CRM database, see the served probability change

Defaults come from configs/online/<--config>.yaml; FULQRUN_REDIS_URL overrides its redis_url.
Exit codes: 0 fine, 1 the skew check failed, 2 bad input or an unreachable service (the message says which).

Subcommands are a registry, `SUBCOMMANDS[name] = (help, add_arguments(parser), run(args) -> int)`, so another
module adds its own (the stream worker's `stream`, change capture's `cdc`) with one line at the end of this
file; `add_source_arguments`, `tables_from_args`, `store_from_args` and `view_from_args` are shared with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.online.history import FeatureHistory
from fulqrun_ml.online.materialise import backfill, date_grid, materialise
from fulqrun_ml.online.offline import load_crm, skew_check
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.views import VIEWS, FeatureView, view_for_task, view_for_version, with_ttl
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.commands import default_models_dir
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.store import get_version

CONFIG_GROUP = "online"
REDIS_ENV = "FULQRUN_REDIS_URL"
# simulate_crm keyword arguments settable as --sim-<name> (dashes for underscores)
SIM_OPTIONS: dict[str, type] = {
    "n_opportunities": int,
    "n_companies": int,
    "n_reps": int,
    "n_leads": int,
    "seed": int,
    "days": int,
    "start": str,
}

Runner = Callable[[argparse.Namespace], int]
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {}


def subcommand(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Runner) -> Runner:
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def load_config(name_or_path: str) -> dict[str, Any]:
    """configs/online/<name>.yaml (or a path), as a dict."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / CONFIG_GROUP / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / CONFIG_GROUP).glob("*.yaml"))
        raise FieldValidationError("--config", f"no online config {name_or_path!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise FieldValidationError("--config", f"{path} must hold a mapping")
    return data


# --- shared options ------------------------------------------------------------------------------------


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="configs/online/<name>.yaml or a path")
    parser.add_argument("--redis-url", help=f"default: ${REDIS_ENV}, else the config's redis_url")


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--task", default="deal_win", help=f"whose feature view: {', '.join(VIEWS)}")


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """The CRM snapshot to read: --source and its options (simulator ones as --sim-<name>)."""
    parser.add_argument("--source", choices=["simulator", "parquet", "csv", "postgres"], help="default: config")
    parser.add_argument("--path", help="export directory of a parquet/csv source")
    parser.add_argument("--dsn", help="PostgreSQL DSN (default: $FULQRUN_CRM_DSN)")
    parser.add_argument("--schema", help="PostgreSQL schema (default: config, public)")
    parser.add_argument("--extracted-at", help="when the export was taken, if it does not say")
    for name, kind in SIM_OPTIONS.items():
        parser.add_argument(f"--sim-{name.replace('_', '-')}", dest=f"sim_{name}", type=kind, help=argparse.SUPPRESS)


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    if not hasattr(args, "_config"):
        args._config = load_config(getattr(args, "config", "default"))
    return args._config


def store_from_args(args: argparse.Namespace) -> OnlineStore:
    cfg = config_of(args)
    url = args.redis_url or os.environ.get(REDIS_ENV) or cfg.get("redis_url")
    if not url:
        raise FieldValidationError("--redis-url", f"no Redis URL: pass --redis-url, set {REDIS_ENV} or the config")
    store = OnlineStore(str(url), socket_timeout=float(cfg.get("socket_timeout_s", 0.5)))
    store.ping()  # fail before loading a CRM snapshot, not after
    return store


def view_from_args(args: argparse.Namespace) -> FeatureView:
    """The task's view with the config's TTL (the TTL does not change the view's version)."""
    view = view_for_task(args.task)
    ttl = (config_of(args).get("views") or {}).get(args.task, {}).get("ttl_seconds")
    return with_ttl(view, timedelta(seconds=float(ttl))) if ttl else view


def tables_from_args(args: argparse.Namespace) -> CRMTables:
    source = dict(config_of(args).get("source") or {})
    simulator = dict(source.get("simulator") or {})
    simulator.update({k: getattr(args, f"sim_{k}") for k in SIM_OPTIONS if getattr(args, f"sim_{k}", None) is not None})
    return load_crm(
        args.source or source.get("kind", "simulator"),
        path=args.path or source.get("path"),
        dsn=args.dsn,
        schema=args.schema or source.get("schema") or "public",
        extracted_at=args.extracted_at,
        simulator=simulator,
    )


def history_from_args(args: argparse.Namespace) -> FeatureHistory:
    configured = config_of(args).get("history_dir")
    root = args.history_dir or os.environ.get("FULQRUN_FEATURE_HISTORY") or configured
    path = Path(root) if root else None
    return FeatureHistory(path if path is None or path.is_absolute() else REPO_ROOT / path)


def read_ids(text: str | None) -> list[str] | None:
    """--ids a,b,c or a file with one id per line."""
    if not text:
        return None
    path = Path(text)
    raw = path.read_text().split() if path.is_file() else text.split(",")
    ids = [i.strip() for i in raw if i.strip()]
    if not ids:
        raise FieldValidationError("--ids", "holds no ids")
    return ids


def emit(result: Any) -> None:
    print(json.dumps(result, indent=2, default=str))


# --- subcommands ---------------------------------------------------------------------------------------


def _views_arguments(parser: argparse.ArgumentParser) -> None:
    add_store_arguments(parser)
    parser.add_argument("--offline", action="store_true", help="list the defined views only (no Redis)")


@subcommand("views", "the defined feature views and those registered in Redis", _views_arguments)
def _views(args: argparse.Namespace) -> int:
    defined = [{"task": task, **view.describe()} for task, view in VIEWS.items()]
    result: dict[str, Any] = {"defined": defined}
    if not args.offline:
        result["registered"] = store_from_args(args).registered_views()
    emit(result)
    return 0


def _materialise_arguments(parser: argparse.ArgumentParser) -> None:
    add_view_arguments(parser)
    add_source_arguments(parser)
    parser.add_argument("--as-of", help="compute at this time (default: the snapshot's extraction)")
    parser.add_argument("--ids", help="only these entities: a,b,c or a file (default: all open ones)")
    parser.add_argument("--history-dir", help="feature history root (default: config)")
    parser.add_argument("--no-history", action="store_true", help="do not append to the feature history")
    parser.add_argument("--model", help="a registered model that reads this view: its inputs are checked against it")
    parser.add_argument("--model-version", default="latest", help="number, latest or an alias (default: latest)")
    parser.add_argument("--models-dir", default=default_models_dir(), help="registry root (default: %(default)s)")


@subcommand("materialise", "compute a view from a CRM snapshot into Redis (and the history)", _materialise_arguments)
def _materialise(args: argparse.Namespace) -> int:
    view, store = view_from_args(args), store_from_args(args)
    history = None if args.no_history else history_from_args(args)
    model_version = None
    if args.model:  # tie the view to a model version only if that model was trained on exactly these features
        version = get_version(Path(args.models_dir), args.model, args.model_version)
        fed = view_for_version(version.metadata)
        if fed.name != view.name:
            raise FieldValidationError("--model", f"{args.model} reads view {fed.name}, not {view.name} (--task)")
        model_version = version.version
    tables = tables_from_args(args)
    emit(materialise(store, view, tables, args.as_of, read_ids(args.ids), history, args.model, model_version))
    return 0


def _backfill_arguments(parser: argparse.ArgumentParser) -> None:
    add_view_arguments(parser)
    add_source_arguments(parser)
    parser.add_argument("--start", required=True, help="first date (UTC)")
    parser.add_argument("--end", required=True, help="last date (UTC, inclusive)")
    parser.add_argument("--every-days", type=int, default=1)
    parser.add_argument("--ids", help="only these entities: a,b,c or a file (default: those open at each date)")
    parser.add_argument("--history-dir", help="feature history root (default: config)")


@subcommand("backfill", "compute past point-in-time rows into the feature history", _backfill_arguments)
def _backfill(args: argparse.Namespace) -> int:
    view, history = view_from_args(args), history_from_args(args)
    dates = date_grid(args.start, args.end, args.every_days)
    emit(backfill(view, tables_from_args(args), dates, history, read_ids(args.ids)))
    return 0


def _skew_arguments(parser: argparse.ArgumentParser) -> None:
    add_view_arguments(parser)
    add_source_arguments(parser)
    parser.add_argument("--sample", type=int, help="entities to check (default: config)")
    parser.add_argument("--seed", type=int, help="sampling seed (default: config)")
    parser.add_argument("--ids", help="check these entities instead of a sample")
    parser.add_argument("--out", help="also write the report here (JSON, atomically)")


@subcommand("skew", "monitor: online features == offline point-in-time features? (exit 1 if not)", _skew_arguments)
def _skew(args: argparse.Namespace) -> int:
    cfg = config_of(args).get("skew") or {}
    view, store = view_from_args(args), store_from_args(args)
    sample = args.sample if args.sample is not None else int(cfg.get("sample", 200))
    seed = args.seed if args.seed is not None else int(cfg.get("seed", 0))
    report = skew_check(store, view, tables_from_args(args), sample=sample, seed=seed, entity_ids=read_ids(args.ids))
    if args.out:
        atomic_write_json(Path(args.out), report)
    emit(report)
    if not report["ok"]:
        why = f"{report['mismatch_count']} mismatches" if report["checked"] else "no comparable online rows"
        print(f"skew check failed for {view.name}@{view.version}: {why}", file=sys.stderr)
    return 0 if report["ok"] else 1


def _redis_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--data-dir", help="server directory (default: scripts/redis.sh's)")
    parser.add_argument("--port", help="port to bind on 127.0.0.1 (start only; default: a free one)")


@subcommand("redis", "start/stop/status of a local throwaway Redis on 127.0.0.1 (scripts/redis.sh)", _redis_arguments)
def _redis(args: argparse.Namespace) -> int:
    command = [str(REPO_ROOT / "scripts" / "redis.sh"), args.action]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.port and args.action == "start":
        command += ["--port", args.port]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise FulqrunMLError(f"scripts/redis.sh {args.action} failed: {err}") from err
    sys.stderr.write(done.stderr)
    sys.stdout.write(done.stdout)
    return done.returncode


# --- entry point ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml online", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _run) in SUBCOMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return SUBCOMMANDS[args.command][2](args)
    except FulqrunMLError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


# Other modules' subcommands register below this line (e.g. SUBCOMMANDS["stream"] = (HELP, add_arguments, run)).
from fulqrun_ml.online import stream as _stream  # noqa: E402 - registers after the registry exists

SUBCOMMANDS["cdc"] = (
    "change capture: install triggers + outbox, or show its lag",
    _stream.add_cdc_arguments,
    _stream.run_cdc,
)
SUBCOMMANDS["stream"] = (
    "run the stream worker: CRM changes -> features -> Redis",
    _stream.add_stream_arguments,
    _stream.run_stream,
)

from fulqrun_ml.online import live_update as _live  # noqa: E402

SUBCOMMANDS["demo"] = (
    "a live update: change deals in a local CRM database, see their served probability change",
    _live.add_demo_arguments,
    _live.run_demo,
)
