"""Time to forget one company across every store on a 10k-opportunity CRM, against a full rebuild.

    .venv/bin/python scripts/bench_erasure.py --redis-url redis://127.0.0.1:PORT/9 [--pg-dsn postgresql://...]
        [--opportunities 10000]

Stores, all real: the CRM export (Parquet, written by `write_crm_directory`), a snapshot table (6 as-of rows per
opportunity) and the same table sealed at rest (`.parquet.enc`, data/snapshot_files.py), a Parquet prediction
store (`ParquetStore`, 20k records over 10 days), one Redis feature row per opportunity, the embedding cache of
300 deals' notes and of the same deals' similar-search profiles (the real `TextEncoder` and cache; a hash
backend stands in for the sentence model, whose vectors do not matter here), 200 LLM response-cache files, a
W&B offline run written by wandb itself (a predictions table of every deal, history and summary naming deals)
and, with --pg-dsn, the PostgreSQL prediction store (the same 20k records).

Per repeat (a different company each, on a fresh copy of the stores):
- `forget`: `fulqrun_ml.erasure.forget.forget` end to end: resolve, scan every store, rewrite only the files
  that hold the subject, delete its Redis keys and cache entries, re-scan every store (the proof), write the report;
- baseline, "full rebuild": the same subject removed by rewriting *every* file of every file store (the same
  matcher, so both produce the same files), rewriting every Redis feature row, rewriting the W&B run's files and
  re-inserting every other row of the PostgreSQL prediction store, as a pipeline that regenerates its stores
  after a deletion would. It has no proof scan.
- with --pg-dsn, `forget_postgres_crm`: the forget with the CRM in PostgreSQL (a template database copied per
  repeat; one transaction), against `postgres_crm_reload`: reloading the whole CRM into PostgreSQL from the
  rebuilt export (load_crm_into_postgres).
Both end states are checked: the subject is in no store, and the CRM row counts agree.
Writes reports/erasure.json (machine info, seconds per repeat, medians, ratios).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fulqrun_ml.crypto.envelope import AT_REST_ENV
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, new_key
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.snapshot_files import rewrite_snapshot, write_snapshot
from fulqrun_ml.data.sources import DirectorySource, load_crm_into_postgres, write_crm_directory
from fulqrun_ml.erasure.files import FileStore, is_sealed, publish
from fulqrun_ml.erasure.forget import Stores, _count_all, forget
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.subject import resolve_subject
from fulqrun_ml.erasure.wandb_store import HEADER, WandbStore, _scrub_message, read_chunks, write_chunks
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.prediction_store import ParquetStore, PostgresStore
from fulqrun_ml.online.note_embeddings import mean_note_embeddings
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.search.deal_profiles import profiles, stage_entries
from fulqrun_ml.text.encoder import TextEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.erasure_setup import HashBackend  # the same stand-in as the tests

FEATURES = {f"f{i:02d}": "0.5" for i in range(20)}
PG_TABLE = "prediction_log"


def build(root: Path, opportunities: int, seed: int, pg_dsn: str | None) -> tuple[Path, pd.DataFrame, list[dict]]:
    """Every store but Redis under `root` (copied per repeat); the CRM path, its opportunities, the records."""
    tables = simulate_crm(n_opportunities=opportunities, n_companies=opportunities // 4, seed=seed).tables
    crm = write_crm_directory(tables, root / "crm")
    opps = tables.opportunities
    dates = pd.date_range("2025-01-01", periods=6, freq="30D", tz="UTC")
    snap = opps[["id", "company_id", "stage", "value"]].rename(columns={"id": "opportunity_id"})
    snapshots = pd.concat([snap.assign(as_of=d) for d in dates], ignore_index=True)
    (root / "snapshots").mkdir()
    snapshots.to_parquet(root / "snapshots" / "deal_win.parquet", index=False)
    write_snapshot(snapshots, root / "snapshots" / "sealed_run" / "holdout.parquet")  # sealed: AT_REST_ENV is on
    rng = np.random.default_rng(seed)
    picks = rng.choice(opps["id"].to_numpy(), size=20_000)
    base = pd.Timestamp("2026-01-01", tz="UTC")
    records = [
        {
            "model": "deal_win", "request_id": f"r{i}", "row": 0, "version": 1,
            "time": (base + pd.Timedelta(days=i % 10)).to_pydatetime(), "entity_id": str(deal), "latency_ms": 1.0,
            "inputs": {"stage": "proposal"}, "outputs": {"probability": 0.5},
        }
        for i, deal in enumerate(picks)
    ]  # fmt: skip
    ParquetStore(root / "predictions").commit(records, {})
    encoder = TextEncoder(backend=HashBackend(), cache_dir=root / "embeddings")
    noted = tables.notes.loc[tables.notes["related_type"] == "opportunity", "related_id"].unique()[:300]
    mean_note_embeddings(tables, pd.DataFrame({"opportunity_id": noted, "as_of": tables.extracted_at}), encoder)
    entries = stage_entries(tables)
    encoder.encode(profiles(tables, entries[entries["opportunity_id"].isin(noted)])["text"].tolist(), "profile")
    (root / "llm").mkdir()
    for i, deal in enumerate(opps["id"].head(200)):
        (root / "llm" / f"{i:064x}.json").write_text(json.dumps({"text": f"deal {deal}", "input_tokens": 1}))
    write_wandb_run(root / "snapshots" / "wandb_run", opps)
    return crm, opps, records


def write_wandb_run(directory: Path, opps: pd.DataFrame) -> None:
    """A real offline run (wandb-core writes the log): a predictions table and a few history rows naming deals."""
    import wandb

    directory.mkdir(parents=True)
    os.environ["WANDB_SILENT"] = "true"
    run = wandb.init(mode="offline", dir=str(directory), project="bench-erasure")
    for deal in opps["id"].head(20):
        wandb.log({"loss": 0.5, "worst_deal": str(deal)})
    rows = [[str(d), str(c), 0.5] for d, c in zip(opps["id"], opps["company_id"], strict=True)]
    wandb.log({"holdout/predictions": wandb.Table(columns=["opportunity_id", "company_id", "p"], data=rows)})
    run.summary["last_company"] = str(opps["company_id"].iloc[-1])
    wandb.finish()


def seed_redis(client: redis.Redis, ids: list[str]) -> None:
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for deal in ids:
        pipe.hset(f"fq:fv:deal_win:1:{deal}", mapping=FEATURES)
    pipe.execute()


def stores_at(root: Path, redis_url: str, pg_dsn: str | None = None, crm_dsn: str | None = None) -> Stores:
    return Stores(
        crm_dir=None if crm_dsn else root / "crm",
        snapshots=[root / "snapshots"],
        prediction_logs=[root / "predictions"],
        redis_url=redis_url,
        embedding_cache=root / "embeddings",
        llm_logs=[root / "llm"],
        crm_dsn=crm_dsn,
        crm_schema="crm",
        prediction_dsn=pg_dsn,
        prediction_table=PG_TABLE,
    )


def fresh_database(admin_dsn: str, template_dsn: str | None = None) -> str:
    """A new database (a copy of the database at `template_dsn` when given); its DSN."""
    name = f"bench_erasure_{uuid.uuid4().hex[:8]}"
    template = str(psycopg.conninfo.conninfo_to_dict(template_dsn)["dbname"]) if template_dsn else None
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        query = "CREATE DATABASE {} TEMPLATE {}" if template else "CREATE DATABASE {}"
        conn.execute(sql.SQL(query).format(*map(sql.Identifier, [name, template] if template else [name])))
    return make_conninfo(admin_dsn, dbname=name)


def drop_database(admin_dsn: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(str(name))))


def full_rebuild(
    stores: Stores, company: str, client: redis.Redis, ids: list[str], records: list[dict]
) -> tuple[float, Matcher]:
    """The baseline (module docstring); returns seconds and the subject's matcher."""
    start = time.perf_counter()
    subject = resolve_subject(stores.crm_dir, "company", company)
    matcher = Matcher(subject)
    for store in [*stores.file_stores(), FileStore("crm", [stores.crm_dir])]:
        for path in store.files():
            if is_sealed(path):
                rewrite_snapshot(matcher.erase(store.table(path)).to_pandas(), path)
            elif path.suffix == ".parquet":
                table = pq.read_table(path)
                publish(path, _parquet_bytes(matcher.erase(table)))
            elif matcher.count_text(path.read_text()):
                path.unlink()
    for path, kind in WandbStore("wandb", stores.snapshots).files():
        if kind == "log":
            data = path.read_bytes()
            publish(path, write_chunks(data[:HEADER], [_scrubbed_record(p, matcher) for p in read_chunks(data)]))
        else:
            publish(path, matcher.scrub_text(path.read_text()).encode())
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for deal in ids:
        if deal not in subject.ids:
            pipe.hset(f"fq:fv:deal_win:1:{deal}", mapping=FEATURES)
    pipe.execute()
    if stores.prediction_dsn:
        with psycopg.connect(stores.prediction_dsn) as conn:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(PG_TABLE)))
        PostgresStore(stores.prediction_dsn, PG_TABLE).commit(
            [r for r in records if r["entity_id"] not in subject.ids], {}
        )
    return time.perf_counter() - start, matcher


