"""AES-256-GCM encryption at rest for model artifacts and snapshots, with key ids for rotation.

Why: a model file and a training snapshot carry what the CRM knows about customers (snapshots hold their rows;
models can leak training data). On a shared disk or in a backup they should be unreadable without a key the
platform gets from the environment or a key file (keys.py), never from a config. AES-GCM (from `cryptography`,
not hand-rolled) both encrypts and authenticates: a flipped byte or a file swapped for another fails to decrypt.

File format (`<name>.enc`): MAGIC | len(key id) (1 byte) | key id | 12-byte random nonce | ciphertext+tag.
The associated data binds MAGIC, the key id and the file's logical name (`context`), so a ciphertext copied
over another file's name does not decrypt. Rotation (`rotate_file`) decrypts with the key id in the header and
re-encrypts with the provider's current key; the old key still decrypts until it is removed from the keyring.
Files are published atomically (temp file + rename), so a reader never sees half a ciphertext.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pandas as pd
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.key_material import ENCRYPTION_KEYS_ENV, KeyMaterialError, KeyProvider, provider_from_env
from fulqrun_ml.registry.locking import atomic_write_bytes

MAGIC = b"FQENC1"
SUFFIX = ".enc"
NONCE_BYTES = 12


class EncryptionError(FulqrunMLError):
    """A file cannot be encrypted or decrypted; names the file and key id, never the key."""


def encryption_provider() -> KeyProvider | None:
    """The configured encryption keyring ($FULQRUN_ENCRYPTION_KEYS or ..._FILE), or None when encryption is off."""
    return provider_from_env(ENCRYPTION_KEYS_ENV)


def _aad(key_id: str, context: str) -> bytes:
    return MAGIC + key_id.encode() + b"\0" + context.encode()


def encrypt_bytes(data: bytes, provider: KeyProvider, context: str) -> bytes:
    key_id, key = provider.current()
    nonce = os.urandom(NONCE_BYTES)  # random 96-bit nonces: safe far beyond the number of files we write
    sealed = AESGCM(key[:32]).encrypt(nonce, data, _aad(key_id, context))
    encoded_id = key_id.encode()
    return MAGIC + bytes([len(encoded_id)]) + encoded_id + nonce + sealed


def key_id_of(blob: bytes, where: str) -> str:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
        raise EncryptionError(f"{where} is not a FulQrun encrypted file")
    size = blob[len(MAGIC)]
    return blob[len(MAGIC) + 1 : len(MAGIC) + 1 + size].decode(errors="replace")


def decrypt_bytes(blob: bytes, provider: KeyProvider, context: str, where: str | None = None) -> bytes:
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
    except InvalidTag:
        raise EncryptionError(
            f"{where} does not decrypt with key '{key_id}': it was altered, or it belongs to another file"
        ) from None


def encrypt_file(path: Path, provider: KeyProvider, remove_plaintext: bool = True) -> Path:
    """Write `<path>.enc` (the context is the plain file name) and, by default, delete the plaintext."""
    path = Path(path)
    target = path.with_name(path.name + SUFFIX)
    atomic_write_bytes(target, encrypt_bytes(path.read_bytes(), provider, path.name))
    if remove_plaintext:
        path.unlink()
    return target


def decrypt_file(encrypted: Path, provider: KeyProvider) -> bytes:
    encrypted = Path(encrypted)
    if encrypted.suffix != SUFFIX:
        raise EncryptionError(f"{encrypted} does not end in {SUFFIX}")
    return decrypt_bytes(encrypted.read_bytes(), provider, encrypted.name[: -len(SUFFIX)], str(encrypted))


def decrypt_to(encrypted: Path, target: Path, provider: KeyProvider) -> Path:
    """Decrypt into `target` atomically (e.g. into a Triton repository, which needs the plain model)."""
    atomic_write_bytes(Path(target), decrypt_file(encrypted, provider))
    return Path(target)


def rotate_file(encrypted: Path, provider: KeyProvider) -> bool:
    """Re-encrypt with the current key when another key sealed it; returns whether the file changed."""
    encrypted = Path(encrypted)
    current_id, _ = provider.current()
    if key_id_of(encrypted.read_bytes(), str(encrypted)) == current_id:
        return False
    context = encrypted.name[: -len(SUFFIX)]
    atomic_write_bytes(encrypted, encrypt_bytes(decrypt_file(encrypted, provider), provider, context))
    return True


def encrypt_tree(directory: Path, provider: KeyProvider, names: tuple[str, ...]) -> list[Path]:
    """Encrypt the files called `names` under `directory` (e.g. a version's model.onnx, holdout.parquet)."""
    return [encrypt_file(p, provider) for p in sorted(Path(directory).rglob("*")) if p.is_file() and p.name in names]


def rotate_tree(directory: Path, provider: KeyProvider) -> int:
    """Re-encrypt every `*.enc` under `directory` with the current key; returns how many changed."""
    return sum(rotate_file(p, provider) for p in sorted(Path(directory).rglob(f"*{SUFFIX}")))


def read_artifact(path: Path) -> bytes:
    """The plain bytes of a registry file: `path` itself, else `<path>.enc` decrypted in memory with the configured
    keyring (the plaintext never touches the disk); for offline readers such as `fulqrun-ml score`."""
    path = Path(path)
    if path.is_file() or not path.with_name(path.name + SUFFIX).is_file():
        return path.read_bytes()  # FileNotFoundError names the plain file when neither exists
    provider = encryption_provider()
    if provider is None:
        raise EncryptionError(f"{path} is encrypted at rest ({path.name}{SUFFIX}); set {ENCRYPTION_KEYS_ENV}")
    return decrypt_file(path.with_name(path.name + SUFFIX), provider)


def write_encrypted_parquet(frame: pd.DataFrame, path: Path, provider: KeyProvider) -> Path:
    """A snapshot at rest: Parquet bytes in memory, sealed, written once (the plaintext never touches disk)."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    path = Path(path)
    target = path if path.suffix == SUFFIX else path.with_name(path.name + SUFFIX)
    atomic_write_bytes(target, encrypt_bytes(buffer.getvalue(), provider, target.name[: -len(SUFFIX)]))
    return target


def read_encrypted_parquet(path: Path, provider: KeyProvider) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(decrypt_file(Path(path), provider)))
