"""Time to forget one company across every store on a 10k-opportunity CRM, against a full rebuild.

    .venv/bin/python scripts/bench_erasure.py --redis-url redis://127.0.0.1:PORT/9 [--opportunities 10000]

Stores, all real: the CRM export (Parquet, written by `write_crm_directory`), a snapshot table (6 as-of rows per
opportunity), a Parquet prediction store (`ParquetStore`, 20k records over 10 days), one Redis feature row per
opportunity, the embedding cache of 300 deals' notes (the real `TextEncoder` and cache; a hash backend stands in
for the sentence model, whose vectors do not matter here) and 200 LLM response-cache files.

Per repeat (a different company each, on a fresh copy of the stores):
- `forget`: `fulqrun_ml.erasure.forget.forget` end to end: resolve, scan every store, rewrite only the files
  that hold the subject, delete its Redis keys and cache entries, re-scan every store (the proof), write the report;
- baseline, "full rebuild": the same subject removed by rewriting *every* file of every file store (the same
  matcher, so both produce the same files) and rewriting every Redis feature row, as a pipeline that regenerates
  its snapshots after a deletion would. It has no proof scan.
Both end states are checked: the subject is in no store, and the CRM row counts agree.
Writes reports/erasure.json (machine info, seconds per repeat, medians, ratio).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.erasure.files import FileStore, publish
from fulqrun_ml.erasure.forget import Stores, _count_all, forget
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.subject import resolve_subject
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.prediction_store import ParquetStore
from fulqrun_ml.online.note_embeddings import mean_note_embeddings
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.text.encoder import TextEncoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.erasure_setup import HashBackend  # the same stand-in as the tests

FEATURES = {f"f{i:02d}": "0.5" for i in range(20)}


def build(root: Path, opportunities: int, seed: int) -> tuple[Path, pd.DataFrame]:
    """Every store but Redis under `root` (copied per repeat); returns the CRM path and its opportunities."""
    tables = simulate_crm(n_opportunities=opportunities, n_companies=opportunities // 4, seed=seed).tables
    crm = write_crm_directory(tables, root / "crm")
    opps = tables.opportunities
    dates = pd.date_range("2025-01-01", periods=6, freq="30D", tz="UTC")
    snap = opps[["id", "company_id", "stage", "value"]].rename(columns={"id": "opportunity_id"})
    snapshots = pd.concat([snap.assign(as_of=d) for d in dates], ignore_index=True)
    (root / "snapshots").mkdir()
    snapshots.to_parquet(root / "snapshots" / "deal_win.parquet", index=False)
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
    (root / "llm").mkdir()
    for i, deal in enumerate(opps["id"].head(200)):
        (root / "llm" / f"{i:064x}.json").write_text(json.dumps({"text": f"deal {deal}", "input_tokens": 1}))
    return crm, opps


def seed_redis(client: redis.Redis, ids: list[str]) -> None:
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for deal in ids:
        pipe.hset(f"fq:fv:deal_win:1:{deal}", mapping=FEATURES)
    pipe.execute()


def stores_at(root: Path, redis_url: str) -> Stores:
    return Stores(
        crm_dir=root / "crm",
        snapshots=[root / "snapshots"],
        prediction_logs=[root / "predictions"],
        redis_url=redis_url,
        embedding_cache=root / "embeddings",
        llm_logs=[root / "llm"],
    )


def full_rebuild(stores: Stores, company: str, client: redis.Redis, ids: list[str]) -> float:
    """The baseline (module docstring); returns seconds."""
    start = time.perf_counter()
    subject = resolve_subject(stores.crm_dir, "company", company)
    matcher = Matcher(subject)
    for store in [*stores.file_stores(), FileStore("crm", [stores.crm_dir])]:
        for path in store.files():
            if path.suffix == ".parquet":
                table = pq.read_table(path)
                publish(path, _parquet_bytes(matcher.erase(table)))
            elif matcher.count_text(path.read_text()):
                path.unlink()
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    for deal in ids:
        if deal not in subject.ids:
            pipe.hset(f"fq:fv:deal_win:1:{deal}", mapping=FEATURES)
    pipe.execute()
    return time.perf_counter() - start


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def crm_rows(crm: Path) -> dict[str, int]:
    return {p.stem: pq.read_metadata(p).num_rows for p in sorted(crm.glob("*.parquet"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--opportunities", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="reports/erasure.json")
    args = parser.parse_args()
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    with tempfile.TemporaryDirectory(prefix="bench_erasure_") as tmp:
        template = Path(tmp) / "template"
        started = time.perf_counter()
        crm, opps = build(template, args.opportunities, args.seed)
        built = time.perf_counter() - started
        rows = crm_rows(crm)
        ids = opps["id"].tolist()
        per_company = opps.groupby("company_id").size()
        companies = per_company[per_company == per_company.median()].index[: args.repeats].tolist()
        runs = []
        for i, company in enumerate(companies):
            row: dict[str, object] = {"repeat": i, "company_opportunities": int(per_company[company])}
            for arm in ("forget", "full_rebuild"):
                work = Path(shutil.copytree(template, Path(tmp) / f"{arm}-{i}"))
                seed_redis(client, ids)
                stores = stores_at(work, args.redis_url)
                if arm == "forget":
                    t0 = time.perf_counter()
                    report, _ = forget(stores, "company", company, None, work / "reports")
                    row["forget_seconds"] = round(time.perf_counter() - t0, 3)
                    row["forget_seconds_by_phase"] = report["seconds_by_phase"]
                    row["hits_before"] = {k: v["hits_before"] for k, v in report["stores"].items()}
                    row["erased"] = report["erased"]
                    subject = resolve_subject(template / "crm", "company", company)
                else:
                    row["full_rebuild_seconds"] = round(full_rebuild(stores, company, client, ids), 3)
                after = _count_all(stores, subject, set())
                row[f"{arm}_hits_after"] = sum(sum(v.values()) for k, v in after.items() if k != "embedding_cache")
                row[f"{arm}_crm_rows"] = crm_rows(work / "crm")
                shutil.rmtree(work)
            row["same_crm_rows"] = row.pop("forget_crm_rows") == row.pop("full_rebuild_crm_rows")
            runs.append(row)
            print(json.dumps(row), flush=True)
    forget_s = [r["forget_seconds"] for r in runs]
    erase_s = [r["forget_seconds_by_phase"]["erase"] for r in runs]
    rebuild_s = [r["full_rebuild_seconds"] for r in runs]
    result = {
        "benchmark": "erasure: forget one company across every store vs a full rebuild of the file stores and Redis",
        "machine": machine_info(),
        "setup": {
            "opportunities": args.opportunities,
            "crm_rows": rows,
            "snapshot_rows": args.opportunities * 6,
            "prediction_records": 20_000,
            "redis_rows": len(ids),
            "seconds_to_build": round(built, 1),
            "seed": args.seed,
        },
        "runs": runs,
        "median_forget_seconds": statistics.median(forget_s),
        "median_full_rebuild_seconds": statistics.median(rebuild_s),
        "median_forget_erase_phase_seconds": statistics.median(erase_s),
        "forget_over_rebuild": round(statistics.median(forget_s) / statistics.median(rebuild_s), 3),
        "erase_phase_over_rebuild": round(statistics.median(erase_s) / statistics.median(rebuild_s), 3),
        "notes": "forget = resolve + scan every store + erase + re-scan every store (the proof) + report; "
        "its erase phase alone is the like-for-like comparison with the rebuild, which has no proof",
    }
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k.startswith(("median", "forget_over"))}))


if __name__ == "__main__":
    main()
