"""Two real Triton replicas behind a real nginx: a SIGKILLed replica and a rolling update (driven by a promotion
on object storage) cost no request.

The load runs through nginx with the SDK (its bounded retry on), from threads, while a replica's whole process
group is SIGKILLed (stubs included, as the OOM killer would) and later while a new version rolls out replica by
replica. Every failed call is collected; the guarantee is that there are none.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.store import METADATA_FILE, ModelVersion, list_versions, publish_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.nginx import Upstream, render_config
from fulqrun_ml.serving.object_repo import PromotionWatcher
from fulqrun_ml.serving.replicas import ReplicaSet, live_replica_state
from fulqrun_ml.serving.server import free_port
from tests.integration import s3_service
from tests.registry_copy import copy_version

pytestmark = pytest.mark.integration
s3_endpoint, registry = s3_service.s3_endpoint, s3_service.registry  # the fixtures, used by name below


@pytest.fixture(scope="module")
def serving():
    return compose_config("serve", ["serving.prediction_log.enabled=false"]).serving


@pytest.fixture(scope="module")
def replica_set(published, serving, tmp_path_factory):
    version, _ = published
    run_dir = tmp_path_factory.mktemp("replicas")
    # only the fast endpoint (not `<name>_reasons`): each model load is ~2 s of this test's budget
    with ReplicaSet(
        version,
        lambda v: cpu_serving_configs(v, serving)[:1],
        run_dir,
        2,
        free_port(),
        free_port(),
        probe_interval_s=0.2,
    ) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def rows(published):
    version, _ = published
    holdout = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet"
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    return pd.read_parquet(holdout)[spec.spec.names].head(64)


class Load:
    """Threads calling the SDK through nginx until stopped; every exception is kept."""

    def __init__(self, url: str, rows: pd.DataFrame, protocol: str = "http", threads: int = 3) -> None:
        self.errors: list[BaseException] = []
        self.versions: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(url, rows, protocol, i)) for i in range(threads)]

    def _run(self, url: str, rows: pd.DataFrame, protocol: str, seed: int) -> None:
        with TritonPredictionClient(url, "deal_win", protocol=protocol) as client:
            i = seed
            while not self._stop.is_set():
                try:
                    self.versions.append(client.predict_detailed(rows.iloc[[i % len(rows)]])[0].model_version)
                except Exception as exc:  # what this test is about: any failed call
                    self.errors.append(exc)
                i += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def wait_calls(self, n: int, timeout_s: float = 30.0) -> None:
        target = len(self.versions) + n
        deadline = time.monotonic() + timeout_s
        while len(self.versions) < target:
            assert time.monotonic() < deadline, f"only {len(self.versions)} calls; errors: {self.errors[:3]}"
            time.sleep(0.01)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_nginx_config_binds_loopback_and_retries(tmp_path):
    text = render_config(tmp_path, [Upstream(1, 2), Upstream(3, 4, down=True)], 8000, 8001)
    assert "listen 127.0.0.1:8000;" in text and "listen 127.0.0.1:8001 http2;" in text
    assert "server 127.0.0.1:3 max_fails=1 fail_timeout=2s down;" in text
    assert "non_idempotent" in text and f"pid {tmp_path.resolve() / 'nginx.pid'};" in text


def test_sigkill_of_a_replica_under_load_fails_no_request(replica_set, rows):
    victim = replica_set.replicas[0]
    restarts = replica_set.restarts
    with Load(replica_set.http_url, rows) as http_load, Load(replica_set.grpc_url, rows, "grpc", 1) as grpc_load:
        http_load.wait_calls(50)
        grpc_load.wait_calls(20)
        os.killpg(os.getpgid(victim.server.process.pid), signal.SIGKILL)
        http_load.wait_calls(100)
        grpc_load.wait_calls(50)
        # the readiness loop restarts the dead replica (nginx's passive check covers the gap)
        wait_for(lambda: replica_set.restarts > restarts and victim.in_rotation)
        http_load.wait_calls(50)
    assert http_load.errors == [] and grpc_load.errors == []
    assert requests.get(f"http://{victim.server.http_url}/v2/health/ready", timeout=5).status_code == 200


def republish(version: ModelVersion, models_dir: Path) -> ModelVersion:
    """The same artifacts as the next version in a private copy of the registry under `models_dir` (the session's
    stays read-only; an ONNX export would cost seconds for nothing here)."""
    version = copy_version(version, models_dir)

    def write(tmp: Path) -> None:
        for path in version.path.iterdir():
            if path.is_file() and path.name not in (METADATA_FILE, "MODEL_CARD.md"):
                shutil.copy2(path, tmp / path.name)

    metadata = {k: v for k, v in version.metadata.items() if k not in ("name", "version", "published_at")}
    return publish_version(version.path.parent.parent, version.name, write, metadata)


def test_a_promotion_on_object_storage_rolls_out_across_replicas_with_no_failed_request(
    replica_set, published, rows, registry, tmp_path
):
    """The production pointer moves on the S3 server only; the watcher pulls the version onto the serving host's
    own disk (not the publisher's registry) and rolls it out replica by replica under load."""
    first = published[0]
    second = republish(first, tmp_path / "publisher-models")
    for version in (first, second):
        registry.push_version(version)
    registry.set_alias("deal_win", "production", first.version)
    host_models = tmp_path / "host-models"
    watcher = PromotionWatcher(
        registry, "deal_win", host_models, replica_set.rolling_update, interval_s=0.2, current=first.version
    )
    with Load(replica_set.http_url, rows) as load:
        load.wait_calls(10)
        watcher.start()
        try:
            registry.set_alias("deal_win", "production", second.version)
            wait_for(lambda: watcher.current == second.version or bool(watcher.errors))
        finally:
            watcher.stop()
        load.wait_calls(20)
    assert watcher.errors == [] and load.errors == []
    assert str(second.version) in load.versions  # the new version answered through nginx
    assert list_versions(host_models, "deal_win") == [second.version]  # pulled from S3, nothing shared
    for replica in replica_set.replicas:  # and every replica serves it now
        ready = requests.get(f"http://{replica.server.http_url}/v2/models/deal_win/versions/{second.version}/ready")
        assert ready.status_code == 200
    assert live_replica_state(replica_set.run_dir)["version"] == second.version


def test_a_live_replica_whose_model_is_unloaded_leaves_the_rotation_until_ready(replica_set):
    replica = replica_set.replicas[1]
    controller = ModelController(replica.server.http_url, replica.builder)
    try:
        controller.client.unload_model("deal_win")
        wait_for(lambda: not replica.in_rotation, 30)
        assert " down;" in (replica_set.run_dir / "nginx.conf").read_text()
        controller.client.load_model("deal_win")
        wait_for(lambda: replica.in_rotation, 60)
    finally:
        controller.close()
    assert " down;" not in (replica_set.run_dir / "nginx.conf").read_text()
