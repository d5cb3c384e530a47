"""MEDDPICC writes and notes through change capture into the online store (real PostgreSQL and Redis).

Guarantees tested: `install_cdc` captures the optional `meddpicc_events` and `notes` tables; a MEDDPICC write, a
new note, an edited note and a deleted MEDDPICC write each update that deal's `deal_win_meddpicc` features in
Redis; the streamed rows equal `compute_deal_meddpicc_features` (the training definition) recomputed offline
from a fresh load of the CRM at the stored as_of; a CRM without notes leaves the view alone instead of failing
batches. Printed: commit -> Redis latency of the MEDDPICC / note events (freshness).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import psycopg
import pytest

from fulqrun_ml.online.cdc import install_cdc
from fulqrun_ml.online.note_embeddings import NAMES, note_embedding_view
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.stream import StreamWorker
from fulqrun_ml.online.stream import main as stream_main
from fulqrun_ml.online.views import DEAL_WIN_MEDDPICC_VIEW, DEAL_WIN_VIEW
from fulqrun_ml.text.encoder import TextEncoder
from tests.integration.cdc_helpers import fresh_database, load_tiny_crm, online_vs_offline

pytestmark = pytest.mark.integration
VIEW = DEAL_WIN_MEDDPICC_VIEW


@pytest.fixture(scope="module")
def crm_dsn(pg_dsn: str) -> Iterator[str]:
    for dsn in fresh_database(pg_dsn, "fulqrun_meddpicc_cdc"):
        load_tiny_crm(dsn, seed=13, n_opportunities=150)
        captured = install_cdc(dsn)
        assert {"meddpicc_events", "notes"} <= set(captured), sorted(captured)
        yield dsn


@pytest.fixture(scope="module")
def store(redis_url: str) -> OnlineStore:
    store = OnlineStore(redis_url.rsplit("/", 1)[0] + "/11", socket_timeout=2.0)
    store.client.flushdb()
    return store


def drain(worker: StreamWorker) -> list[float]:
    """Run batches until none is pending; the commit -> Redis latencies (ms) of every event."""
    latencies: list[float] = []
    while (result := worker.run_once()).events:
        latencies += result.latencies_ms
    return latencies


def open_deals(dsn: str, n: int) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT o.id::text FROM opportunities o WHERE o.stage NOT IN ('closed_won', 'closed_lost') AND EXISTS"
            " (SELECT 1 FROM meddpicc_events m WHERE m.opportunity_id = o.id) AND EXISTS (SELECT 1 FROM notes n"
            " WHERE n.related_id = o.id AND n.related_type = 'opportunity') ORDER BY o.id LIMIT %s",
            (n,),
        ).fetchall()
    assert len(rows) == n, "the tiny CRM has too few open deals with MEDDPICC writes and notes"
    return [r[0] for r in rows]


def test_meddpicc_and_note_changes_reach_the_deal_features_in_redis(crm_dsn, store, tmp_path):
    notes_view = note_embedding_view(TextEncoder(cache_dir=tmp_path / "embeddings"))
    worker = StreamWorker(crm_dsn, store, [VIEW, DEAL_WIN_VIEW, notes_view], batch_size=50)
    try:
        worker.start()
        drain(worker)
        a, b, c, d = open_deals(crm_dsn, 4)
        before = notes_view.compute_at(worker.mirror.tables, [b, c], pd.Timestamp.now(tz="UTC"))
        with psycopg.connect(crm_dsn) as conn:
            conn.execute(
                "INSERT INTO meddpicc_events (opportunity_id, field, score, text, changed_at, changed_by)"
                " SELECT id, 'champion', 9, 'new champion: the CFO', clock_timestamp(), assigned_to"
                " FROM opportunities WHERE id = %s",
                (a,),
            )
            conn.execute(
                "INSERT INTO notes (id, organization_id, related_type, related_id, author, kind, body, created_at)"
                " SELECT %s, organization_id, 'opportunity', id, assigned_to, 'call_summary',"
                " 'Budget approved, they are ready to sign this week', clock_timestamp()"
                " FROM opportunities WHERE id = %s",
                (str(uuid.uuid4()), b),
            )
            conn.execute(
                "UPDATE notes SET body = 'The project is frozen, the sponsor went quiet' WHERE id ="
                " (SELECT id FROM notes WHERE related_id = %s ORDER BY created_at DESC LIMIT 1)",
                (c,),
            )
            conn.execute(
                "DELETE FROM meddpicc_events WHERE (opportunity_id, changed_at) IN (SELECT opportunity_id,"
                " changed_at FROM meddpicc_events WHERE opportunity_id = %s ORDER BY changed_at DESC LIMIT 1)",
                (d,),
            )
            conn.commit()
        latencies = drain(worker)
        assert latencies, "no change event was captured from meddpicc_events / notes"
        print(f"\nMEDDPICC/notes commit -> Redis: p50 {np.median(latencies):.0f} ms, max {max(latencies):.0f} ms")
        online = store.read(VIEW, [a, b, c, d], with_meta=True).set_index("opportunity_id")
        assert (online["status"] == "ok").all(), online["status"].to_dict()
        assert online.at[a, "meddpicc_writes_30d"] >= 1 and online.at[a, "meddpicc_days_since_write"] < 0.01
        assert online.at[b, "deal_notes_30d"] >= 1 and online.at[b, "deal_positive_share"] > 0
        assert online.at[c, "deal_negative_share"] > 0
        # Only the MEDDPICC view reads these tables: the plain deal-win rows were not rewritten for them.
        assert store.read(DEAL_WIN_VIEW, [a, b, c, d])["status"].eq("unknown").all()
        mismatches = online_vs_offline(store, VIEW, crm_dsn, [a, b, c, d])
        assert mismatches.empty, mismatches.to_string()
        # The note embeddings were written at CDC time, for the deals whose notes changed only.
        vectors = store.read(notes_view, [a, b, c, d]).set_index("opportunity_id")[list(NAMES)]
        assert vectors.loc[a].isna().all() and vectors.loc[d].isna().all()
        moved = 1.0 - (vectors.loc[[b, c]].to_numpy() * before[list(NAMES)].to_numpy()).sum(axis=1)
        assert (moved > 1e-3).all() and np.allclose(np.linalg.norm(vectors.loc[[b, c]].to_numpy(), axis=1), 1.0)
        mismatches = online_vs_offline(store, notes_view, crm_dsn, [b, c])
        assert mismatches.empty, mismatches.head().to_string()
    finally:
        worker.close()


def test_a_crm_without_notes_leaves_the_view_alone(pg_dsn, redis_url):
    """The view's builder refuses such a CRM; the worker must skip the view, not fail (and retry) every batch."""
    for dsn in fresh_database(pg_dsn, "fulqrun_meddpicc_none"):
        load_tiny_crm(dsn, seed=14, n_opportunities=60)
        with psycopg.connect(dsn) as conn:
            conn.execute("DELETE FROM notes")
            conn.commit()
        install_cdc(dsn)
        store = OnlineStore(redis_url.rsplit("/", 1)[0] + "/12", socket_timeout=2.0)
        store.client.flushdb()
        worker = StreamWorker(dsn, store, [VIEW, DEAL_WIN_VIEW], batch_size=50)
        try:
            worker.start()
            (deal,) = open_deals_any(dsn)
            with psycopg.connect(dsn) as conn:
                conn.execute(
                    "INSERT INTO meddpicc_events (opportunity_id, field, score, text, changed_at, changed_by)"
                    " SELECT id, 'metrics', 7, NULL, clock_timestamp(), NULL FROM opportunities WHERE id = %s",
                    (deal,),
                )
                conn.execute("UPDATE opportunities SET value = value + 1 WHERE id = %s", (deal,))
                conn.commit()
            result = worker.run_once()
            assert result.events == 2 and result.entities == {DEAL_WIN_VIEW.name: 1}
            assert store.read(VIEW, [deal])["status"].tolist() == ["unknown"]
        finally:
            worker.close()


