"""The registry on an S3-compatible server (moto's standalone server, a real HTTP S3 API in its own process):
publish is complete or absent, downloads are checked, Triton loads an s3:// repository itself, and a replica
with its own disk picks up a promotion under load with no failed request."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import yaml
from botocore.exceptions import ClientError

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.errors import FulqrunMLError, RegistryError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import compose_config
from fulqrun_ml.registry.object_store import MANIFEST, ObjectRegistry
from fulqrun_ml.registry.store import METADATA_FILE, ModelVersion, list_versions, publish_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.control import ModelController
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.k8s import LATENCY_METRIC, QUEUE_METRIC
from fulqrun_ml.serving.k8s_commands import validate
from fulqrun_ml.serving.object_repo import (
    ObjectStoreTritonServer,
    PromotionWatcher,
    push_triton_repository,
    triton_s3_url,
)
from fulqrun_ml.serving.repository import TritonRepositoryBuilder
from fulqrun_ml.serving.server import free_port

pytestmark = pytest.mark.integration
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto_server on a free loopback port, with the AWS_* environment boto3 and Triton read."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in (*CREDENTIALS, "AWS_ENDPOINT_URL")}
    os.environ.update({**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "moto_server did not start"
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def registry(s3_endpoint):
    store = ObjectRegistry("s3://fulqrun-registry/team-a")
    store.client.create_bucket(Bucket="fulqrun-registry")
    return store


@pytest.fixture(scope="module")
def serving():
    return compose_config("serve", ["serving.prediction_log.enabled=false"]).serving


@pytest.fixture(scope="module")
def rows(published):
    version, _ = published
    holdout = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet"
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    return pd.read_parquet(holdout)[spec.spec.names].head(32)


def republish(version: ModelVersion) -> ModelVersion:
    """The same artifacts as the next local version (a fresh ONNX export would only cost time here)."""

    def write(tmp: Path) -> None:
        for path in version.path.iterdir():
            if path.is_file() and path.name not in (METADATA_FILE, "MODEL_CARD.md"):
                shutil.copy2(path, tmp / path.name)

    metadata = {k: v for k, v in version.metadata.items() if k not in ("name", "version", "published_at")}
    return publish_version(version.path.parent.parent, version.name, write, metadata)


def test_publish_is_complete_or_absent_and_downloads_are_checked(registry, published, tmp_path, monkeypatch):
    version, _ = published
    real_put = registry.client.put_object

    def crash_on_manifest(**kwargs):
        if kwargs["Key"].endswith(MANIFEST):
            raise ConnectionError("publisher died before its manifest")
        return real_put(**kwargs)

    monkeypatch.setattr(registry.client, "put_object", crash_on_manifest)
    with pytest.raises(ConnectionError):
        registry.push_version(version)
    monkeypatch.undo()
    assert registry.versions("deal_win") == []  # staged files without a manifest are no version
    with pytest.raises(RegistryError, match="no MANIFEST"):
        registry.pull_version("deal_win", version.version, tmp_path / "host")
    with pytest.raises(RegistryError, match="has no published version"):
        registry.set_alias("deal_win", "production", version.version)

    manifest = registry.push_version(version)
    assert registry.versions("deal_win") == [version.version]
    assert registry.push_version(version) == manifest  # a retried push is a no-op
    other = tmp_path / "other"
    other.mkdir()
    (other / METADATA_FILE).write_text("{}")
    with pytest.raises(RegistryError, match="already published with other files"):
        registry.push_tree(other, registry.version_base("deal_win", version.version))
    # two publishers racing for one number: the loser's existence check saw nothing, its manifest PUT is refused
    monkeypatch.setattr(registry, "_read_json", lambda key: None)
    with pytest.raises(RegistryError, match="another publisher took"):
        registry.push_tree(other, registry.version_base("deal_win", version.version))
    monkeypatch.undo()

    pulled = registry.pull_version("deal_win", version.version, tmp_path / "host")
    assert (pulled.path / "model.onnx").read_bytes() == (version.path / "model.onnx").read_bytes()
    # an object altered after publishing is refused, and the local registry gets nothing half-written
    key = f"{registry.version_base('deal_win', version.version)}/{manifest['upload']}/model.onnx"
    registry.client.put_object(Bucket=registry.url.bucket, Key=key, Body=b"not the model")
    with pytest.raises(RegistryError, match="does not match its manifest"):
        registry.pull_version("deal_win", version.version, tmp_path / "fresh")
    assert list((tmp_path / "fresh" / "deal_win").iterdir()) == []
    registry.client.upload_file(str(version.path / "model.onnx"), registry.url.bucket, key)  # restore


def test_a_host_without_shared_disk_serves_s3_and_picks_up_a_promotion(
    registry, published, serving, rows, s3_endpoint, tmp_path
):
    """One Triton host: `deal_win_s3` loaded by Triton itself from an s3:// repository, and `deal_win` from the
    host's own disk, pulled from the object-store registry and switched when `production` moves there."""
    first, _ = published
    second = republish(first)
    registry.push_version(second)
    registry.set_alias("deal_win", "production", first.version)
    s3_config = replace(cpu_serving_configs(first, serving)[0], name="deal_win_s3")
    tree = push_triton_repository(registry, first, [s3_config])
    with pytest.raises(ClientError):  # the control key is a secret: it never leaves the host
        registry.client.head_object(
            Bucket=registry.url.bucket, Key=tree[len("s3://fulqrun-registry/") :] + "/.control_key"
        )
    host_models = tmp_path / "host-models"  # this host's own disk: nothing shared with the publisher
    builder = TritonRepositoryBuilder(tmp_path / "host-repo")
    first_local = registry.pull_version("deal_win", first.version, host_models)
    builder.add(first_local, cpu_serving_configs(first_local, serving)[0])
    url = triton_s3_url(tree, s3_endpoint)
    assert url.startswith("s3://http://127.0.0.1:")
    server = ObjectStoreTritonServer(url, ["deal_win", "deal_win_s3"], local_repository=builder.repository)
    with server, TritonPredictionClient(server.http_url, "deal_win_s3") as s3_client:
        from_s3 = s3_client.predict_detailed(rows.head(3))
        assert len(from_s3) == 3 and from_s3[0].model_version == str(first.version)
        controller = ModelController(server.http_url, builder)

        def deploy(version: ModelVersion) -> None:
            for config in cpu_serving_configs(version, serving)[:1]:
                controller.deploy(version, config)

        watcher = PromotionWatcher(registry, "deal_win", host_models, deploy, interval_s=0.2, current=first.version)
        errors: list[BaseException] = []
        seen: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with TritonPredictionClient(server.http_url, "deal_win") as client:
                i = 0
                while not stop.is_set():
                    try:
                        seen.append(client.predict_detailed(rows.iloc[[i % len(rows)]])[0].model_version)
                    except Exception as exc:  # any failed call during the switch
                        errors.append(exc)
                    i += 1

        thread = threading.Thread(target=load)
        thread.start()
        watcher.start()
        try:
            registry.set_alias("deal_win", "production", second.version)  # the promotion, on object storage only
            deadline = time.monotonic() + 60
            while not seen or seen[-1] != str(second.version):
                assert time.monotonic() < deadline, f"promotion not picked up; watcher errors {watcher.errors}"
                time.sleep(0.05)
        finally:
            watcher.stop()
            stop.set()
            thread.join(timeout=30)
            controller.close()
    assert errors == [] and str(first.version) in seen
    assert list_versions(host_models, "deal_win") == [first.version, second.version]


