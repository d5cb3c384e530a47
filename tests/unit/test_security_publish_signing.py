"""Every version published while signing keys are configured is signed inside the atomic publish (never visible
unsigned), under the subject of the number it took; rotation signs new versions with the new key while old ones
still verify, until their key is retired. Without keys nothing is signed (development registries)."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.key_material import EnvKeyProvider, KeyMaterialError, new_key
from fulqrun_ml.registry.signing import SIGNATURE_FILE, TamperedVersionError, verify_version
from fulqrun_ml.registry.store import publish_version

K1, K2 = new_key(), new_key()
ENV = "FULQRUN_SIGNING_KEYS"


def write_files(directory):
    (directory / "model.onnx").write_bytes(bytes(range(256)) * 8)
    (directory / "feature_spec.json").write_text(json.dumps({"numeric": ["value"]}))


def publish(models):
    return publish_version(models, "deal_win", write_files, {"kind": "binary"}, actor="ci")


def test_publish_signs_every_file_of_the_version_including_metadata_and_card(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, f"k1:{K1}")
    version = publish(tmp_path / "models")
    signature = verify_version(version.path, "deal_win v1", EnvKeyProvider(ENV))
    assert signature["key_id"] == "k1"
    assert {"model.onnx", "feature_spec.json", "metadata.json", "MODEL_CARD.md"} <= set(signature["files"])
    assert read_audit(tmp_path / "models", "deal_win")[-1]["signed_with"] == "k1"
    assert not list((tmp_path / "models" / "deal_win").glob(".tmp-*"))


def test_a_byte_flipped_after_publish_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, f"k1:{K1}")
    version = publish(tmp_path / "models")
    data = bytearray((version.path / "model.onnx").read_bytes())
    data[7] ^= 0x01
    (version.path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(TamperedVersionError, match=r"model\.onnx was modified after signing"):
        verify_version(version.path, "deal_win v1", EnvKeyProvider(ENV))


def test_rotation_new_versions_use_the_new_key_old_ones_verify_until_retired(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, f"k1:{K1}")
    v1 = publish(tmp_path / "models")
    monkeypatch.setenv(ENV, f"k2:{K2},k1:{K1}")
    v2 = publish(tmp_path / "models")
    ring = EnvKeyProvider(ENV)
    assert verify_version(v1.path, "deal_win v1", ring)["key_id"] == "k1"
    assert verify_version(v2.path, "deal_win v2", ring)["key_id"] == "k2"
    with pytest.raises(TamperedVersionError, match="is for 'deal_win v2'"):  # a signature cannot move versions
        verify_version(v2.path, "deal_win v1", ring)
    monkeypatch.setenv(ENV, f"k2:{K2}")
    with pytest.raises(TamperedVersionError, match=r"signed with key 'k1'.*unknown or retired"):
        verify_version(v1.path, "deal_win v1", EnvKeyProvider(ENV))


def test_no_keys_no_signature_and_bad_keys_publish_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(f"{ENV}_FILE", raising=False)
    assert not (publish(tmp_path / "models").path / SIGNATURE_FILE).exists()
    monkeypatch.setenv(ENV, "k1:c2hvcnQ=")
    with pytest.raises(KeyMaterialError, match="k1' has 5 bytes"):
        publish(tmp_path / "other")
    assert not (tmp_path / "other").exists()
