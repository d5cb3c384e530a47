"""The tamper test against a real Triton: a signed version serves; one flipped byte in the registry or in the
generated repository is refused before tritonserver loads it."""

from __future__ import annotations

import json
import shutil

import psutil
import pytest

from fulqrun_ml.registry.key_material import EnvKeyProvider, new_key
from fulqrun_ml.registry.signing import TamperedVersionError, sign_version
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration


def flip_one_byte(path, at=1000):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def tritonservers() -> int:
    return sum(1 for p in psutil.process_iter(["name"]) if p.info["name"] == "tritonserver")


@pytest.fixture
def signed(published, tmp_path, monkeypatch):
    """A private copy of the published version, signed with a fresh key from the environment."""
    version, _ = published
    copy = tmp_path / "models" / version.name / str(version.version)
    shutil.copytree(version.path, copy)
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"ci:{new_key()}")
    sign_version(copy, f"{version.name} v{version.version}", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))
    return ModelVersion(version.name, version.version, copy, version.metadata)


def test_signed_version_serves_and_a_flipped_byte_in_the_repository_is_refused(signed, tmp_path):
    repo = tmp_path / "repo"
    TritonRepositoryBuilder(repo).add(signed, config_for_version(signed))
    with TritonServer(repo) as server, TritonPredictionClient(server.http_url, "deal_win") as client:
        assert client.is_ready()
    flip_one_byte(repo / "deal_win" / str(signed.version) / "model.onnx")
    before = tritonservers()
    with pytest.raises(TamperedVersionError, match=r"model 'deal_win' version \d+: model\.onnx was modified"):
        TritonServer(repo).start()
    assert tritonservers() == before  # refused before any server process started


def test_a_flipped_byte_in_the_registry_never_reaches_the_repository(signed, tmp_path):
    flip_one_byte(signed.path / "model.onnx")
    with pytest.raises(TamperedVersionError, match=r"deal_win v\d+ at .*: model\.onnx was modified after signing"):
        TritonRepositoryBuilder(tmp_path / "repo").add(signed, config_for_version(signed))
    assert not (tmp_path / "repo" / "deal_win").exists()


def test_an_unsigned_version_is_refused_when_signing_is_on(published, tmp_path, monkeypatch):
    version, _ = published
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"ci:{new_key()}")
    with pytest.raises(TamperedVersionError, match="is not signed"):
        TritonRepositoryBuilder(tmp_path / "repo").add(version, config_for_version(version))


@pytest.fixture
def published_signed(trained_run, tmp_path, monkeypatch):
    """Two versions published through the real export path while signing is on: v1 with key k1, then the keys
    rotate (k2 current, k1 still verifying) and v2 is signed with k2. No explicit sign call anywhere."""
    from pathlib import Path

    from fulqrun_ml.export.package import export_run

    k1, k2 = new_key(), new_key()
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k1:{k1}")
    v1, _ = export_run(Path(trained_run["run_dir"]), tmp_path / "models", "deal_win")
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k2:{k2},k1:{k1}")
    v2, _ = export_run(Path(trained_run["run_dir"]), tmp_path / "models", "deal_win")
    return v1, v2, k2


def test_published_versions_are_signed_and_serve_across_a_key_rotation(published_signed, tmp_path, monkeypatch):
    v1, v2, k2 = published_signed
    assert [json.loads((v.path / "SIGNATURE.json").read_text())["key_id"] for v in (v1, v2)] == ["k1", "k2"]
    repo = tmp_path / "repo"
    builder = TritonRepositoryBuilder(repo)
    builder.add(v2, config_for_version(v2))
    with TritonServer(repo) as server, TritonPredictionClient(server.http_url, "deal_win") as client:
        assert client.is_ready()
    builder.add(v1, config_for_version(v1))  # the old key still verifies the old version
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k2:{k2}")  # k1 retired: v1 is refused, v2 still goes in
    with pytest.raises(TamperedVersionError, match=r"signed with key 'k1'.*unknown or retired"):
        TritonRepositoryBuilder(tmp_path / "repo2").add(v1, config_for_version(v1))
    TritonRepositoryBuilder(tmp_path / "repo2").add(v2, config_for_version(v2))


def test_one_flipped_byte_in_a_published_version_is_refused_end_to_end(published_signed, tmp_path):
    _, v2, _ = published_signed
    flip_one_byte(v2.path / "model.onnx")
    before = tritonservers()
    with pytest.raises(TamperedVersionError, match=r"deal_win v2 at .*: model\.onnx was modified after signing"):
        TritonRepositoryBuilder(tmp_path / "repo").add(v2, config_for_version(v2))
    assert not (tmp_path / "repo" / "deal_win").exists() and tritonservers() == before