def open_deals_any(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [
            conn.execute(
                "SELECT id::text FROM opportunities WHERE stage NOT IN ('closed_won', 'closed_lost')"
                " ORDER BY id LIMIT 1"
            ).fetchone()[0]
        ]


def test_the_stream_command_keeps_the_note_embeddings(crm_dsn, redis_url, tmp_path):
    """`fulqrun-ml online stream --note-embeddings DIR`: the embedding view joins the worker's views."""
    url = redis_url.rsplit("/", 1)[0] + "/14"
    OnlineStore(url).client.flushdb()
    (deal,) = open_deals(crm_dsn, 1)
    with psycopg.connect(crm_dsn) as conn:
        conn.execute(
            "INSERT INTO notes (id, organization_id, related_type, related_id, author, kind, body, created_at)"
            " SELECT %s, organization_id, 'opportunity', id, NULL, 'note', 'Exec sponsor signed off', clock_timestamp()"
            " FROM opportunities WHERE id = %s",
            (str(uuid.uuid4()), deal),
        )
        conn.commit()
    cache = tmp_path / "embeddings"
    args = ["--dsn", crm_dsn, "--redis", url, "--views", "deal_win_meddpicc", "--until-idle"]
    assert stream_main([*args, "--note-embeddings", str(cache)]) == 0
    view = note_embedding_view(TextEncoder(cache_dir=cache))
    row = OnlineStore(url).read(view, [deal])
    assert row["status"].tolist() == ["ok"]
    assert np.isclose(np.linalg.norm(row[list(NAMES)].to_numpy(float)), 1.0)
    assert OnlineStore(url).read(VIEW, [deal])["status"].tolist() == ["ok"]