def _scrubbed_record(payload: bytes, matcher: Matcher) -> bytes:
    from wandb.proto import wandb_internal_pb2 as pb

    record = pb.Record()
    record.ParseFromString(payload)
    _scrub_message(record, matcher)
    return record.SerializeToString()


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def crm_rows(crm: Path) -> dict[str, int]:
    return {p.stem: pq.read_metadata(p).num_rows for p in sorted(crm.glob("*.parquet"))}


def hits_after(stores: Stores, subject: object) -> int:
    after = _count_all(stores, subject, set())  # type: ignore[arg-type]
    return sum(sum(v.values()) for k, v in after.items() if k != "embedding_cache")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--pg-dsn", help="an admin DSN of a scratch PostgreSQL (databases are created and dropped)")
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/erasure.json")
    args = parser.parse_args()
    os.environ[AT_REST_ENV], os.environ[ENCRYPTION_KEYS_ENV] = "1", f"bench:{new_key()}"  # this process only
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    with tempfile.TemporaryDirectory(prefix="bench_erasure_") as tmp:
        template = Path(tmp) / "template"
        started = time.perf_counter()
        crm, opps, records = build(template, args.opportunities, args.seed, args.pg_dsn)
        built = time.perf_counter() - started
        pg_template = crm_template = None
        if args.pg_dsn:
            pg_template = fresh_database(args.pg_dsn)
            PostgresStore(pg_template, PG_TABLE).commit(records, {})
            crm_template = fresh_database(args.pg_dsn, pg_template)
            load_crm_into_postgres(DirectorySource(crm).load(), crm_template, "crm")
        rows = crm_rows(crm)
        ids = opps["id"].tolist()
        per_company = opps.groupby("company_id").size()
        companies = per_company[per_company == per_company.median()].index[: args.repeats].tolist()
        runs = []
        arms = ["forget", "full_rebuild", *(["forget_postgres_crm", "postgres_crm_reload"] if args.pg_dsn else [])]
        for i, company in enumerate(companies):
            row: dict[str, object] = {"repeat": i, "company_opportunities": int(per_company[company])}
            subject = resolve_subject(template / "crm", "company", company)
            for arm in arms:
                work = Path(shutil.copytree(template, Path(tmp) / f"{arm}-{i}"))
                seed_redis(client, ids)
                pg = fresh_database(args.pg_dsn, pg_template) if args.pg_dsn else None
                crm_dsn = fresh_database(args.pg_dsn, crm_template) if arm == "forget_postgres_crm" else None
                stores = stores_at(work, args.redis_url, pg, crm_dsn)
                t0 = time.perf_counter()
                if arm.startswith("forget"):
                    report, _ = forget(stores, "company", company, None, work / "reports")
                    row[f"{arm}_seconds"] = round(time.perf_counter() - t0, 3)
                    row[f"{arm}_seconds_by_phase"] = report["seconds_by_phase"]
                    row[f"{arm}_hits_before"] = {k: v["hits_before"] for k, v in report["stores"].items()}
                    row[f"{arm}_erased"] = report["erased"]
                elif arm == "full_rebuild":
                    row["full_rebuild_seconds"] = round(full_rebuild(stores, company, client, ids, records)[0], 3)
                else:  # the whole CRM reloaded into PostgreSQL from an export without the subject
                    full_rebuild(stores, company, client, ids, records)
                    reload_dsn = fresh_database(args.pg_dsn)
                    t0 = time.perf_counter()
                    load_crm_into_postgres(DirectorySource(work / "crm").load(), reload_dsn, "crm")
                    row["postgres_crm_reload_seconds"] = round(time.perf_counter() - t0, 3)
                    drop_database(args.pg_dsn, reload_dsn)
                row[f"{arm}_hits_after"] = hits_after(stores, subject)
                if arm in ("forget", "full_rebuild"):
                    row[f"{arm}_crm_rows"] = crm_rows(work / "crm")
                for dsn in (pg, crm_dsn):
                    if dsn:
                        drop_database(args.pg_dsn, dsn)
                shutil.rmtree(work)
            row["same_crm_rows"] = row.pop("forget_crm_rows") == row.pop("full_rebuild_crm_rows")
            runs.append(row)
            print(json.dumps(row), flush=True)
        for dsn in (crm_template, pg_template):
            if dsn:
                drop_database(args.pg_dsn, dsn)
    result = summarise(runs, args, rows, built, len(ids))
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("median", "forget_over", "erase_phase"))}))


