"""`scripts/bench_meddpicc_freshness.py`: how fresh the MEDDPICC and note features are in Redis after a CRM write.

The real path, as `benchmarks/freshness.py` runs it for stage changes: a simulated CRM in a throwaway PostgreSQL
with change capture (now including `meddpicc_events` and `notes`), the stream worker keeping the views current in a
throwaway Redis, and a probe that commits one write on an open deal and polls the deal's Redis row (every ~2 ms)
until it reflects the write: the watched feature changed and the row was computed after the clock started
(just before the INSERT). Kinds,
measured in the same run on the same worker:

- `activity` (the baseline, the existing path): an activity on the deal -> `activities_total` of `deal_win`;
- `meddpicc_write`: a MEDDPICC element scored -> `meddpicc_writes` of `deal_win_meddpicc`;
- `note`: a call summary -> `deal_notes` of `deal_win_meddpicc`, and the deal's mean note embedding
  (`deal_note_embedding`, encoded at write time) -> its first dimension.

Reported per kind: p50 / p99 / max of commit -> Redis milliseconds over `probes` probes, with the machine; goal
(the same as the freshness report's): p99 < 1 s. Output: reports/bench_meddpicc_freshness.json.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import load_crm_into_postgres
from fulqrun_ml.machine import machine_info
from fulqrun_ml.online.cdc import install_cdc
from fulqrun_ml.online.live_update import local_services
from fulqrun_ml.online.note_embeddings import NAMES, note_embedding_view
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.stream import StreamWorker
from fulqrun_ml.online.views import DEAL_WIN_MEDDPICC_VIEW, DEAL_WIN_VIEW, FeatureView
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.text.encoder import TextEncoder

GOAL_P99_MS = 1000.0
WRITES: dict[str, str] = {
    "activity": (
        "INSERT INTO activities (id, organization_id, type, status, subject, description, related_type, related_id,"
        " created_by, due_date, created_at, direction) SELECT %(id)s, organization_id, 'call', 'completed', 'probe',"
        " NULL, 'opportunity', id, assigned_to, NULL, clock_timestamp(), 'outbound'"
        " FROM opportunities WHERE id = %(deal)s"
    ),
    "meddpicc_write": (
        "INSERT INTO meddpicc_events (opportunity_id, field, score, text, changed_at, changed_by) SELECT id,"
        " 'decision_process', 6, 'probe', clock_timestamp(), assigned_to FROM opportunities WHERE id = %(deal)s"
    ),
    "note": (
        "INSERT INTO notes (id, organization_id, related_type, related_id, author, kind, body, created_at) SELECT"
        " %(id)s, organization_id, 'opportunity', id, assigned_to, 'call_summary', %(body)s, clock_timestamp()"
        " FROM opportunities WHERE id = %(deal)s"
    ),
}


def watch(store: OnlineStore, view: FeatureView, field: str) -> Callable[[str], tuple[float, str | None]]:
    """(as_of ms, the field's stored text) of one deal's row."""

    def read(deal: str) -> tuple[float, str | None]:
        as_of, value = store.client.hmget(view.key(deal), ["_as_of", field])
        return (float(as_of) if as_of is not None else -1.0), value

    return read


def probe(conn: psycopg.Connection, kind: str, deal: str, watchers: list[Callable], timeout_s: float) -> list[float]:
    """Commit one write of `kind` on `deal`; per watcher, ms until its row shows it (nan after `timeout_s`)."""
    before = [w(deal)[1] for w in watchers]
    body = f"Probe {uuid.uuid4().hex[:6]}: budget approved, ready to sign"
    # The clock starts before the write: its row time and the trigger's clock are after this, and the worker may
    # see the change before commit() returns here. So the figures include the INSERT and COMMIT (~1-2 ms).
    started_ms, t0 = np.floor(time.time() * 1000.0), time.perf_counter()
    conn.execute(WRITES[kind], {"id": str(uuid.uuid4()), "deal": deal, "body": body})
    conn.commit()
    found = [float("nan")] * len(watchers)
    while time.perf_counter() - t0 < timeout_s and any(np.isnan(found)):
        for i, read in enumerate(watchers):
            if np.isnan(found[i]):
                as_of, value = read(deal)
                if value != before[i] and as_of >= started_ms:
                    found[i] = (time.perf_counter() - t0) * 1000.0
        time.sleep(0.002)
    if any(np.isnan(found)):
        print("timed out:", kind, deal, before, [w(deal) for w in watchers], started_ms, flush=True)
    return found


def stats(values: list[float]) -> dict[str, Any]:
    done = np.array([v for v in values if not np.isnan(v)])
    if not len(done):
        return {"n": len(values), "timed_out": len(values)}
    return {
        "n": len(values),
        "timed_out": int(len(values) - len(done)),
        "p50_ms": round(float(np.percentile(done, 50)), 1),
        "p99_ms": round(float(np.percentile(done, 99)), 1),
        "max_ms": round(float(done.max()), 1),
    }


def run(probes: int, n_opportunities: int, seed: int, timeout_s: float) -> dict[str, Any]:
    with local_services("meddpicc") as (dsn, redis_url), tempfile.TemporaryDirectory() as work:
        crm = simulate_crm(n_opportunities=n_opportunities, n_companies=n_opportunities // 8, n_reps=20, seed=seed)
        load_crm_into_postgres(crm.tables, dsn)
        captured = install_cdc(dsn)
        store = OnlineStore(redis_url, socket_timeout=2.0)
        notes_view = note_embedding_view(TextEncoder(cache_dir=Path(work) / "embeddings"))
        worker = StreamWorker(dsn, store, [DEAL_WIN_VIEW, DEAL_WIN_MEDDPICC_VIEW, notes_view], poll_timeout=0.05)
        worker.start()
        opps = crm.tables.opportunities
        deals = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].astype(str).tolist()
        watchers = {
            "activity": [watch(store, DEAL_WIN_VIEW, "activities_total")],
            "meddpicc_write": [watch(store, DEAL_WIN_MEDDPICC_VIEW, "meddpicc_writes")],
            "note": [watch(store, DEAL_WIN_MEDDPICC_VIEW, "deal_notes"), watch(store, notes_view, NAMES[0])],
        }
        stop = threading.Event()
        thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
        thread.start()
        results: dict[str, list[list[float]]] = {kind: [] for kind in WRITES}
        rng = np.random.default_rng(seed)
        try:
            with psycopg.connect(dsn) as conn:
                for _ in range(probes):
                    for kind in WRITES:  # interleaved: the kinds see the same machine load
                        deal = deals[int(rng.integers(len(deals)))]
                        results[kind].append(probe(conn, kind, deal, watchers[kind], timeout_s))
        finally:
            stop.set()
            thread.join(timeout=30)
            worker.close()
    rows = {
        "activity -> deal_win (baseline)": stats([r[0] for r in results["activity"]]),
        "meddpicc_write -> deal_win_meddpicc": stats([r[0] for r in results["meddpicc_write"]]),
        "note -> deal_win_meddpicc": stats([r[0] for r in results["note"]]),
        "note -> deal_note_embedding": stats([r[1] for r in results["note"]]),
    }
    return {"captured_tables": sorted(captured), "freshness": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=40, help="probes per kind")
    parser.add_argument("--opportunities", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--out", default="reports")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": machine_info(), "goal_p99_ms": GOAL_P99_MS}
    report |= {"settings": {k: v for k, v in vars(args).items() if k != "out"}}
    report |= run(args.probes, args.opportunities, args.seed, args.timeout_s)
    report["machine_after"] = machine_info()
    report["goal_met"] = all(
        r.get("timed_out", 1) == 0 and r["p99_ms"] < GOAL_P99_MS for r in report["freshness"].values()
    )
    atomic_write_json(Path(args.out) / "bench_meddpicc_freshness.json", report)
    print(report["freshness"], "goal met:", report["goal_met"])
    return 0
