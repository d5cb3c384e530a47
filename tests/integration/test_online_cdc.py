"""Change capture against a real PostgreSQL: triggers + outbox + LISTEN/NOTIFY (`online/cdc.py`).

Guarantees tested: the install is idempotent; inserts, updates and deletes land in the outbox in commit order
with only the contract's columns; a rolled-back change leaves nothing; a transaction that took a lower seq but
commits later is not skipped; a NOTIFY wakes the consumer; and a mirror fed the events equals a fresh load.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pandas as pd
import psycopg
import pytest

from fulqrun_ml.data.contract import TABLE_COLUMNS
from fulqrun_ml.data.schemas import LOAD_ORDER
from fulqrun_ml.data.sources import PostgresSource
from fulqrun_ml.online.cdc import CDCError, OutboxConsumer, cdc_status, install_cdc
from fulqrun_ml.online.mirror import CRMMirror
from tests.integration.cdc_helpers import add_activity, by_key, change_stage, fresh_database, load_tiny_crm

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crm_dsn(pg_dsn: str) -> Iterator[str]:
    for dsn in fresh_database(pg_dsn, "fulqrun_cdc"):
        load_tiny_crm(dsn, n_opportunities=80)
        yield dsn


@pytest.fixture()
def consumer(crm_dsn: str) -> Iterator[OutboxConsumer]:
    install_cdc(crm_dsn)
    with psycopg.connect(crm_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM fulqrun_cdc.outbox")
    consumer = OutboxConsumer(crm_dsn)
    yield consumer
    consumer.close()


def open_deals(dsn: str, n: int) -> list[str]:
    """`n` deals, open ones first (a tiny CRM has only a few open deals)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT id::text FROM opportunities ORDER BY stage IN ('closed_won', 'closed_lost'), id LIMIT %s",
            (n,),
        ).fetchall()
    return [r[0] for r in rows]


def test_install_is_idempotent_and_refuses_unknown_tables(crm_dsn):
    first = install_cdc(crm_dsn)
    second = install_cdc(crm_dsn)
    captured = {*LOAD_ORDER, "meddpicc_events", "notes"}  # the optional event tables too (the CRM has them)
    assert first == second and set(first) == captured
    status = cdc_status(crm_dsn)
    assert status["installed"] and sorted(status["tables"]) == sorted(captured)
    with psycopg.connect(crm_dsn) as conn:  # one trigger per table, not one per install
        n = conn.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'fulqrun_cdc_capture'").fetchone()[0]
    assert n == len(captured)
    with pytest.raises(CDCError, match="unknown CRM tables \\['deals'\\]"):
        install_cdc(crm_dsn, tables=["deals"])


def test_changes_land_in_commit_order_with_contract_columns_only(crm_dsn, consumer):
    deal = open_deals(crm_dsn, 1)[0]
    with psycopg.connect(crm_dsn) as conn:
        conn.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS private_notes text")
        conn.commit()
        activity = add_activity(conn, deal)
        conn.execute("UPDATE opportunities SET value = 777 WHERE id = %s", (deal,))
        conn.execute("DELETE FROM activities WHERE id = %s", (activity,))
        conn.commit()
        add_activity(conn, deal)
        conn.rollback()  # a rolled-back change leaves no event
        conn.execute(
            "UPDATE contacts SET private_notes = 'home address' WHERE id = (SELECT min(id::text)::uuid FROM contacts)"
        )
        conn.commit()
    events = consumer.read(100).events
    assert [(e.table, e.op) for e in events] == [
        ("activities", "INSERT"),
        ("opportunities", "UPDATE"),
        ("activities", "DELETE"),
        ("contacts", "UPDATE"),
    ]
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert events[0].row["id"] == activity and events[2].old_key == {"id": activity}
    assert float(events[1].row["value"]) == 777 and set(events[1].row) == set(TABLE_COLUMNS["opportunities"])
    assert "private_notes" not in events[3].row  # extra CRM columns (maybe PII) never reach the outbox
    assert all(e.committed_at.tzinfo is not None for e in events)
    consumer.ack([e.seq for e in events])
    assert consumer.read(100).events == [] and cdc_status(crm_dsn)["pending"] == 0


