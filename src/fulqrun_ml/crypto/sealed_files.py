"""Sealed files on disk: `<name>.enc` next to where the plain file would be, the plain name bound in.

Why a file layer over the envelope: model files (registry) and snapshots (data/snapshot_files.py) are both sealed
file by file, rotated onto a new key and, for readers that need the plain bytes, opened in memory. One set of
functions means one on-disk format and one set of error messages for both. Every write is atomic (temp file +
rename), so a reader never sees half a ciphertext, and a plaintext is removed only after its ciphertext exists.
"""

from __future__ import annotations

from pathlib import Path

from fulqrun_ml.crypto.atomic import atomic_write_bytes
from fulqrun_ml.crypto.envelope import (
    SUFFIX,
    EncryptionError,
    decrypt_bytes,
    encrypt_bytes,
    encryption_provider,
    key_id_of,
)
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, KeyProvider


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
