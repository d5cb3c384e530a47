"""The stream worker against real PostgreSQL and Redis (`online/stream.py`).

Guarantees tested: streamed features equal the same view computed offline from a fresh load at the stored
as_of (touched deals, rep aggregates, leads); a kill -9 between the Redis write and the outbox delete, and one
at a random moment, lose nothing and double-apply nothing; a malformed event is dead-lettered with the field
named while the worker keeps going. Also measured (printed): events/s and commit -> Redis latency.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from fulqrun_ml.online.cdc import OutboxConsumer, cdc_status, install_cdc
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.stream import FAULT_FILE_ENV, FAULT_SLEEP_ENV, StreamStats, StreamWorker
from fulqrun_ml.online.views import DEAL_WIN_VIEW, LEAD_CONVERSION_VIEW
from tests.integration.cdc_helpers import add_activity, change_stage, fresh_database, load_tiny_crm, online_vs_offline

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def redis_db(url: str, db: int) -> str:
    """The session server's URL with another database number, so these tests own their keys."""
    return url.rsplit("/", 1)[0] + f"/{db}"


@pytest.fixture(scope="module")
def crm_dsn(pg_dsn: str) -> Iterator[str]:
    for dsn in fresh_database(pg_dsn, "fulqrun_stream"):
        load_tiny_crm(dsn, seed=11)
        install_cdc(dsn)
        yield dsn


@pytest.fixture(scope="module")
def store(redis_url: str) -> OnlineStore:
    store = OnlineStore(redis_db(redis_url, 7), socket_timeout=2.0)
    store.client.flushdb()
    return store


def drain(worker: StreamWorker, stats: StreamStats | None = None) -> int:
    total = 0
    while True:
        result = worker.run_once()
        if stats is not None:
            stats.add(result)
        if result.events == 0:
            return total
        total += result.events