def summarise(runs: list[dict], args: argparse.Namespace, rows: dict, built: float, n_ids: int) -> dict:
    def median(key: str, phase: str | None = None) -> float | None:
        values = [r[key][phase] if phase else r[key] for r in runs if key in r]
        return statistics.median(values) if values else None

    result = {
        "benchmark": "erasure: forget one company across every store vs a full rebuild of the file stores and Redis",
        "machine": machine_info(),
        "setup": {
            "opportunities": args.opportunities,
            "crm_rows": rows,
            "snapshot_rows": args.opportunities * 6,
            "sealed_snapshot_rows": args.opportunities * 6,
            "prediction_records": 20_000,
            "postgres_prediction_records": 20_000 if args.pg_dsn else 0,
            "wandb_table_rows": n_ids,
            "redis_rows": n_ids,
            "seconds_to_build": round(built, 1),
            "seed": args.seed,
        },
        "runs": runs,
        "median_forget_seconds": median("forget_seconds"),
        "median_full_rebuild_seconds": median("full_rebuild_seconds"),
        "median_forget_erase_phase_seconds": median("forget_seconds_by_phase", "erase"),
        "median_forget_postgres_crm_seconds": median("forget_postgres_crm_seconds"),
        "median_forget_postgres_crm_erase_phase_seconds": median("forget_postgres_crm_seconds_by_phase", "erase"),
        "median_postgres_crm_reload_seconds": median("postgres_crm_reload_seconds"),
    }
    result["forget_over_rebuild"] = round(result["median_forget_seconds"] / result["median_full_rebuild_seconds"], 3)
    result["erase_phase_over_rebuild"] = round(
        result["median_forget_erase_phase_seconds"] / result["median_full_rebuild_seconds"], 3
    )
    result["notes"] = (
        "forget = resolve + scan every store + erase + re-scan every store (the proof) + report; its erase phase "
        "alone is the like-for-like comparison with the rebuild, which has no proof. Timings on a shared 2-core "
        "machine (see machine.load_average_1m_5m_15m): compare arms within a repeat."
    )
    return result


if __name__ == "__main__":
    main()
