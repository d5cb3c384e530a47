"""The registry on an S3-compatible server (moto's standalone server, a real HTTP S3 API in its own process):
publish is complete or absent, downloads are checked, Triton loads an s3:// repository itself, and `deploy k8s`
writes valid manifests naming a complete repository. (A promotion made on object storage rolling out across
replicas with their own disks: tests/integration/test_replicas.py.)"""

from __future__ import annotations

import json
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
from fulqrun_ml.registry.object_store import MANIFEST
from fulqrun_ml.registry.store import METADATA_FILE
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import cpu_serving_configs
from fulqrun_ml.serving.k8s import LATENCY_METRIC, QUEUE_METRIC
from fulqrun_ml.serving.k8s_commands import validate
from fulqrun_ml.serving.object_repo import (
    ObjectStoreTritonServer,
    push_triton_repository,
    triton_s3_url,
)
from tests.integration import s3_service

pytestmark = pytest.mark.integration
BUCKET = s3_service.BUCKET
s3_endpoint, registry = s3_service.s3_endpoint, s3_service.registry  # the fixtures, used by name below


@pytest.fixture(scope="module")
def serving():
    return compose_config("serve", ["serving.prediction_log.enabled=false"]).serving


@pytest.fixture(scope="module")
def rows(published):
    version, _ = published
    holdout = Path(json.loads((version.path / "lineage.json").read_text())["run_dir"]) / "holdout.parquet"
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    return pd.read_parquet(holdout)[spec.spec.names].head(32)


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


def test_triton_loads_an_s3_repository_natively(registry, published, serving, rows, s3_endpoint):
    """Triton itself reads the repository from the S3 server (no local copy); the control key never leaves."""
    version, _ = published
    config = replace(cpu_serving_configs(version, serving)[0], name="deal_win_s3")
    tree = push_triton_repository(registry, version, [config])
    with pytest.raises(ClientError):
        registry.client.head_object(Bucket=registry.url.bucket, Key=tree[len(f"s3://{BUCKET}/") :] + "/.control_key")
    url = triton_s3_url(tree, s3_endpoint)
    assert url.startswith("s3://http://127.0.0.1:")
    server = ObjectStoreTritonServer(url, ["deal_win_s3"])
    with server, TritonPredictionClient(server.http_url, "deal_win_s3") as client:
        from_s3 = client.predict_detailed(rows.head(3))
    assert len(from_s3) == 3 and from_s3[0].model_version == str(version.version)


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