def test_deploy_k8s_writes_valid_manifests_naming_a_complete_repository(registry, published, tmp_path, capsys):
    version, _ = published
    out = tmp_path / "k8s"
    argv = ["deploy", "k8s", "--out", str(out), "--s3", str(registry.url), "--models-dir", str(version.path.parents[1])]
    assert cli_main([*argv, "--version", str(version.version), "--min-replicas", "2"]) == 0
    deployment = yaml.safe_load((out / "deployment.yaml").read_text())
    hpa = yaml.safe_load((out / "hpa.yaml").read_text())
    assert [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]] == [QUEUE_METRIC, LATENCY_METRIC]
    sync = deployment["spec"]["template"]["spec"]["initContainers"][0]["command"]
    assert sync[-2] == registry.tree_url(
        registry.triton_base("deal_win", version.version, "gpu")
    )  # complete, immutable
    listed = registry.client.list_objects_v2(
        Bucket=registry.url.bucket, Prefix=sync[-2][len("s3://fulqrun-registry/") :]
    )
    assert any(o["Key"].endswith("config.pbtxt") for o in listed["Contents"])
    assert "testing" not in (out / "all.yaml").read_text()  # credentials stay in the environment / Secrets
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml", "prometheus-adapter-rules.yaml"):
        validate(yaml.safe_load((out / name).read_text()), name)
    deployment["spec"]["replicas"] = "two"  # the validator does reject a wrong manifest
    with pytest.raises(FulqrunMLError, match=r"deployment\.yaml: invalid Kubernetes Deployment at 'spec/replicas'"):
        validate(deployment, "deployment.yaml")
    # bad input: a clear error, and the previous generation stays whole
    assert cli_main([*argv, "--version", "99"]) == 2
    assert "has no version 99" in capsys.readouterr().err
    assert (out / "deployment.yaml").is_file() and not list(tmp_path.glob(".k8s.tmp-*"))
