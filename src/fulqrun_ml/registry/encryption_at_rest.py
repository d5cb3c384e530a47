"""Encryption at rest by configuration: with `FULQRUN_ENCRYPT_AT_REST=1`, `publish_version` seals every model file
(`*.onnx`, `*.plan`) of a new version before it is signed and renamed into place.

Why at publish and not only with `fulqrun-ml models encrypt`: a version sealed afterwards existed in plain text on
disk (and in any backup taken meanwhile) until someone ran the command. Sealing inside the temporary directory means
no published version of a configured registry ever holds its weights in plain text, and the signature covers the
ciphertext plus the plaintext's digest (signing.py), exactly as after `models encrypt`. Readers are unchanged:
Triton's repository builder decrypts into the repository, `read_artifact` (`fulqrun-ml score`) in memory, and
`fulqrun-ml models rotate-keys` re-encrypts these versions like any other encrypted one.

Turned on without keys it refuses before anything is written: an "encrypted" registry that silently stored plain
files would be worse than none.
"""

from __future__ import annotations

import os
from pathlib import Path

from fulqrun_ml.registry.encryption import encrypt_file, encryption_provider
from fulqrun_ml.registry.key_material import ENCRYPTION_KEYS_ENV, KeyMaterialError, KeyProvider

AT_REST_ENV = "FULQRUN_ENCRYPT_AT_REST"
MODEL_FILE_SUFFIXES = (".onnx", ".plan")  # the weights: what a reader of the disk must not get


def at_rest_provider() -> KeyProvider | None:
    """The keyring to seal new versions with when `$FULQRUN_ENCRYPT_AT_REST` is on ("1", "true", "yes"), else None."""
    setting = os.environ.get(AT_REST_ENV, "").strip().lower()
    if setting in ("", "0", "false", "no"):
        return None
    if setting not in ("1", "true", "yes"):
        raise KeyMaterialError(f"{AT_REST_ENV} must be 1/true/yes or 0/false/no, got {setting!r}")
    provider = encryption_provider()
    if provider is None:
        raise KeyMaterialError(f"{AT_REST_ENV} is on but no encryption keys are configured: set {ENCRYPTION_KEYS_ENV}")
    return provider


def seal_model_files(directory: Path, provider: KeyProvider) -> list[Path]:
    """Replace every model file under `directory` by its `.enc` (AES-GCM, the file name bound in); the sealed paths."""
    plain = sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    return [encrypt_file(path, provider) for path in plain]
