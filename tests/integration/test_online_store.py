"""The Redis online store against a real redis-server (scripts/redis.sh via the `redis_url` fixture).

Guarantees tested: the layout other processes read (INTERFACE.md), exact round trips, guarded writes that are
idempotent under replay and never regress an entity, ok/stale/unknown per row, model registration, and a
clear error within 2 s (never a hang) when Redis refuses connections or accepts them and never answers.
"""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.online.store import OnlineStore, OnlineStoreError
from fulqrun_ml.online.views import DEAL_WIN_VIEW, FeatureView

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tables():
    return simulate_crm(n_opportunities=150, n_companies=30, n_reps=5, seed=3).tables


@pytest.fixture
def view() -> FeatureView:
    """The deal view under a fresh name per test, so tests never see each other's keys."""
    return dataclasses.replace(DEAL_WIN_VIEW, name=f"deal_win_test_{uuid.uuid4().hex[:8]}")


@pytest.fixture
def store(redis_url: str) -> OnlineStore:
    return OnlineStore(redis_url)


def _rows(view: FeatureView, tables, days_back: int = 90) -> pd.DataFrame:
    as_of = tables.extracted_at - pd.Timedelta(days=days_back)
    return view.compute_at(tables, view.open_entities(tables, as_of)[:6], as_of)


def test_round_trip_is_exact_and_in_request_order(store, view, tables) -> None:
    rows = _rows(view, tables)
    assert store.write(view, rows) == len(rows)
    ids = list(reversed(rows["opportunity_id"].tolist()))
    back = store.read(view, ids, now=rows["as_of"].iloc[0] + pd.Timedelta(minutes=1))
    expected = rows.set_index("opportunity_id").loc[ids].reset_index()
    assert back["opportunity_id"].tolist() == ids
    assert (back["status"] == "ok").all()
    assert (back["as_of"] == expected["as_of"]).all()
    for name in view.numeric_names:
        assert back[name].dtype == np.float64
        np.testing.assert_array_equal(back[name].to_numpy(), expected[name].to_numpy(), err_msg=name)
    for name in view.categorical_names:
        assert back[name].tolist() == expected[name].tolist(), name


def test_layout_is_the_shared_interface(store, view, tables) -> None:
    rows = _rows(view, tables).head(1)
    before = int(time.time() * 1000)
    store.write(view, rows, seq=7)
    key = f"fq:fv:{view.name}:{view.version}:{rows['opportunity_id'].iloc[0]}"
    stored = store.client.hgetall(key)
    assert set(stored) == {*view.spec.names, "_as_of", "_seq", "_written_ms"}
    assert int(stored["_as_of"]) == int(rows["as_of"].iloc[0].timestamp() * 1000)
    assert int(stored["_seq"]) == 7 and int(stored["_written_ms"]) >= before
    assert stored["value"] == repr(float(rows["value"].iloc[0])) and stored["stage"] == rows["stage"].iloc[0]
    ttl_ms = store.client.pttl(key)
    assert 9 * view.ttl.total_seconds() * 1000 < ttl_ms <= 10 * view.ttl.total_seconds() * 1000


def test_guarded_writes_are_idempotent_and_never_regress(store, view, tables) -> None:
    new, old = _rows(view, tables, days_back=90), _rows(view, tables, days_back=91)
    old = old[old["opportunity_id"].isin(new["opportunity_id"])]
    entity = new["opportunity_id"].iloc[0]
    assert store.write(view, new, seq=5) == len(new)
    # replaying the same batch rewrites the same values
    assert store.write(view, new, seq=5) == len(new)
    first = store.read(view, [entity], with_meta=True)
    # an older event (lower seq), or older features (earlier as_of), is refused row by row
    assert store.write(view, new.assign(value=1.0), seq=4) == 0
    assert store.write(view, old, seq=9) == 0
    after = store.read(view, [entity], with_meta=True)
    pd.testing.assert_frame_equal(first.drop(columns="status"), after.drop(columns="status"))
    assert after["seq"].iloc[0] == 5
    # per-row seqs: only the rows that are newer get written
    seqs = [6] + [3] * (len(new) - 1)
    assert store.write(view, new.assign(value=2.0), seq=seqs) == 1
    assert store.read(view, [entity])["value"].iloc[0] == 2.0


def test_status_unknown_and_stale(store, view, tables) -> None:
    rows = _rows(view, tables).head(2)
    store.write(view, rows)
    as_of = rows["as_of"].iloc[0]
    ids = [*rows["opportunity_id"], "no-such-deal"]
    fresh = store.read(view, ids, now=as_of + view.ttl)
    assert fresh["status"].tolist() == ["ok", "ok", "unknown"]
    assert pd.isna(fresh["as_of"].iloc[2]) and np.isnan(fresh["value"].iloc[2]) and fresh["stage"].iloc[2] is None
    late = store.read(view, ids, now=as_of + view.ttl + pd.Timedelta(milliseconds=1))
    assert late["status"].tolist() == ["stale", "stale", "unknown"]


def test_a_malformed_stored_value_is_an_error_naming_the_key(store, view, tables) -> None:
    rows = _rows(view, tables).head(1)
    store.write(view, rows)
    key = view.key(rows["opportunity_id"].iloc[0])
    store.client.hset(key, "value", "lots")
    with pytest.raises(OnlineStoreError, match=key):
        store.read(view, rows["opportunity_id"].tolist())


def test_entity_ids_lists_what_is_online(store, view, tables) -> None:
    rows = _rows(view, tables)
    store.write(view, rows)
    assert store.entity_ids(view) == sorted(rows["opportunity_id"])
    assert len(store.entity_ids(view, limit=2)) == 2


def test_register_ties_models_to_the_view(store, view) -> None:
    store.register(view)
    store.register(view, "deal_win", 1)
    store.register(view, "deal_win", 1)
    store.register(view, "deal_win", 2)
    entry = next(e for e in store.registered_views() if e["name"] == view.name)
    assert entry["version"] == view.version and entry["features"] == view.spec.names
    assert entry["ttl_seconds"] == view.ttl.total_seconds() and entry["entity_column"] == "opportunity_id"
    assert entry["models"] == [{"model": "deal_win", "version": 1}, {"model": "deal_win", "version": 2}]


def test_refused_connection_is_a_clear_error_without_the_password(view) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = OnlineStore(f"redis://:s3cret@127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(OnlineStoreError) as caught:
        store.read(view, ["a"])
    assert time.monotonic() - started < 2.0
    assert f"127.0.0.1:{port}" in str(caught.value) and "reading" in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections (the kernel's backlog) and never answers: a hung Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_a_silent_server_times_out_instead_of_hanging(view, tables, silent_server) -> None:
    store = OnlineStore(f"redis://127.0.0.1:{silent_server}/0", socket_timeout=0.3)
    for operation in (lambda: store.read(view, ["a"]), lambda: store.write(view, _rows(view, tables))):
        started = time.monotonic()
        with pytest.raises(OnlineStoreError, match=f"127.0.0.1:{silent_server}"):
            operation()
        assert time.monotonic() - started < 2.0