def test_a_late_committing_lower_seq_is_not_skipped(crm_dsn, consumer):
    """T1 takes seq n, T2 takes n+1 and commits first: the consumer acks n+1, and still gets n later."""
    early, late = open_deals(crm_dsn, 2)
    t1 = psycopg.connect(crm_dsn)
    t2 = psycopg.connect(crm_dsn)
    try:
        add_activity(t1, early)
        add_activity(t2, late)
        t2.commit()
        first = consumer.read(100).events
        assert [e.row["related_id"] for e in first] == [late]
        consumer.ack([e.seq for e in first])
        t1.commit()
        second = consumer.read(100).events
        assert [e.row["related_id"] for e in second] == [early] and second[0].seq < first[0].seq
        consumer.ack([e.seq for e in second])
    finally:
        t1.close()
        t2.close()


def test_notify_wakes_the_consumer(crm_dsn, consumer):
    deal = open_deals(crm_dsn, 1)[0]

    def write_later() -> None:
        time.sleep(0.3)
        with psycopg.connect(crm_dsn) as conn:
            add_activity(conn, deal)

    writer = threading.Thread(target=write_later)
    started = time.perf_counter()
    writer.start()
    assert consumer.wait(timeout=10.0) is True
    waited = time.perf_counter() - started
    writer.join()
    assert 0.2 < waited < 5.0
    assert consumer.wait(timeout=0.05) is False  # nothing more: the poll fallback times out
    events = consumer.read(10).events
    consumer.ack([e.seq for e in events])
    assert len(events) == 1


def test_mirror_fed_the_events_equals_a_fresh_load(crm_dsn, consumer):
    deals = open_deals(crm_dsn, 6)
    with psycopg.connect(crm_dsn) as conn:  # committed before the mirror's snapshot: pending, already reflected
        add_activity(conn, deals[0], "meeting", "inbound")
    tables, reflected = consumer.load()
    assert len(reflected) == 1
    mirror = CRMMirror(tables)
    with psycopg.connect(crm_dsn) as conn:
        for i, deal in enumerate(deals):
            add_activity(conn, deal, ["call", "email", "meeting"][i % 3])
            conn.commit()
        change_stage(conn, deals[1], "closed_won")
        change_stage(conn, deals[2], "negotiation")
        conn.execute(
            "UPDATE companies SET employee_count = 4242, industry = 'energy' WHERE id = "
            "(SELECT company_id FROM opportunities WHERE id = %s)",
            (deals[3],),
        )
        conn.execute(
            "DELETE FROM activities WHERE id = (SELECT min(id::text)::uuid FROM activities WHERE related_id = %s)",
            (deals[4],),
        )
        conn.execute(
            "UPDATE stage_history SET changed_at = changed_at - interval '1 second' "
            "WHERE opportunity_id = %s AND to_stage = 'negotiation'",
            (deals[2],),
        )
        conn.execute(
            "UPDATE leads SET status = 'contacted', updated_at = clock_timestamp() WHERE id = "
            "(SELECT min(id::text)::uuid FROM leads WHERE status = 'new')"
        )
        conn.execute(
            "INSERT INTO users (id, organization_id, role, manager_id, region, created_at) SELECT %s, "
            "organization_id, 'rep', NULL, 'emea', clock_timestamp() FROM users LIMIT 1",
            (str(uuid.uuid4()),),
        )
        conn.commit()
    applied = 0
    while True:
        batch = consumer.read(7)  # small batches: keys spread over several of them
        if not len(batch):
            break
        result = mirror.apply(batch.events, reflected & set(batch.seqs))
        assert result.dead_letters == [] and batch.malformed == []
        consumer.ack(batch.seqs)
        applied += len(batch)
    assert applied >= 14
    fresh = PostgresSource(crm_dsn).load()
    for name in TABLE_COLUMNS:
        mirrored = by_key(mirror.tables.table(name), name)  # activities are kept in arrival order
        pd.testing.assert_frame_equal(mirrored, by_key(fresh.table(name), name), obj=name)
