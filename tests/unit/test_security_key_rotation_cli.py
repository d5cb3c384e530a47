"""`fulqrun-ml models rotate-keys`: every encrypted version moves to the current key and stays signed, so the old
key can be retired; each change is audited; a researcher is refused when roles are on; no keyring is one clear
error (exit 2) naming the variable, never a key."""

from __future__ import annotations

import json
import os

import pytest

from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.encryption import ENCRYPTION_KEYS_ENV, encrypt_tree, key_id_of
from fulqrun_ml.registry.key_material import SIGNING_KEYS_ENV, EnvKeyProvider, new_key
from fulqrun_ml.registry.roles import ROLES_ENV
from fulqrun_ml.registry.signing import verify_version
from fulqrun_ml.registry.store import publish_version
from fulqrun_ml.serving.repository import TritonModelConfig, TritonRepositoryBuilder

S1, E1, E2 = new_key(), new_key(), new_key()
MODEL = bytes(range(256)) * 16


def publish(models, name: str, encrypted: bool = True):
    def write_files(directory):
        (directory / "model.onnx").write_bytes(MODEL)
        (directory / "feature_spec.json").write_text(json.dumps({"numeric": []}))
        if encrypted:
            encrypt_tree(directory, EnvKeyProvider(ENCRYPTION_KEYS_ENV), ("model.onnx",))

    return publish_version(models, name, write_files, {"kind": "binary"}, actor="ci")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(SIGNING_KEYS_ENV, f"s1:{S1}")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{E1}")
    monkeypatch.setenv("USER", "alice")
    monkeypatch.delenv(ROLES_ENV, raising=False)
    models = tmp_path / "models"
    versions = [publish(models, "deal_win"), publish(models, "deal_win"), publish(models, "churn", encrypted=False)]
    return models, versions


def test_rotate_keys_moves_every_version_and_the_old_key_can_be_retired(registry, monkeypatch, capsys):
    models, versions = registry
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")
    assert models_main(["--models-dir", str(models), "rotate-keys"]) == 0
    assert "2 of 2 encrypted version(s) re-encrypted with key 'e2'" in capsys.readouterr().out
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2}")  # e1 retired
    for version in versions[:2]:
        assert key_id_of((version.path / "model.onnx.enc").read_bytes(), "model") == "e2"
        verify_version(version.path, f"deal_win v{version.version}", EnvKeyProvider(SIGNING_KEYS_ENV))
        config = TritonModelConfig(name="deal_win", variant="onnxruntime-cpu", inputs=(), outputs=())
        built = TritonRepositoryBuilder(models.parent / f"repo{version.version}").add(version, config)
        assert (built / str(version.version) / "model.onnx").read_bytes() == MODEL
    audit = [r for r in read_audit(models, "deal_win") if r["action"] == "rotate_keys"]
    assert [(r["version"], r["key_id"], r["files"], r["actor"]) for r in audit] == [
        (1, "e2", 1, "alice"),
        (2, "e2", 1, "alice"),
    ]
    assert models_main(["--models-dir", str(models), "rotate-keys", "deal_win"]) == 0  # again: nothing to do
    assert "0 of 2 encrypted version(s)" in capsys.readouterr().out


def test_rotate_keys_is_an_admin_action_when_roles_are_on(registry, monkeypatch, capsys):
    models, versions = registry
    roles = models / "roles.json"
    roles.write_text(json.dumps({"users": {"alice": "approver"}}))
    os.chmod(roles, 0o644)
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")
    assert models_main(["--models-dir", str(models), "rotate-keys"]) == 2
    assert "'alice' has role approver; rotate_keys needs admin" in capsys.readouterr().err
    assert key_id_of((versions[0].path / "model.onnx.enc").read_bytes(), "model") == "e1"  # nothing changed
    assert read_audit(models, "churn")[-1]["action"] == "denied"


def test_rotate_keys_without_a_keyring_is_one_clear_error(registry, monkeypatch, capsys):
    models, _ = registry
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
    assert models_main(["--models-dir", str(models), "rotate-keys"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: no encryption keys: set {ENCRYPTION_KEYS_ENV} (new key first) to rotate"
    assert E1 not in err and S1 not in err
