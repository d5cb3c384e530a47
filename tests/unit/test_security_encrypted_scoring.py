"""A published model encrypted at rest end to end: `fulqrun-ml models encrypt` seals model.onnx (re-signed, the
plaintext gone from disk), `fulqrun-ml score` decrypts it in memory and scores exactly as before, a rotation
keeps it scoring after the old key is retired, and a missing key or an altered ciphertext is one clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.commands import models_main
from fulqrun_ml.registry.encryption import ENCRYPTION_KEYS_ENV, EncryptionError
from fulqrun_ml.registry.key_material import SIGNING_KEYS_ENV, EnvKeyProvider, new_key
from fulqrun_ml.registry.roles import ROLES_ENV
from fulqrun_ml.registry.signing import sign_version, verify_version
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.scoring.bulk import score_table

S1, E1, E2 = new_key(), new_key(), new_key()


@pytest.fixture
def sealed(published, tmp_path, monkeypatch):
    """A signed copy of the session's published deal_win (never the shared one), encrypted by the CLI."""
    original, _ = published
    models = tmp_path / "models"
    shutil.copytree(original.path, models / "deal_win" / "1")
    monkeypatch.setenv(SIGNING_KEYS_ENV, f"s1:{S1}")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{E1}")
    monkeypatch.delenv(ROLES_ENV, raising=False)
    sign_version(models / "deal_win" / "1", "deal_win v1", EnvKeyProvider(SIGNING_KEYS_ENV))
    assert models_main(["--models-dir", str(models), "encrypt", "deal_win", "1"]) == 0
    run_dir = Path(json.loads((original.path / "lineage.json").read_text())["run_dir"])
    spec = FittedFeatureSpec.load(original.path / "feature_spec.json")
    rows = pd.read_parquet(run_dir / "holdout.parquet")[spec.spec.names].head(200)
    source = tmp_path / "deals.parquet"
    rows.to_parquet(source, index=False)
    expected = onnx_probabilities(original.path / "model.onnx", spec, rows)
    return models, source, expected, original.path / "model.onnx"


def scores(models: Path, source: Path, out: Path) -> np.ndarray:
    version = get_version(models, "deal_win", 1)
    return pd.read_parquet(score_table(version, source, out).output)["probability"].to_numpy()


def test_encrypted_version_scores_as_before_and_holds_no_plaintext(sealed, tmp_path, monkeypatch):
    models, source, expected, plain_model = sealed
    version_dir = models / "deal_win" / "1"
    assert not (version_dir / "model.onnx").exists() and (version_dir / "model.onnx.enc").is_file()
    probe = plain_model.read_bytes()[-4096:]  # the weights' tail: must be in no file of the version
    assert not [p for p in version_dir.rglob("*") if p.is_file() and probe in p.read_bytes()]
    signature = verify_version(version_dir, "deal_win v1", EnvKeyProvider(SIGNING_KEYS_ENV))
    assert "model.onnx.enc" in signature["files"] and "model.onnx" in signature["plain"]
    np.testing.assert_allclose(scores(models, source, tmp_path / "a.parquet"), expected, atol=1e-6)

    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2},e1:{E1}")
    assert models_main(["--models-dir", str(models), "rotate-keys"]) == 0
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e2:{E2}")  # e1 retired
    np.testing.assert_allclose(scores(models, source, tmp_path / "b.parquet"), expected, atol=1e-6)
    assert [r["action"] for r in map(json.loads, (models / "deal_win" / "audit.jsonl").read_text().splitlines())] == [
        "encrypt",
        "rotate_keys",
    ]


def test_a_missing_key_or_an_altered_ciphertext_is_one_clear_error(sealed, tmp_path, monkeypatch):
    models, source, _, _ = sealed
    monkeypatch.delenv(ENCRYPTION_KEYS_ENV)
    with pytest.raises(
        EncryptionError, match=rf"model\.onnx is encrypted at rest \(model\.onnx\.enc\); set {ENCRYPTION_KEYS_ENV}"
    ):
        scores(models, source, tmp_path / "c.parquet")
    monkeypatch.setenv(ENCRYPTION_KEYS_ENV, f"e1:{E1}")
    enc = models / "deal_win" / "1" / "model.onnx.enc"
    data = bytearray(enc.read_bytes())
    data[-10] ^= 0x01
    enc.write_bytes(bytes(data))
    with pytest.raises(EncryptionError, match="does not decrypt with key 'e1': it was altered"):
        scores(models, source, tmp_path / "d.parquet")
    assert not (tmp_path / "d.parquet").exists()
    assert models_main(["--models-dir", str(models), "encrypt", "deal_win", "1"]) == 2  # tampered: never re-signed
