"""Planted secrets never leak: a password in the CRM DSN, the signing and encryption keys and the Triton control
key are set in the environment of a real run (train with W&B offline, export, sign, encrypt, serve, and a few
failures, among them a PostgreSQL source whose DSN holds the password), then every file the run wrote, every
output and every error message is searched for them."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fulqrun_ml.data.sources import PostgresSource, SourceError
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.encryption import EncryptionError, decrypt_file, encrypt_tree
from fulqrun_ml.registry.key_material import EnvKeyProvider, FileKeyProvider, KeyMaterialError, new_key
from fulqrun_ml.registry.signing import sign_version
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.repository import TritonRepositoryBuilder, config_for_version
from fulqrun_ml.serving.server import TritonServer

pytestmark = pytest.mark.integration
CLI = Path(sys.executable).parent / "fulqrun-ml"
PASSWORD = "Planted-Pa55word-q7Zx"
CONTROL_KEY = "planted-control-key-Vb2k9"
SIGNING_KEY = base64.b64encode(b"planted-signing-key-material-32b!").decode()
ENCRYPTION_KEY = base64.b64encode(b"planted-encryption-key-32-bytes!!").decode()
SECRETS = (PASSWORD, CONTROL_KEY, SIGNING_KEY, ENCRYPTION_KEY, SIGNING_KEY[:24], ENCRYPTION_KEY[:24])


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_planted_secrets_appear_in_no_file_output_or_error(tmp_path, monkeypatch):
    env = {
        "FULQRUN_ROOT": str(tmp_path),
        "WANDB_DIR": str(tmp_path / "wandb"),
        "WANDB_MODE": "offline",
        "FULQRUN_CRM_DSN": f"postgresql://crm:{PASSWORD}@127.0.0.1:1/crm",
        "FULQRUN_TRITON_CONTROL_KEY": CONTROL_KEY,
        "FULQRUN_SIGNING_KEYS": f"ci:{SIGNING_KEY}",
        "FULQRUN_ENCRYPTION_KEYS": f"ci:{ENCRYPTION_KEY}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    outputs: list[str] = []

    def cli(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([str(CLI), *args], env={**os.environ}, capture_output=True, text=True, timeout=400)
        outputs.extend((done.stdout, done.stderr))
        return done

    tiny = ["data.source.n_opportunities=1000", "data.source.n_companies=200", "trainer.max_epochs=1"]
    assert cli("train", *tiny).returncode == 0, outputs[-1][-2000:]  # W&B offline logger: the default
    assert cli("export").returncode == 0, outputs[-1][-2000:]

    version = get_version(tmp_path / "models", "deal_win")
    encrypt_tree(version.path, EnvKeyProvider("FULQRUN_ENCRYPTION_KEYS"), ("model.onnx",))
    sign_version(version.path, f"deal_win v{version.version}", EnvKeyProvider("FULQRUN_SIGNING_KEYS"))
    repo = tmp_path / "repo"
    TritonRepositoryBuilder(repo).add(version, config_for_version(version))
    server = TritonServer(repo, log_path=tmp_path / "tritonserver.log", gateway=True)
    with server, TritonPredictionClient(server.http_url, "deal_win") as client:
        assert client.is_ready()

    errors: list[str] = []
    for failing in (
        lambda: PostgresSource().load(),
        lambda: decrypt_file(next(version.path.glob("*.enc")), FileKeyProvider(tmp_path / "missing.json")),
        lambda: decrypt_file(next(version.path.glob("*.enc")), _other_keyring(monkeypatch)),
        lambda: EnvKeyProvider("FULQRUN_BROKEN_KEYS"),
    ):
        with pytest.raises((SourceError, EncryptionError, KeyMaterialError, FulqrunMLError)) as caught:
            failing()
        errors.append(str(caught.value))
    assert any("127.0.0.1" in e or "PostgreSQL" in e for e in errors)

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20 and any("wandb" in str(p) for p in written) and any(p.suffix == ".log" for p in written)
    hits = {str(p): found for p in written if (found := leaks(p.read_bytes().decode("latin-1")))}
    hits.update({f"output {i}": found for i, text in enumerate(outputs + errors) if (found := leaks(text))})
    assert hits == {}


def _other_keyring(monkeypatch) -> EnvKeyProvider:
    monkeypatch.setenv("FULQRUN_OTHER_KEYS", f"ci:{new_key()}")
    monkeypatch.setenv("FULQRUN_BROKEN_KEYS", f"ci:{PASSWORD}")  # not base64 of 32 bytes: refused, not echoed
    return EnvKeyProvider("FULQRUN_OTHER_KEYS")
