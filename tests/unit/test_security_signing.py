"""Signed registry versions: one flipped byte, an edited manifest, an extra file, a moved signature or a retired
key is refused naming what is wrong; rotation keeps old signatures verifying until their key is retired."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.registry.key_material import EnvKeyProvider, FileKeyProvider, KeyMaterialError, new_key
from fulqrun_ml.registry.signing import SIGNATURE_FILE, TamperedVersionError, sign_version, verify_version
from fulqrun_ml.registry.store import publish_version

K1, K2 = new_key(), new_key()


def write_files(directory):
    (directory / "model.onnx").write_bytes(bytes(range(256)) * 8)
    (directory / "feature_spec.json").write_text(json.dumps({"numeric": ["value"]}))


@pytest.fixture
def version(tmp_path, monkeypatch):
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k1:{K1}")
    published = publish_version(tmp_path / "models", "deal_win", write_files, {"kind": "binary"}, actor="test")
    sign_version(published.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))
    return published


def flip_one_byte(path, at=100):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_signed_version_verifies(version):
    signature = verify_version(version.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))
    assert signature["key_id"] == "k1" and "model.onnx" in signature["files"] and "metadata.json" in signature["files"]
    assert K1 not in (version.path / SIGNATURE_FILE).read_text()


def test_one_flipped_byte_is_refused_naming_the_file(version):
    flip_one_byte(version.path / "model.onnx")
    with pytest.raises(TamperedVersionError, match=r"model\.onnx was modified after signing"):
        verify_version(version.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))


def test_a_manifest_edited_to_match_is_refused_by_the_mac(version):
    flip_one_byte(version.path / "model.onnx")
    signature = json.loads((version.path / SIGNATURE_FILE).read_text())
    from fulqrun_ml.registry.signing import file_digest

    signature["files"]["model.onnx"] = file_digest(version.path / "model.onnx")
    (version.path / SIGNATURE_FILE).write_text(json.dumps(signature))
    with pytest.raises(TamperedVersionError, match="does not match its MAC"):
        verify_version(version.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))


def test_added_files_unsigned_versions_and_moved_signatures_are_refused(version, tmp_path):
    provider = EnvKeyProvider("FULQRUN_SIGNING_KEYS")
    with pytest.raises(TamperedVersionError, match="is for 'deal_win v1'"):
        verify_version(version.path, "deal_win v2", provider)
    (version.path / "extra.py").write_text("import os")
    with pytest.raises(TamperedVersionError, match=r"added \['extra.py'\]"):
        verify_version(version.path, "deal_win v1", provider)
    (version.path / SIGNATURE_FILE).unlink()
    with pytest.raises(TamperedVersionError, match="is not signed"):
        verify_version(version.path, "deal_win v1", provider)


def test_rotation_old_key_verifies_until_retired(version, monkeypatch):
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k2:{K2},k1:{K1}")  # k2 is current, k1 still verifies
    rotated = EnvKeyProvider("FULQRUN_SIGNING_KEYS")
    assert verify_version(version.path, "deal_win v1", rotated)["key_id"] == "k1"
    assert sign_version(version.path, "deal_win v1", rotated)["key_id"] == "k2"  # re-signed with the new key
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k2:{K2}")  # k1 retired
    assert verify_version(version.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))["key_id"] == "k2"


def test_a_retired_key_no_longer_verifies(version, monkeypatch):
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", f"k2:{K2}")
    with pytest.raises(TamperedVersionError, match=r"signed with key 'k1'.*unknown or retired"):
        verify_version(version.path, "deal_win v1", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))


def test_key_sources_refuse_bad_material_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FULQRUN_SIGNING_KEYS", "k1:c2hvcnQ=")  # "short"
    with pytest.raises(KeyMaterialError, match="k1' has 5 bytes") as caught:
        EnvKeyProvider("FULQRUN_SIGNING_KEYS")
    assert "c2hvcnQ" not in str(caught.value)
    key_file = tmp_path / "keys.json"
    key_file.write_text(json.dumps({"current": "k1", "keys": {"k1": K1}}))
    key_file.chmod(0o644)
    with pytest.raises(KeyMaterialError, match="accessible by group or others"):
        FileKeyProvider(key_file)
    key_file.chmod(0o600)
    assert FileKeyProvider(key_file).current()[0] == "k1"


def test_the_repository_builder_refuses_a_tampered_version(version, tmp_path):
    from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder

    config = TritonModelConfig(name="deal_win", variant="onnxruntime-cpu", inputs=(), outputs=())
    flip_one_byte(version.path / "model.onnx")
    with pytest.raises(TamperedVersionError, match=r"model\.onnx was modified"):
        TritonRepositoryBuilder(tmp_path / "repo").add(version, config)
    assert not (tmp_path / "repo" / "deal_win").exists()
