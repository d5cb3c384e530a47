"""`FULQRUN_ENCRYPT_AT_REST=1` (registry/encryption_at_rest.py): `publish_version` seals the model files before it
signs and renames, so no published version holds its weights in plain text; readers decrypt transparently (the
Triton repository builder, `read_artifact`); `models rotate-keys` covers these versions; a flipped ciphertext byte is
refused naming the file; turned on without keys, nothing is written."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.cli import main
from fulqrun_ml.registry.encryption import ENCRYPTION_KEYS_ENV, EncryptionError, key_id_of, read_artifact
from fulqrun_ml.registry.encryption_at_rest import AT_REST_ENV
from fulqrun_ml.registry.key_material import SIGNING_KEYS_ENV, KeyMaterialError, new_key
from fulqrun_ml.registry.signing import SIGNATURE_FILE, TamperedVersionError, verify_version
from fulqrun_ml.registry.signing import signing_provider as signer
from fulqrun_ml.registry.store import publish_version
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder

S1, E1, E2 = new_key(), new_key(), new_key()
MODEL = bytes(range(256)) * 16  # distinctive bytes: searched for in every file afterwards
CONFIG = TritonModelConfig(name="deal_win", variant="onnxruntime-cpu", inputs=(), outputs=())


@pytest.fixture
def at_rest(monkeypatch):
    monkeypatch.setenv(AT_REST_ENV, "1")
    monkeypatch.setenv(SIGNING_KEYS_ENV, f"s1:{S1}")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{E1}")
    return monkeypatch


def _write(directory):
    (directory / "model.onnx").write_bytes(MODEL)
    (directory / "feature_spec.json").write_text(json.dumps({"numeric": []}))


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_published_version_is_sealed_signed_and_read_back_plain(at_rest, tmp_path):
    version = publish_version(tmp_path / "models", "deal_win", _write, {"kind": "binary"}, actor="ci")
    assert (version.path / "model.onnx.enc").is_file() and not (version.path / "model.onnx").exists()
    assert not any(MODEL[:512] in data for data in _files(tmp_path / "models").values()), "plain weights on disk"
    signature = json.loads((version.path / SIGNATURE_FILE).read_text())
    assert "model.onnx.enc" in signature["files"] and set(signature["plain"]) == {"model.onnx"}
    verify_version(version.path, "deal_win v1", signer())
    assert read_artifact(version.path / "model.onnx") == MODEL  # in memory, for `fulqrun-ml score`
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(version, CONFIG)
    assert (model_dir / "1" / "model.onnx").read_bytes() == MODEL  # Triton needs the plain file
    audit = [json.loads(line) for line in (tmp_path / "models" / "deal_win" / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["action"] == "publish" and audit[-1]["encrypted_with"] == "e1"


def test_a_flipped_ciphertext_byte_is_refused_naming_the_file(at_rest, tmp_path):
    version = publish_version(tmp_path / "models", "deal_win", _write, {"kind": "binary"}, actor="ci")
    sealed = version.path / "model.onnx.enc"
    data = bytearray(sealed.read_bytes())
    data[-5] ^= 0x01
    sealed.write_bytes(bytes(data))
    with pytest.raises(EncryptionError, match=r"model\.onnx\.enc does not decrypt"):
        read_artifact(version.path / "model.onnx")
    with pytest.raises(TamperedVersionError, match=r"model\.onnx\.enc"):
        verify_version(version.path, "deal_win v1", signer())


def test_rotate_keys_covers_versions_sealed_at_publish(at_rest, tmp_path, capsys):
    models = tmp_path / "models"
    version = publish_version(models, "deal_win", _write, {"kind": "binary"}, actor="ci")
    at_rest.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")
    assert main(["models", "--models-dir", str(models), "rotate-keys", "deal_win"]) == 0, capsys.readouterr().err
    at_rest.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2}")  # e1 retired
    assert key_id_of((version.path / "model.onnx.enc").read_bytes(), "model.onnx.enc") == "e2"
    assert read_artifact(version.path / "model.onnx") == MODEL
    verify_version(version.path, "deal_win v1", signer())


@pytest.mark.parametrize(
    ("setting", "keys", "message"),
    [("1", None, "no encryption keys"), ("maybe", E1, "must be")],
    ids=["on-without-keys", "bad-setting"],  # a generated key in the id would differ per process (and print a key)
)
def test_on_without_keys_or_a_bad_setting_publishes_nothing(monkeypatch, tmp_path, setting, keys, message):
    monkeypatch.setenv(AT_REST_ENV, setting)
    monkeypatch.delenv(SIGNING_KEYS_ENV, raising=False)
    if keys is None:
        monkeypatch.delenv(ENCRYPTION_KEYS_ENV, raising=False)
    else:
        monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{keys}")
    (tmp_path / "models").mkdir()
    with pytest.raises(KeyMaterialError, match=message):
        publish_version(tmp_path / "models", "deal_win", _write, {"kind": "binary"}, actor="ci")
    assert not any((tmp_path / "models").iterdir())


def test_off_by_default_publishes_plain(monkeypatch, tmp_path):
    monkeypatch.delenv(AT_REST_ENV, raising=False)
    version = publish_version(tmp_path / "models", "deal_win", _write, {"kind": "binary"}, actor="ci")
    assert (version.path / "model.onnx").read_bytes() == MODEL
