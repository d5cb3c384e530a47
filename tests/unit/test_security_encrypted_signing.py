"""Encryption at rest and signing together: a version published with its model encrypted is signed over the
ciphertext AND the plaintext's digest, so the model decrypted into the Triton repository is checked before Triton
starts (a flipped byte there is refused), and rotating the encryption key re-signs the version instead of
breaking its signature, without ever laundering a tampered version."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.registry.encryption import ENCRYPTION_KEYS_ENV, encrypt_tree, key_id_of, rotate_tree
from fulqrun_ml.registry.key_material import SIGNING_KEYS_ENV, EnvKeyProvider, new_key
from fulqrun_ml.registry.signing import SIGNATURE_FILE, TamperedVersionError, rotate_signed_version, verify_version
from fulqrun_ml.registry.store import ModelVersion, publish_version
from fulqrun_ml.serving.integrity import verify_repository
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder
from fulqrun_ml.serving.server import TritonServer

S1, E1, E2 = new_key(), new_key(), new_key()
MODEL = bytes(range(256)) * 16
CONFIG = TritonModelConfig(name="deal_win", variant="onnxruntime-cpu", inputs=(), outputs=())


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv(SIGNING_KEYS_ENV, f"s1:{S1}")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{E1}")
    return monkeypatch


def publish(models) -> ModelVersion:
    def write_files(directory):
        (directory / "model.onnx").write_bytes(MODEL)
        (directory / "feature_spec.json").write_text(json.dumps({"numeric": []}))
        encrypt_tree(directory, EnvKeyProvider(ENCRYPTION_KEYS_ENV), ("model.onnx",))

    return publish_version(models, "deal_win", write_files, {"kind": "binary"}, actor="ci")


def flip(path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_the_decrypted_model_in_the_triton_repository_is_checked_before_start(keys, tmp_path):
    version = publish(tmp_path / "models")
    signature = json.loads((version.path / SIGNATURE_FILE).read_text())
    assert "model.onnx.enc" in signature["files"] and "model.onnx" not in signature["files"]
    assert set(signature["plain"]) == {"model.onnx"}
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(version, CONFIG)
    assert (model_dir / "1" / "model.onnx").read_bytes() == MODEL
    assert verify_repository(tmp_path / "repo") == 1
    flip(model_dir / "1" / "model.onnx")
    expected = r"model\.onnx \(decrypted from model\.onnx\.enc\) was modified after signing"
    with pytest.raises(TamperedVersionError, match=expected):
        verify_repository(tmp_path / "repo")
    server = TritonServer(tmp_path / "repo", explicit_models=["deal_win"])
    with pytest.raises(TamperedVersionError, match=expected):
        server.start(timeout_s=5)
    assert server.process is None  # refused before any tritonserver process existed


def test_an_edited_plaintext_digest_breaks_the_mac(keys, tmp_path):
    version = publish(tmp_path / "models")
    path = version.path / SIGNATURE_FILE
    signature = json.loads(path.read_text())
    signature["plain"]["model.onnx"] = "0" * 64
    path.write_text(json.dumps(signature))
    with pytest.raises(TamperedVersionError, match="does not match its MAC"):
        verify_version(version.path, "deal_win v1", EnvKeyProvider(SIGNING_KEYS_ENV))


def test_rotating_the_encryption_key_re_signs_the_version(keys, tmp_path):
    version = publish(tmp_path / "models")
    keys.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")  # e2 is current; e1 still decrypts
    signer, encryption = EnvKeyProvider(SIGNING_KEYS_ENV), EnvKeyProvider(ENCRYPTION_KEYS_ENV)
    assert rotate_signed_version(version.path, "deal_win v1", signer, encryption) == 1
    assert key_id_of((version.path / "model.onnx.enc").read_bytes(), "model") == "e2"
    verify_version(version.path, "deal_win v1", signer)
    assert rotate_signed_version(version.path, "deal_win v1", signer, encryption) == 0  # idempotent
    keys.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2}")  # e1 retired: the version still serves
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(version, CONFIG)
    assert (model_dir / "1" / "model.onnx").read_bytes() == MODEL


def test_rotation_resumes_after_a_crash_but_never_launders_tampering(keys, tmp_path):
    version = publish(tmp_path / "models")
    keys.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")
    signer, encryption = EnvKeyProvider(SIGNING_KEYS_ENV), EnvKeyProvider(ENCRYPTION_KEYS_ENV)
    rotate_tree(version.path, encryption)  # a crash after re-encrypting, before re-signing
    with pytest.raises(TamperedVersionError, match=r"model\.onnx\.enc was modified"):
        verify_version(version.path, "deal_win v1", signer)
    assert rotate_signed_version(version.path, "deal_win v1", signer, encryption) == 0
    verify_version(version.path, "deal_win v1", signer)  # re-signed: the same plaintext, now under e2

    flip(version.path / "feature_spec.json", at=2)
    with pytest.raises(TamperedVersionError, match=r"feature_spec\.json was modified after signing"):
        rotate_signed_version(version.path, "deal_win v1", signer, encryption)
    flip(version.path / "feature_spec.json", at=2)  # restored
    data = bytearray(MODEL)  # a genuine ciphertext under the current key and the same name, of another model
    data[0] ^= 0x01
    swapped = tmp_path / "swap"
    swapped.mkdir()
    (swapped / "model.onnx").write_bytes(bytes(data))
    encrypt_tree(swapped, encryption, ("model.onnx",))
    (version.path / "model.onnx.enc").write_bytes((swapped / "model.onnx.enc").read_bytes())
    with pytest.raises(TamperedVersionError, match="does not hold the signed plaintext"):
        rotate_signed_version(version.path, "deal_win v1", signer, encryption)
