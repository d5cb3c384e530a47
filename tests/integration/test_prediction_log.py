"""The prediction log end to end: a real Triton serving the tiny published model with logging on, `kill -9`,
then the shipper into a real PostgreSQL (and Parquet): every acknowledged request is stored exactly once, a
replay adds nothing, bad requests are not logged, PII-prone categoricals are scrubbed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from fulqrun_ml.benchmarks.loadgen import kserve_json_body
from fulqrun_ml.monitoring.prediction_log import read_predictions, ship
from fulqrun_ml.monitoring.prediction_store import ParquetStore, PostgresStore
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DATATYPES = {"float32": "FP32", "string": "BYTES"}
CLIENTS = 6


@pytest.fixture(scope="module")
def logged(published, tmp_path_factory):
    """A repository whose deal_win endpoint logs to a spool (small files, so rotation happens), and records."""
    version, _ = published
    root = tmp_path_factory.mktemp("prediction_log")
    spool = root / "spool"
    config = config_for_version(version, max_batch_size=64, prediction_log={"spool_dir": spool, "rotate_bytes": 50_000})
    TritonRepositoryBuilder(root / "repo").add(version, config)
    lineage = json.loads((version.path / "lineage.json").read_text())
    rows = pd.read_parquet(Path(lineage["run_dir"]) / "holdout.parquet")
    inputs = [(i["name"], DATATYPES[i["dtype"]]) for i in version.metadata["inputs"]]
    return {"repo": root / "repo", "spool": spool, "root": root, "rows": rows, "inputs": inputs, "version": version}


def body(logged, start: int, n: int, request_id: str | None = None, **parameters) -> dict:
    frame = logged["rows"].iloc[start : start + n]
    payload = json.loads(kserve_json_body({c: frame[c].to_numpy() for c, _ in logged["inputs"]}, logged["inputs"]))
    if request_id is not None:
        payload["id"] = request_id
    if parameters:
        payload["parameters"] = parameters
    return payload


def infer(server, payload: dict, session=requests) -> requests.Response:
    return session.post(f"http://{server.http_url}/v2/models/deal_win/infer", json=payload, timeout=30)


def probabilities(reply: requests.Response) -> list[float]:
    return next(o for o in reply.json()["outputs"] if o["name"] == "probability")["data"]


def test_no_acknowledged_record_is_lost_under_kill_9(logged, pg_dsn):
    """Clients send until the server is SIGKILLed mid-load; every answered request must reach the store."""
    server = TritonServer(logged["repo"]).start()
    acknowledged: dict[str, list[float]] = {}
    lock, stop = threading.Lock(), threading.Event()

    def client(k: int) -> None:
        session = requests.Session()
        for n in range(10_000):
            if stop.is_set():
                return
            request_id = f"c{k}-{n}"
            try:
                reply = infer(server, body(logged, (k * 31 + n) % 500, 1 + n % 3, request_id), session)
            except requests.RequestException:
                return  # the server is gone
            if reply.status_code == 200:
                with lock:
                    acknowledged[request_id] = probabilities(reply)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        pgid = os.getpgid(server.process.pid)
        os.kill(server.process.pid, signal.SIGKILL)  # kill -9 tritonserver, requests in flight
        server.process.wait()
        for t in threads:
            t.join(timeout=60)
        os.killpg(pgid, signal.SIGKILL)  # and any Python stub still running (nothing may write on)
    finally:
        stop.set()
        server.stop()
    assert len(acknowledged) >= 300, "too few requests answered before the kill"

    store = PostgresStore(pg_dsn, table=f"plog_{uuid.uuid4().hex[:8]}")
    report = ship(logged["spool"], store, delete_finished=False)  # kept for the replays below
    assert report.bad_lines == 0
    frame = read_predictions(store, model="deal_win")
    stored = frame.groupby("request_id")["probability"].apply(list).to_dict()
    missing = sorted(set(acknowledged) - set(stored))
    assert not missing, f"{len(missing)} acknowledged requests are not in the store, e.g. {missing[:5]}"
    for request_id, answer in acknowledged.items():  # exactly once: same rows, same values as answered
        np.testing.assert_allclose(stored[request_id], answer, rtol=1e-6)
    assert not frame.duplicated(["model", "request_id", "row"]).any()

    before = len(frame)
    store.forget(list(store.offsets()))  # replay everything: a shipper that lost its offsets
    assert ship(logged["spool"], store, delete_finished=False).records >= before
    assert len(read_predictions(store, model="deal_win")) == before

    parquet = ParquetStore(logged["root"] / "parquet")  # the Parquet store: the same records, deduplicated
    for _ in range(2):
        parquet.forget(list(parquet.offsets()))
        ship(logged["spool"], parquet, delete_finished=False)
    again = read_predictions(parquet, model="deal_win")
    assert len(again) == before and set(again["request_id"]) == set(frame["request_id"])


def test_restarted_server_logs_answers_not_refusals_and_scrubs(logged, tmp_path):
    """After a restart: ids generated when absent, entity ids from the request parameter, a refused request
    (bad field) not logged, an unseen category (here an email) scrubbed, and shipping resumes."""
    store = ParquetStore(tmp_path / "store")
    ship(logged["spool"], store)  # whatever earlier tests left
    before = len(read_predictions(store))
    with TritonServer(logged["repo"]) as server:
        with_entity = infer(server, body(logged, 0, 2, "ent-1", entity_id="opp-a,opp-b"))
        anonymous = infer(server, body(logged, 2, 1))
        bad = body(logged, 3, 1, "bad-1")
        next(i for i in bad["inputs"] if i["name"] == "value")["data"] = [-5.0]
        refused = infer(server, bad)
        pii = body(logged, 4, 1, "pii-1")
        next(i for i in pii["inputs"] if i["name"] == "industry")["data"] = ["ivan.silva@acme.com"]
        scrubbed = infer(server, pii)
    assert (with_entity.status_code, anonymous.status_code, scrubbed.status_code) == (200, 200, 200)
    assert refused.status_code == 400 and "field 'value'" in refused.text
    assert not any(b"acme.com" in p.read_bytes() for p in logged["spool"].glob("*.jsonl"))
    report = ship(logged["spool"], store)
    assert report.pending_bytes == 0  # the graceful stop sealed the files: nothing half written
    frame = read_predictions(store)
    new = frame.iloc[before:]
    assert "bad-1" not in set(frame["request_id"])
    entity = frame[frame["request_id"] == "ent-1"]
    assert entity["entity_id"].tolist() == ["opp-a", "opp-b"] and entity["row"].tolist() == [0, 1]
    np.testing.assert_allclose(entity["probability"], probabilities(with_entity), rtol=1e-6)
    generated = new[~new["request_id"].isin(["ent-1", "pii-1"])]
    assert len(generated) == 1 and len(generated["request_id"].iloc[0]) > 32  # token-counter
    assert frame.loc[frame["request_id"] == "pii-1", "industry"].tolist() == ["[unseen]"]
    assert frame["latency_ms"].gt(0).all() and frame["version"].eq(logged["version"].version).all()
    assert report.deleted_files >= 1  # this server's files are sealed by its graceful stop, shipped, removed
