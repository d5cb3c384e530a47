"""`<model>_by_id` on a real Triton reading a real Redis: ids in, the raw-record endpoint's answers out.

The deal features are computed by `compute_deal_features` (the definition training uses) for open deals of
the simulated CRM, written to Redis by `OnlineStore.write` (layout: src/fulqrun_ml/online/INTERFACE.md), and
the same rows are sent to `deal_win` as records: both answers must agree. This module runs its own Redis
(scripts/redis.sh, its own data dir), because one test stops it mid-run.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
import tritonclient.grpc as grpcclient
from omegaconf import OmegaConf
from tritonclient.utils import InferenceServerException

from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, compute_deal_features
from fulqrun_ml.online.store import OnlineStore
from fulqrun_ml.online.views import view_for_task
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.serving.client import AsyncTritonPredictionClient, TritonPredictionClient
from fulqrun_ml.serving.codec import OnlineStoreUnavailableError
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "redis.sh"
VIEW = view_for_task("deal_win")
TTL_S = int(VIEW.ttl.total_seconds())
PREFIX = VIEW.key("")
MAX_BATCH = 64
N_DEALS = 40


def redis_sh(*args: str) -> str:
    done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-800:]
    return done.stdout.strip()


@pytest.fixture(scope="module")
def own_redis():
    """(url, port, data dir) of a Redis server only this module uses."""
    data_dir = f"/tmp/fulqrun-redis-byid-{uuid.uuid4().hex[:8]}"
    url = redis_sh("start", "--data-dir", data_dir)
    try:
        yield url, int(url.rsplit(":", 1)[1].split("/")[0]), data_dir
    finally:
        subprocess.run([str(SCRIPT), "stop", "--data-dir", data_dir, "--purge"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def deal_rows(tiny_crm) -> pd.DataFrame:
    """opportunity_id + the deal-win features of N open deals, as of the CRM's last activity."""
    opps = tiny_crm.tables.opportunities
    open_ids = opps.loc[~opps["stage"].isin(["closed_won", "closed_lost"]), "id"].head(N_DEALS)
    as_of = tiny_crm.tables.activities["created_at"].max()
    index = pd.DataFrame({"opportunity_id": open_ids.to_numpy(), "as_of": as_of})
    frame = compute_deal_features(tiny_crm.tables, index)
    assert len(frame) == N_DEALS
    return frame[["opportunity_id", *DEAL_WIN_FEATURES.names]].reset_index(drop=True)


def write_rows(url: str, rows: pd.DataFrame, as_of_ms: int, corrupt: dict | None = None) -> None:
    """Through the online store (`OnlineStore.write`, the writers' own path); `corrupt` then overwrites
    fields of the stored hashes directly, as a buggy or foreign writer could."""
    store = OnlineStore(url)
    frame = rows.assign(as_of=pd.Timestamp(as_of_ms, unit="ms", tz="UTC"))
    keys = [VIEW.key(i) for i in rows["opportunity_id"]]
    store.client.delete(*keys)  # the store never lets an older as_of replace a newer row: start clean
    assert store.write(VIEW, frame) == len(rows)
    if corrupt:
        for key in keys:
            store.client.hset(key, mapping=corrupt)


def register_view(url: str, version: int) -> None:
    OnlineStore(url).register(VIEW, "deal_win", version)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def served(published, own_redis, deal_rows, tmp_path_factory):
    """Triton serving `deal_win` and `deal_win_by_id` (as the deploy hook composes them), and what the by-id
    model answered before any feature view was registered."""
    version, _ = published
    url, _, _ = own_redis
    serving = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml"), resolve=False)
    serving |= {"max_batch_size": MAX_BATCH, "prediction_log": {"enabled": False}}
    serving["by_id"] = {"enabled": True, "redis_url": url, "socket_timeout_s": 0.3}
    configs = cpu_serving_configs(version, serving)
    assert [c.name for c in configs] == ["deal_win", "deal_win_reasons", "deal_win_by_id"]
    repo = tmp_path_factory.mktemp("by_id_repo")
    for config in configs:
        if config.name != "deal_win_reasons":  # not needed here; one Python stub fewer on a small machine
            TritonRepositoryBuilder(repo).add(version, config)
    with TritonServer(repo) as server:
        with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
            try:
                client.predict_by_id(["any"])
                before_view = None
            except Exception as exc:
                before_view = exc
        write_rows(url, deal_rows, now_ms())
        register_view(url, version.version)
        yield server, before_view


