"""`fulqrun-ml governance forget | scan | report`: erasure, the PII scan of every store, and the compliance report.

    fulqrun-ml governance forget --contact ID | --company ID [--org ORG] --crm DIR | --crm-dsn-env VAR [stores]
    fulqrun-ml governance scan --crm DIR | --crm-dsn-env VAR [store options]
    fulqrun-ml governance report MODEL VERSION ...       (monitoring/governance.py, unchanged)

The CRM is an export directory or a PostgreSQL database (its DSN in the environment variable named by
--crm-dsn-env, e.g. FULQRUN_CRM_DSN; --crm-schema). Store options (each optional; a store not named is not
touched, and the report lists only what was checked): --snapshots DIR (repeatable: run directories, snapshot
exports), --prediction-logs DIR (default: the serving config's prediction log directory, spool and Parquet
store), --prediction-dsn-env VAR (the PostgreSQL prediction store; default $FULQRUN_PREDICTION_LOG_DSN when
set; --prediction-table), --redis-url (default $FULQRUN_REDIS_URL), --embedding-cache DIR (default
~/.cache/fulqrun_ml/text_embeddings when it exists), --llm-logs DIR (repeatable: the insights response cache
and call log), --wandb DIR (repeatable: directories holding `wandb/` run directories; the --snapshots
directories are searched too), --models-dir (retraining flags).

Exit codes: 0 erased and re-scan clean (forget) / no PII outside the system of record (scan); 1 the re-scan
still finds the subject / PII found; 2 bad input (one `error:` line, nothing written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fulqrun_ml.erasure.caches import crm_scrubber
from fulqrun_ml.erasure.files import FileStore
from fulqrun_ml.erasure.forget import Stores, forget
from fulqrun_ml.erasure.postgres_store import PostgresTables
from fulqrun_ml.erasure.redis_store import RedisStore
from fulqrun_ml.erasure.scan import scan_stores
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.monitoring import governance
from fulqrun_ml.monitoring.governance import DSN_ENV
from fulqrun_ml.registry.commands import default_models_dir
from fulqrun_ml.registry.locking import atomic_write_text

REDIS_ENV = "FULQRUN_REDIS_URL"
DEFAULT_EMBEDDING_CACHE = Path("~/.cache/fulqrun_ml/text_embeddings").expanduser()


def _store_options(p: argparse.ArgumentParser) -> None:
    crm = p.add_mutually_exclusive_group(required=True)
    crm.add_argument("--crm", help="the CRM export directory (<table>.parquet|csv)")
    crm.add_argument("--crm-dsn-env", help="name of the environment variable holding the CRM's PostgreSQL DSN")
    p.add_argument("--crm-schema", default="public", help="schema of the PostgreSQL CRM (default: %(default)s)")
    p.add_argument("--prediction-dsn-env", default=None, help=f"env var with the prediction store's DSN ({DSN_ENV})")
    p.add_argument("--prediction-table", default="prediction_log", help="prediction store table (%(default)s)")
    p.add_argument("--snapshots", action="append", default=[], help="snapshot/run directory (repeatable)")
    p.add_argument("--prediction-logs", action="append", default=None, help="prediction log directory (repeatable)")
    p.add_argument("--redis-url", default=os.environ.get(REDIS_ENV), help=f"default: ${REDIS_ENV}")
    p.add_argument("--embedding-cache", default=None, help=f"default: {DEFAULT_EMBEDDING_CACHE} if it exists")
    p.add_argument("--llm-logs", action="append", default=[], help="LLM cache / call log directory (repeatable)")
    p.add_argument("--wandb", action="append", default=[], help="directory holding W&B runs (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml governance", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("forget", help="erase one contact or company from every store, with a report")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--contact")
    who.add_argument("--company")
    p.add_argument("--org", help="the organisation the subject must belong to")
    _store_options(p)
    p.add_argument("--models-dir", default=default_models_dir(), help="registry root (default: %(default)s)")
    p.add_argument("--out", default="reports/erasure", help="report directory (default: %(default)s)")
    s = sub.add_parser("scan", help="PII findings per store (counts only)")
    _store_options(s)
    s.add_argument("--no-names", action="store_true", help="emails and phones only")
    s.add_argument("--json", help="also write the findings to this file")
    sub.add_parser("report", help="compliance report of one version (see `governance report -h`)", add_help=False)
    return parser


def _dsn(flag: str, name: str | None) -> str | None:
    """The DSN in environment variable `name` (a DSN holds a password: never on the command line)."""
    if name is None:
        return None
    if not os.environ.get(name):
        raise FulqrunMLError(f"{flag}: environment variable {name} is not set")
    return os.environ[name]


def _stores(args: argparse.Namespace) -> Stores:
    crm_dsn = _dsn("--crm-dsn-env", args.crm_dsn_env)
    prediction_env = args.prediction_dsn_env or (DSN_ENV if os.environ.get(DSN_ENV) else None)
    crm = Path(args.crm) if args.crm else None
    if crm is not None and not crm.is_dir():
        raise FulqrunMLError(f"--crm: no CRM export directory {crm}")
    logs = args.prediction_logs
    if logs is None:
        default = governance.default_prediction_store().parent
        logs = [str(default)] if default.is_dir() else []
    cache = args.embedding_cache or (str(DEFAULT_EMBEDDING_CACHE) if DEFAULT_EMBEDDING_CACHE.is_dir() else None)
    for flag, paths in (
        ("--snapshots", args.snapshots),
        ("--prediction-logs", logs),
        ("--llm-logs", args.llm_logs),
        ("--wandb", args.wandb),
    ):
        for path in paths:
            if not Path(path).exists():
                raise FulqrunMLError(f"{flag}: no such directory {path}")
    return Stores(
        crm_dir=crm,
        snapshots=[Path(p) for p in args.snapshots],
        prediction_logs=[Path(p) for p in logs],
        redis_url=args.redis_url or None,
        embedding_cache=Path(cache) if cache else None,
        llm_logs=[Path(p) for p in args.llm_logs],
        models_dir=Path(args.models_dir) if getattr(args, "models_dir", None) else None,
        crm_dsn=crm_dsn,
        crm_schema=args.crm_schema,
        prediction_dsn=_dsn("--prediction-dsn-env", prediction_env),
        prediction_table=args.prediction_table,
        wandb=[Path(p) for p in args.wandb],
    )


def _forget(args: argparse.Namespace) -> int:
    kind, subject = ("contact", args.contact) if args.contact else ("company", args.company)
    report, path = forget(_stores(args), kind, subject, args.org, Path(args.out))
    for name, store in report["stores"].items():
        print(f"{name:16s} hits before {store['hits_before']:6d}  after {store['hits_after']:4d}")
    for flag in report["models_flagged_for_retraining"]:
        print(f"flagged for retraining: {flag['model']} v{flag['version']}")
    if report["wandb_runs_flagged"]:
        print(f"{report['wandb_runs_flagged']} W&B run log(s) could not be rewritten safely: delete or re-log them")
    print(f"{'erased' if report['erased'] else 'NOT fully erased'}; report: {path}")
    return 0 if report["erased"] else 1


def _scan(args: argparse.Namespace) -> int:
    stores = _stores(args)
    scrubber = crm_scrubber(stores.crm_dir, stores.crm_reader())
    if args.no_names:
        scrubber.detect_names = False
    crm = stores.crm()
    files = [*stores.file_stores(), *([crm] if isinstance(crm, FileStore) else [])]
    postgres = [*stores.postgres_stores(), *([crm] if isinstance(crm, PostgresTables) else [])]
    redis = RedisStore(stores.redis_url) if stores.redis_url else None
    result = scan_stores(files, redis, scrubber, stores.embedding_cache, postgres, stores.wandb_store())
    for name, found in result["stores"].items():
        counts = ", ".join(f"{k} {v}" for k, v in sorted(found["findings"].items())) or "none"
        where = next(f"{v} {k.split('_')[0]}" for k, v in found.items() if k.endswith("_with_findings"))
        note = " (system of record: PII expected)" if found["system_of_record"] else ""
        print(f"{name:20s} findings: {counts}; in {where}{note}")
    print("clean" if result["clean"] else "PII found outside the system of record")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2, sort_keys=True))
    return 0 if result["clean"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv) if argv is not None else sys.argv[1:]
    if argv and argv[0] == "report":
        return governance.main(argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return _forget(args) if args.action == "forget" else _scan(args)
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
