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

from pathlib import Path

from fulqrun_ml.crypto.envelope import AT_REST_ENV, at_rest_provider
from fulqrun_ml.registry.encryption import encrypt_file
from fulqrun_ml.registry.key_material import KeyProvider

__all__ = ["AT_REST_ENV", "MODEL_FILE_SUFFIXES", "at_rest_provider", "seal_model_files"]
MODEL_FILE_SUFFIXES = (".onnx", ".plan")  # the weights: what a reader of the disk must not get


def seal_model_files(directory: Path, provider: KeyProvider) -> list[Path]:
    """Replace every model file under `directory` by its `.enc` (AES-GCM, the file name bound in); the sealed paths."""
    plain = sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    return [encrypt_file(path, provider) for path in plain]