def raw_probabilities(server: TritonServer, rows: pd.DataFrame) -> np.ndarray:
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
        return client.predict(rows[DEAL_WIN_FEATURES.names])


def test_no_view_is_a_clear_error_and_a_later_view_is_found(served, deal_rows):
    server, before_view = served
    assert before_view is not None and "no feature view in the online store" in str(before_view)
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
        assert client.predict_by_id(deal_rows["opportunity_id"].head(1))[0].status == "ok"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_by_id_answers_equal_the_raw_record_endpoint(served, deal_rows, protocol):
    server, _ = served
    expected = raw_probabilities(server, deal_rows)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    ids = deal_rows["opportunity_id"].tolist()
    with TritonPredictionClient(url, "deal_win", protocol=protocol) as client:
        rows = client.predict_by_id(ids)
    assert [r.id for r in rows] == ids
    assert {r.status for r in rows} == {"ok"}
    np.testing.assert_allclose([r.probability for r in rows], expected, atol=1e-6)
    assert all(r.model_name == "deal_win_by_id" and set(r.outputs) == {"probability"} for r in rows)
    stamp = pd.Timestamp(rows[0].as_of)
    assert stamp.tzinfo is not None and abs((pd.Timestamp.now(tz="UTC") - stamp).total_seconds()) < 600


def test_more_ids_than_a_batch_are_chunked(served, deal_rows):
    server, _ = served
    ids = (deal_rows["opportunity_id"].tolist() * 3)[: MAX_BATCH + 7]
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
        rows = client.predict_by_id(ids)
    assert [r.id for r in rows] == ids and {r.status for r in rows} == {"ok"}


def test_unknown_and_stale_ids_are_flagged_per_row(served, own_redis, deal_rows):
    server, _ = served
    url, _, _ = own_redis
    stale = deal_rows.iloc[[5]]
    write_rows(url, stale, now_ms() - 2 * TTL_S * 1000)
    try:
        ids = [deal_rows["opportunity_id"][0], "no-such-deal", stale["opportunity_id"].iloc[0]]
        with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
            rows = client.predict_by_id(ids)
        assert [r.status for r in rows] == ["ok", "unknown", "stale"]
        assert math.isnan(rows[1].probability) and rows[1].as_of is None and not rows[1].scored
        expected = raw_probabilities(server, deal_rows.iloc[[0, 5]])
        np.testing.assert_allclose([rows[0].probability, rows[2].probability], expected, atol=1e-6)
        age = pd.Timestamp.now(tz="UTC") - pd.Timestamp(rows[2].as_of)
        assert age > pd.Timedelta(seconds=TTL_S)
    finally:
        write_rows(url, stale, now_ms())


def test_a_stored_row_the_model_refuses_is_invalid_not_a_failed_batch(served, own_redis, deal_rows):
    server, _ = served
    url, _, _ = own_redis
    broken = deal_rows.iloc[[1, 2, 3]]
    write_rows(url, broken.iloc[[0]], now_ms(), {"value": "-5.0"})  # the model takes log1p(value)
    write_rows(url, broken.iloc[[1]], now_ms(), {"meetings_total": "lots"})
    write_rows(url, broken.iloc[[2]], now_ms())
    redis.Redis.from_url(url).hdel(PREFIX + broken["opportunity_id"].iloc[2], "stage")
    try:
        ids = [deal_rows["opportunity_id"][0], *broken["opportunity_id"]]
        with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
            rows = client.predict_by_id(ids)
        assert [r.status for r in rows] == ["ok", "invalid", "invalid", "invalid"]
        assert all(math.isnan(r.probability) for r in rows[1:])
        np.testing.assert_allclose(rows[0].probability, raw_probabilities(server, deal_rows.head(1)), atol=1e-6)
    finally:
        write_rows(url, broken, now_ms())


def test_hostile_ids_are_unknown_rows_and_the_server_stays_up(served, deal_rows):
    server, _ = served
    known = deal_rows["opportunity_id"][0].encode()
    hostile = [b"", b"x" * 10_000, b"\xff\xfe\x00bad", b"*", PREFIX.encode(), known]
    client = grpcclient.InferenceServerClient(server.grpc_url)
    ids = np.array(hostile, dtype=object).reshape(-1, 1)
    tensor = grpcclient.InferInput("ids", list(ids.shape), "BYTES")
    tensor.set_data_from_numpy(ids)
    result = client.infer("deal_win_by_id", [tensor])
    assert [s.decode() for s in result.as_numpy("status").ravel()] == ["unknown"] * 5 + ["ok"]
    assert np.isnan(result.as_numpy("probability")[:5]).all()
    wide = np.array([[b"a", b"b"]], dtype=object)  # two ids per row: refused with a message, not a crash
    tensor = grpcclient.InferInput("ids", list(wide.shape), "BYTES")
    tensor.set_data_from_numpy(wide)
    with pytest.raises(InferenceServerException, match="ids"):
        client.infer("deal_win_by_id", [tensor])
    assert server.is_ready()
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as sdk:
        assert sdk.predict_by_id([known.decode()])[0].status == "ok"
        with pytest.raises(Exception, match="expected text ids"):
            sdk.predict_by_id([1.5])  # type: ignore[list-item]


