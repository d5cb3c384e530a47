"""AES-GCM at rest: round trips, refuses altered or swapped files, rotates keys (old key decrypts until
retired), and the Triton repository gets the decrypted model."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.registry.encryption import (
    EncryptionError,
    decrypt_file,
    encrypt_file,
    encrypt_tree,
    key_id_of,
    rotate_tree,
)
from fulqrun_ml.registry.key_material import EnvKeyProvider, new_key
from fulqrun_ml.registry.store import publish_version

K1, K2 = new_key(), new_key()
ENV = "FULQRUN_ENCRYPTION_KEYS"
MODEL = bytes(range(256)) * 16


def keyring(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    return EnvKeyProvider(ENV)


def test_round_trip_and_no_plaintext_left(tmp_path, monkeypatch):
    provider = keyring(monkeypatch, f"k1:{K1}")
    (tmp_path / "model.onnx").write_bytes(MODEL)
    sealed = encrypt_file(tmp_path / "model.onnx", provider)
    assert not (tmp_path / "model.onnx").exists() and MODEL[:64] not in sealed.read_bytes()
    assert decrypt_file(sealed, provider) == MODEL


def test_altered_or_swapped_ciphertexts_do_not_decrypt(tmp_path, monkeypatch):
    provider = keyring(monkeypatch, f"k1:{K1}")
    for name in ("a.onnx", "b.onnx"):
        (tmp_path / name).write_bytes(MODEL)
        encrypt_file(tmp_path / name, provider)
    data = bytearray((tmp_path / "a.onnx.enc").read_bytes())
    data[-20] ^= 0x01
    (tmp_path / "a.onnx.enc").write_bytes(bytes(data))
    with pytest.raises(EncryptionError, match=r"a\.onnx\.enc does not decrypt with key 'k1': it was altered"):
        decrypt_file(tmp_path / "a.onnx.enc", provider)
    (tmp_path / "b.onnx.enc").rename(tmp_path / "c.onnx.enc")  # right bytes, wrong file
    with pytest.raises(EncryptionError, match="belongs to another file"):
        decrypt_file(tmp_path / "c.onnx.enc", provider)


def test_rotation_re_encrypts_and_the_old_key_works_until_retired(tmp_path, monkeypatch):
    old = keyring(monkeypatch, f"k1:{K1}")
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "model.onnx").write_bytes(MODEL)
    (sealed,) = encrypt_tree(tmp_path, old, ("model.onnx",))
    rotated = keyring(monkeypatch, f"k2:{K2},k1:{K1}")
    assert decrypt_file(sealed, rotated) == MODEL  # old key id still decrypts
    retired_too_early = keyring(monkeypatch, f"k2:{K2}")
    with pytest.raises(EncryptionError, match=r"encrypted with key 'k1'.*unknown or retired") as caught:
        decrypt_file(sealed, retired_too_early)
    assert K1 not in str(caught.value) and K2 not in str(caught.value)
    assert rotate_tree(tmp_path, rotated) == 1 and key_id_of(sealed.read_bytes(), "x") == "k2"
    assert rotate_tree(tmp_path, rotated) == 0
    assert decrypt_file(sealed, keyring(monkeypatch, f"k2:{K2}")) == MODEL  # k1 retired, nothing needs it


def test_the_triton_repository_gets_the_decrypted_model(tmp_path, monkeypatch):
    from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder

    provider = keyring(monkeypatch, f"k1:{K1}")

    def write_files(directory):
        (directory / "model.onnx").write_bytes(MODEL)
        (directory / "feature_spec.json").write_text(json.dumps({"numeric": []}))
        encrypt_tree(directory, provider, ("model.onnx",))

    version = publish_version(tmp_path / "models", "deal_win", write_files, {"kind": "binary"}, actor="test")
    assert not (version.path / "model.onnx").exists()
    config = TritonModelConfig(name="deal_win", variant="onnxruntime-cpu", inputs=(), outputs=())
    model_dir = TritonRepositoryBuilder(tmp_path / "repo").add(version, config)
    assert (model_dir / "1" / "model.onnx").read_bytes() == MODEL
    monkeypatch.delenv(ENV)
    with pytest.raises(EncryptionError, match=rf"model\.onnx is encrypted; set {ENV}"):
        TritonRepositoryBuilder(tmp_path / "repo2").add(version, config)
