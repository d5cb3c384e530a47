"""Model files sealed at rest, file by file: `<name>.enc` next to where the plain file would be.

Why a file layer over the envelope: the registry seals a version's model files (`*.onnx`, `*.plan`) after the
fact (`fulqrun-ml models encrypt`) or at publish (encryption_at_rest.py), rotates them onto a new key, and hands
Triton a decrypted copy. The AES-GCM envelope (format, associated data binding the file
name, errors), the sealed-file functions and the key providers live in crypto/ under the data layer, shared with
the run-directory snapshots (data/snapshot_files.py). The names below are re-exported so the registry's callers
keep one import path; the file-level functions publish atomically, so a reader never sees half a ciphertext.
"""

from __future__ import annotations

from fulqrun_ml.crypto.envelope import (
    MAGIC,
    NONCE_BYTES,
    SUFFIX,
    EncryptionError,
    decrypt_bytes,
    encrypt_bytes,
    encryption_provider,
    key_id_of,
)
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV
from fulqrun_ml.crypto.sealed_files import (
    decrypt_file,
    decrypt_to,
    encrypt_file,
    encrypt_tree,
    read_artifact,
    rotate_file,
    rotate_tree,
)

__all__ = [
    "ENCRYPTION_KEYS_ENV",
    "MAGIC",
    "NONCE_BYTES",
    "SUFFIX",
    "EncryptionError",
    "decrypt_bytes",
    "decrypt_file",
    "decrypt_to",
    "encrypt_bytes",
    "encrypt_file",
    "encrypt_tree",
    "encryption_provider",
    "key_id_of",
    "read_artifact",
    "rotate_file",
    "rotate_tree",
]