def test_async_client_predict_by_id(served, deal_rows):
    server, _ = served
    ids = deal_rows["opportunity_id"].head(5).tolist()

    async def score():
        async with AsyncTritonPredictionClient(server.grpc_url, "deal_win") as client:
            return await asyncio.gather(*(client.predict_by_id([i]) for i in ids))

    rows = [r[0] for r in asyncio.run(score())]
    np.testing.assert_allclose([r.probability for r in rows], raw_probabilities(server, deal_rows.head(5)), atol=1e-6)


def test_predict_command_takes_ids(served, deal_rows, tmp_path, run_cli):
    server, _ = served
    ids = deal_rows["opportunity_id"].head(3).tolist()
    expected = raw_probabilities(server, deal_rows.head(3))
    id_file = tmp_path / "ids.txt"
    id_file.write_text("\n".join([*ids, "no-such-deal", ""]) + "\n")
    for source, wanted in ((",".join(ids), ids), (str(id_file), [*ids, "no-such-deal"])):
        code, stdout, stderr = run_cli("predict", "--ids", source, "--url", server.http_url)
        assert code == 0, stderr[-2000:]
        lines = [json.loads(line) for line in stdout.strip().splitlines()]
        assert [line["id"] for line in lines] == wanted
        np.testing.assert_allclose([line["probability"] for line in lines[:3]], expected, atol=1e-5)
        assert [line["status"] for line in lines] == ["ok"] * 3 + ["unknown"] * (len(wanted) - 3)
        assert all(line["probability"] is None for line in lines[3:])


def test_redis_down_is_a_clear_error_and_serving_recovers(served, own_redis, deal_rows, published):
    """Stop the store mid-run: a quick error naming it (no hang), the raw endpoint unaffected; then restart
    it on the same port and the same model answers again, without a reload."""
    server, _ = served
    url, port, data_dir = own_redis
    ids = deal_rows["opportunity_id"].head(3).tolist()
    raw = grpcclient.InferenceServerClient(server.grpc_url)
    column = np.array([i.encode() for i in ids], dtype=object).reshape(-1, 1)
    tensor = grpcclient.InferInput("ids", list(column.shape), "BYTES")
    tensor.set_data_from_numpy(column)
    # A hung store (the process frozen: connections open, nothing answers) times out; it does not hang us.
    pid = int(Path(data_dir, "redis.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(InferenceServerException, match=f"online store unavailable at 127.0.0.1:{port}.*Timeout"):
            raw.infer("deal_win_by_id", [tensor])
        assert time.monotonic() - started < 2.5
    finally:
        os.kill(pid, signal.SIGCONT)
    assert raw.infer("deal_win_by_id", [tensor]).as_numpy("status").ravel().tolist() == [b"ok"] * 3
    redis_sh("stop", "--data-dir", data_dir)
    try:
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as info:
            raw.infer("deal_win_by_id", [tensor])
        assert time.monotonic() - started < 3.0
        assert f"online store unavailable at 127.0.0.1:{port}" in info.value.message()
        with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
            with pytest.raises(OnlineStoreUnavailableError, match=f"127.0.0.1:{port}"):
                client.predict_by_id(ids)
            assert client.predict(deal_rows[DEAL_WIN_FEATURES.names].head(2)).shape == (2,)
        assert server.is_ready()
    finally:
        redis_sh("start", "--data-dir", data_dir, "--port", str(port))
    write_rows(url, deal_rows, now_ms())  # the test server keeps no data across a restart
    register_view(url, published[0].version)
    with TritonPredictionClient(server.grpc_url, "deal_win", protocol="grpc") as client:
        rows = client.predict_by_id(ids)
    assert [r.status for r in rows] == ["ok"] * 3
    np.testing.assert_allclose([r.probability for r in rows], raw_probabilities(server, deal_rows.head(3)), atol=1e-6)
