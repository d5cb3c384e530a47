"""The AES-256-GCM envelope every file sealed at rest uses (model files and run-directory snapshots).

Why one envelope: a model file and a training snapshot carry what the CRM knows about customers. On a shared disk
or in a backup they should be unreadable without a key the platform gets from the environment or a key file
(crypto/keys.py), never from a config. AES-GCM (from `cryptography`, not hand-rolled) both encrypts and
authenticates: a flipped byte, a wrong key, or a file swapped for another fails to decrypt with an error naming it.

Format: MAGIC | len(key id) (1 byte) | key id | 12-byte random nonce | ciphertext+tag. The associated data binds
MAGIC, the key id and the file's logical name (`context`, e.g. "holdout.parquet"), so a ciphertext copied over
another file's name does not decrypt. The key id travels in the header so rotation knows which key sealed it.

`FULQRUN_ENCRYPT_AT_REST=1` turns sealing on for new files (`at_rest_provider`); reading a sealed file only needs
the keyring (`encryption_provider`), so switching the setting off never strands what was sealed before.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, KeyMaterialError, KeyProvider, provider_from_env
from fulqrun_ml.errors import FulqrunMLError

MAGIC = b"FQENC1"
SUFFIX = ".enc"
NONCE_BYTES = 12
AT_REST_ENV = "FULQRUN_ENCRYPT_AT_REST"


class EncryptionError(FulqrunMLError):
    """A file cannot be encrypted or decrypted; names the file and key id, never the key."""


def encryption_provider() -> KeyProvider | None:
    """The configured encryption keyring ($FULQRUN_ENCRYPTION_KEYS or ..._FILE), or None when none is set."""
    return provider_from_env(ENCRYPTION_KEYS_ENV)


def at_rest_provider() -> KeyProvider | None:
    """The keyring to seal new files with when `$FULQRUN_ENCRYPT_AT_REST` is on ("1", "true", "yes"), else None.

    Turned on without keys it refuses before anything is written: an "encrypted" store that silently wrote plain
    files would be worse than none."""
    setting = os.environ.get(AT_REST_ENV, "").strip().lower()
    if setting in ("", "0", "false", "no"):
        return None
    if setting not in ("1", "true", "yes"):
        raise KeyMaterialError(f"{AT_REST_ENV} must be 1/true/yes or 0/false/no, got {setting!r}")
    provider = encryption_provider()
    if provider is None:
        raise KeyMaterialError(f"{AT_REST_ENV} is on but no encryption keys are configured: set {ENCRYPTION_KEYS_ENV}")
    return provider


def _aad(key_id: str, context: str) -> bytes:
    return MAGIC + key_id.encode() + b"\0" + context.encode()


def is_sealed(blob: bytes) -> bool:
    """Whether `blob` starts like a sealed file (cheap check; decryption is the real one)."""
    return blob.startswith(MAGIC)


def encrypt_bytes(data: bytes, provider: KeyProvider, context: str) -> bytes:
    """Seal `data` with the provider's current key, binding `context` (the file's logical name)."""
    key_id, key = provider.current()
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond the number of files we write
    sealed = AESGCM(key[:32]).encrypt(nonce, data, _aad(key_id, context))
    encoded_id = key_id.encode()
    return MAGIC + bytes([len(encoded_id)]) + encoded_id + nonce + sealed


def key_id_of(blob: bytes, where: str) -> str:
    """The id of the key that sealed `blob`; EncryptionError naming `where` when it is not a sealed file."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
        raise EncryptionError(f"{where} is not a FulQrun encrypted file")
    size = blob[len(MAGIC)]
    return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + size].decode(errors="replace")


def decrypt_bytes(blob: bytes, provider: KeyProvider, context: str, where: str | None = None) -> bytes:
    """Open a sealed blob; EncryptionError naming `where` (default: the context) on a wrong key or any tampering."""
    where = where or context
    key_id = key_id_of(blob, where)
    start = len(MAGIC) + 1 + len(key_id.encode())
    nonce, sealed = blob[start : start + NONCE_BYTES], blob[start + NONCE_BYTES :]
    try:
        key = provider.key(key_id)
    except KeyMaterialError as exc:
        raise EncryptionError(f"{where} was encrypted with key '{key_id}': {exc}") from None
    try:
        return AESGCM(key[:32]).decrypt(nonce, sealed, _aad(key_id, context))
    except (InvalidTag, ValueError):  # ValueError: a truncated file leaves no room for the nonce
        raise EncryptionError(
            f"{where} does not decrypt with key '{key_id}': it was altered, or it belongs to another file"
        ) from None
