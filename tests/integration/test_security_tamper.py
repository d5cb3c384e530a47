"""The tamper test against a real Triton: a signed version serves; one flipped byte in the registry or in the
generated repository is refused before tritonserver loads it."""

from __future__ import annotations

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