def new_deals(conn: psycopg.Connection, rep: str, n: int) -> list[str]:
    """`n` new deals for `rep`, created now in prospecting (opportunity row + its first stage-history row)."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for deal in ids:
        conn.execute(
            "INSERT INTO opportunities (id, organization_id, company_id, contact_id, assigned_to, stage, value,"
            " created_at, updated_at) SELECT %s, organization_id, company_id, NULL, %s, 'prospecting', 50000,"
            " clock_timestamp(), clock_timestamp() FROM opportunities WHERE assigned_to = %s LIMIT 1",
            (deal, rep, rep),
        )
        conn.execute(
            "INSERT INTO stage_history (opportunity_id, from_stage, to_stage, changed_at)"
            " VALUES (%s, NULL, 'prospecting', clock_timestamp())",
            (deal,),
        )
    return ids


def some_rep(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT assigned_to::text FROM opportunities ORDER BY id LIMIT 1").fetchone()[0]


def test_streamed_features_equal_offline_at_the_same_as_of(crm_dsn, store):
    worker = StreamWorker(crm_dsn, store, [DEAL_WIN_VIEW, LEAD_CONVERSION_VIEW], batch_size=20)
    try:
        worker.start()
        drain(worker)
        rep = some_rep(crm_dsn)
        with psycopg.connect(crm_dsn) as conn:
            deals = new_deals(conn, rep, 3)
            conn.commit()
            for deal in deals:
                add_activity(conn, deal, "meeting", "inbound")
                conn.commit()
        drain(worker)
        before = store.read(DEAL_WIN_VIEW, deals)
        assert (before["status"] == "ok").all() and (before["activities_total"] == 1).all()
        with psycopg.connect(crm_dsn) as conn:
            change_stage(conn, deals[0], "closed_won")  # the rep's record changes: its other open deals follow
            conn.execute(
                "UPDATE leads SET status = 'contacted', updated_at = clock_timestamp() WHERE id = "
                "(SELECT id FROM leads WHERE status = 'new' ORDER BY id LIMIT 1)"
            )
            conn.commit()
        drain(worker)
        after = store.read(DEAL_WIN_VIEW, deals, with_meta=True)
        # One more win on the rep's record: the smoothed win rate of every other deal of the rep goes up.
        assert (after["rep_win_rate"].to_numpy()[1:] > before["rep_win_rate"].to_numpy()[1:]).all()
        assert after.loc[0, "stage"] == "closed_won" and (after["seq"] > 0).all()
        for view in (DEAL_WIN_VIEW, LEAD_CONVERSION_VIEW):
            ids = store.entity_ids(view)
            assert ids, f"nothing streamed for {view.name}"
            mismatches = online_vs_offline(store, view, crm_dsn, ids)
            assert mismatches.empty, mismatches.head(10).to_string()
    finally:
        worker.close()


def test_malformed_events_are_dead_lettered_and_the_worker_goes_on(crm_dsn, store):
    worker = StreamWorker(crm_dsn, store, [DEAL_WIN_VIEW], batch_size=50)
    try:
        worker.start()
        drain(worker)
        deal = new_deals_committed(crm_dsn)
        drain(worker)  # the deal's own events first: a key refused in a batch sets aside all its events there
        with psycopg.connect(crm_dsn) as conn:
            conn.execute("INSERT INTO fulqrun_cdc.outbox (table_name, op, row) VALUES ('deals', 'INSERT', '{}')")
            conn.execute("INSERT INTO fulqrun_cdc.outbox (table_name, op, row) VALUES ('leads', 'UPSERT', '{}')")
            conn.execute("INSERT INTO fulqrun_cdc.outbox (table_name, op, row) VALUES ('activities', 'INSERT', '7')")
            conn.execute("UPDATE opportunities SET stage = 'closed_maybe' WHERE id = %s", (deal,))
            conn.commit()
            add_activity(conn, deal)
            conn.commit()
        drain(worker)
        status = cdc_status(crm_dsn)
        assert status["pending"] == 0 and status["dead_letters"] == 4
        consumer = OutboxConsumer(crm_dsn)
        errors = [d["error"] for d in consumer.dead_letters()]
        consumer.close()
        assert "field 'table_name'" in errors[0] and "'deals'" in errors[0]
        assert "field 'op'" in errors[1] and "UPSERT" in errors[1]
        assert "field 'row'" in errors[2]
        assert "field 'stage'" in errors[3] and "closed_maybe" in errors[3]
        with psycopg.connect(crm_dsn) as conn:  # repaired at the source: the deal is streamed again
            conn.execute("UPDATE opportunities SET stage = 'prospecting' WHERE id = %s", (deal,))
        drain(worker)
        row = store.read(DEAL_WIN_VIEW, [deal])
        assert row.loc[0, "status"] == "ok" and row.loc[0, "activities_total"] == 1
    finally:
        worker.close()


def new_deals_committed(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        deal = new_deals(conn, some_rep(dsn), 1)[0]
    return deal


def writer_loop(dsn: str, deals: list[str], stop: threading.Event, rate: float, seed: int) -> int:
    """Touches, stage changes and closes on `deals` at about `rate` transactions per second."""
    rng = random.Random(seed)
    written = 0
    stages = ["qualifying", "proposal", "negotiation"]
    with psycopg.connect(dsn) as conn:
        while not stop.is_set():
            deal = rng.choice(deals)
            if rng.random() < 0.85:
                add_activity(conn, deal, rng.choice(["call", "email", "meeting"]), rng.choice(["inbound", "outbound"]))
            else:
                change_stage(conn, deal, rng.choice(stages) if rng.random() < 0.8 else "closed_lost")
            conn.commit()
            written += 1
            time.sleep(1.0 / rate)
    return written


def start_worker(dsn: str, url: str, log: Path, stats: Path, env: dict[str, str]) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "fulqrun_ml.online.stream",
        "--dsn",
        dsn,
        "--redis",
        url,
        "--views",
        "deal_win",
        "--batch-size",
        "25",
        "--poll-timeout",
        "0.1",
        "--stats",
        str(stats),
    ]
    return subprocess.Popen(
        command, cwd=REPO, env={**os.environ, **env}, stdout=log.open("a"), stderr=subprocess.STDOUT
    )


@pytest.fixture()
def kill_dsn(pg_dsn: str) -> Iterator[str]:
    yield from fresh_database(pg_dsn, "fulqrun_kill")


def test_kill_9_loses_nothing_and_applies_nothing_twice(kill_dsn, redis_url, tmp_path):
    dsn = kill_dsn
    url = redis_db(redis_url, 8)
    store = OnlineStore(url, socket_timeout=2.0)
    store.client.flushdb()
    load_tiny_crm(dsn, seed=12)
    install_cdc(dsn)
    with psycopg.connect(dsn) as conn:
        deals = new_deals(conn, some_rep(dsn), 12)
    log, fault = tmp_path / "worker.log", tmp_path / "fault.json"
    stop = threading.Event()
    written: list[int] = []
    writer = threading.Thread(target=lambda: written.append(writer_loop(dsn, deals, stop, 40.0, 1)))
    worker = start_worker(dsn, url, log, tmp_path / "s1.json", {FAULT_FILE_ENV: str(fault), FAULT_SLEEP_ENV: "300"})
    writer.start()
    try:
        deadline = time.monotonic() + 180
        while not fault.exists() and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.1)
        assert fault.exists(), f"the worker never reached the fault point: {log.read_text()[-2000:]}"
        time.sleep(0.2)
        parked = json.loads(fault.read_text())
        worker.send_signal(signal.SIGKILL)  # after its Redis write, before the outbox delete
        worker.wait(30)
        with psycopg.connect(dsn) as conn:
            still = {r[0] for r in conn.execute("SELECT seq FROM fulqrun_cdc.outbox").fetchall()}
        assert set(parked) <= still, "the killed batch was acknowledged"
        # second life: killed at a random moment mid-stream
        worker = start_worker(dsn, url, log, tmp_path / "s2.json", {})
        deadline = time.monotonic() + 180
        while log.read_text().count("mirror loaded") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(random.Random(2).uniform(1.0, 3.0))  # a moment mid-stream
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        stop.set()
        writer.join(30)
        if worker.poll() is None:
            worker.kill()
    # third life drains and exits once idle
    final = subprocess.run(
        [
            sys.executable,
            "-m",
            "fulqrun_ml.online.stream",
            "--dsn",
            dsn,
            "--redis",
            url,
            "--views",
            "deal_win",
            "--until-idle",
            "--poll-timeout",
            "0.5",
            "--stats",
            str(tmp_path / "s3.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-3000:]
    status = cdc_status(dsn)
    assert status["pending"] == 0 and status["dead_letters"] == 0, status
    assert written and written[0] > 50
    # nothing lost, nothing doubled: every streamed deal equals the offline recomputation at its stored as_of
    mismatches = online_vs_offline(store, DEAL_WIN_VIEW, dsn, deals)
    assert mismatches.empty, mismatches.head(10).to_string()
    online = store.read(DEAL_WIN_VIEW, deals).set_index("opportunity_id")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT related_id::text, count(*), max(created_at) FROM activities"
            " WHERE related_id = ANY(%s::uuid[]) GROUP BY 1",
            (deals,),
        ).fetchall()
    assert len(rows) == len(deals)
    for deal, count, newest in rows:
        assert online.at[deal, "as_of"] >= pd.Timestamp(newest).floor("ms"), f"deal {deal}: newest touch missing"
        assert online.at[deal, "activities_total"] == count, f"deal {deal}: {online.at[deal, 'activities_total']}"
    drained = json.loads((tmp_path / "s3.json").read_text())
    print("kill -9 run:", {"transactions_written": written[0], "final_drain": drained})
