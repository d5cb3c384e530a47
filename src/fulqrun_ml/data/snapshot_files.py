"""The one way a run directory's snapshot files (holdout.parquet, open_deals.parquet, ...; the sequence models'
holdout_sequences.npz next to them) are written and read.

Why one helper: a snapshot holds customer rows (features, labels, ids). With `FULQRUN_ENCRYPT_AT_REST=1` it must
never exist in plain text on disk, and about twenty readers (export, monitoring, dashboard, benchmarks) must not
each learn the file format. Callers name the LOGICAL file (`run_dir / "holdout.parquet"`); this module decides
what is stored:

- encryption off: `holdout.parquet`, plain Parquet, published atomically;
- encryption on: `holdout.parquet.enc` only. The Parquet bytes are built in memory, sealed with AES-256-GCM
  (crypto/envelope.py, the registry's envelope) with the logical name as associated data, and published
  atomically; the plaintext never touches the disk, and a stale plain file of the same name is removed after
  the ciphertext exists. Same name + `.enc` (not a header inside `.parquet`) so no tool mistakes a ciphertext
  for Parquet, and a directory listing shows what is sealed.

Reading prefers the sealed file, decrypts in memory with the configured keyring, and refuses a wrong key, an
altered byte or a file renamed from another snapshot (e.g. open_deals.parquet.enc -> holdout.parquet.enc) with
an error naming the file. `rotate_snapshots` moves every sealed snapshot under a directory onto the current key
(`fulqrun-ml models rotate-keys --runs-dir`); `rewrite_snapshot` keeps a file's form (for erasure). The event
sequences of the sequence models (`*.npz`, row order shared with holdout.parquet) take the same path through
`write_snapshot_arrays` / `read_snapshot_arrays`.
"""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from fulqrun_ml.crypto.atomic import atomic_write_bytes, fsync_dir
from fulqrun_ml.crypto.envelope import SUFFIX, at_rest_provider, encrypt_bytes, encryption_provider
from fulqrun_ml.crypto.keys import ENCRYPTION_KEYS_ENV, KeyProvider
from fulqrun_ml.crypto.sealed_files import decrypt_file, rotate_file
from fulqrun_ml.errors import FulqrunMLError

PARQUET_SUFFIX = ".parquet"
SEALED_SUFFIX = PARQUET_SUFFIX + SUFFIX  # holdout.parquet.enc
ARRAYS_SUFFIX = ".npz"  # holdout_sequences.npz: a sequence model's event tensors (sealed: holdout_sequences.npz.enc)
SNAPSHOT_SUFFIXES = (PARQUET_SUFFIX, ARRAYS_SUFFIX)


class SnapshotFileError(FulqrunMLError):
    """A snapshot file cannot be read (not Parquet, sealed without keys configured); names the file."""


def logical_path(path: str | Path) -> Path:
    """`holdout.parquet` for either `holdout.parquet` or `holdout.parquet.enc` (likewise `*.npz`)."""
    path = Path(path)
    sealed = path.name.endswith(tuple(s + SUFFIX for s in SNAPSHOT_SUFFIXES))
    return path.with_name(path.name[: -len(SUFFIX)]) if sealed else path


def sealed_path(path: str | Path) -> Path:
    """Where the sealed form of the logical snapshot `path` lives."""
    path = logical_path(path)
    return path.with_name(path.name + SUFFIX)


def stored_snapshot(path: str | Path) -> Path | None:
    """The file actually on disk for the logical snapshot `path` (sealed preferred), or None when neither exists."""
    plain = logical_path(path)
    sealed = sealed_path(plain)
    if sealed.is_file():
        return sealed
    return plain if plain.is_file() else None


def snapshot_exists(path: str | Path) -> bool:
    return stored_snapshot(path) is not None


def _parquet_bytes(frame: pd.DataFrame, index: bool) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=index)
    return buffer.getvalue()


def _publish(path: Path, data: bytes, provider: KeyProvider | None) -> Path:
    """Write the sealed or plain form atomically, then remove the other form (never before: no window without
    a file, and a sealed write never leaves the old plaintext behind)."""
    plain, sealed = logical_path(path), sealed_path(path)
    if provider is not None:
        atomic_write_bytes(sealed, encrypt_bytes(data, provider, plain.name))
        target, other = sealed, plain
    else:
        atomic_write_bytes(plain, data)
        target, other = plain, sealed
    if other.is_file():
        other.unlink()
        fsync_dir(other.parent)
    return target


def write_snapshot(frame: pd.DataFrame, path: str | Path, index: bool = False) -> Path:
    """Publish `frame` as the snapshot `path` (a logical `.parquet` name); sealed when encryption at rest is on.
    Returns the file written. Refuses before writing when encryption is on without keys."""
    path = logical_path(path)
    if path.suffix != PARQUET_SUFFIX:
        raise SnapshotFileError(f"snapshot {path} must be named *{PARQUET_SUFFIX}")
    provider = at_rest_provider()  # KeyMaterialError (on, no keys) before any byte is written
    return _publish(path, _parquet_bytes(frame, index), provider)


def rewrite_snapshot(frame: pd.DataFrame, path: str | Path, index: bool = False) -> Path:
    """Replace an existing snapshot keeping it sealed if it was (erasure rewrites rows; it must not unseal a file
    because encryption was switched off since). A plain file is sealed when encryption at rest is on now."""
    path = logical_path(path)
    provider = at_rest_provider()
    if provider is None and sealed_path(path).is_file():
        provider = _reading_provider(sealed_path(path))
    return _publish(path, _parquet_bytes(frame, index), provider)


def _reading_provider(sealed: Path) -> KeyProvider:
    provider = encryption_provider()
    if provider is None:
        raise SnapshotFileError(f"{sealed} is encrypted at rest; set {ENCRYPTION_KEYS_ENV} (or _FILE) to read it")
    return provider


def snapshot_bytes(path: str | Path) -> bytes:
    """The plain Parquet bytes of the snapshot `path`, decrypted in memory when it is sealed."""
    stored = stored_snapshot(path)
    if stored is None:
        raise FileNotFoundError(errno.ENOENT, f"no snapshot {logical_path(path)} (nor {SUFFIX})", str(path))
    if stored.name.endswith(SUFFIX):
        return decrypt_file(stored, _reading_provider(stored))
    return stored.read_bytes()


def write_snapshot_arrays(arrays: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """`write_snapshot` for a sequence model's named arrays (`holdout_sequences.npz`, compressed, no pickle)."""
    path = logical_path(path)
    if path.suffix != ARRAYS_SUFFIX:
        raise SnapshotFileError(f"array snapshot {path} must be named *{ARRAYS_SUFFIX}")
    provider = at_rest_provider()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **dict(arrays))
    return _publish(path, buffer.getvalue(), provider)


def read_snapshot_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The named arrays of `holdout_sequences.npz` (sealed or plain, transparently); errors name the file."""
    stored = stored_snapshot(path)
    data = snapshot_bytes(path)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise SnapshotFileError(f"{stored} is not a readable .npz snapshot: {exc}") from None


def read_snapshot(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The snapshot `path` as a DataFrame (sealed or plain, transparently); errors name the file."""
    stored = stored_snapshot(path)
    data = snapshot_bytes(path)
    try:
        return pd.read_parquet(io.BytesIO(data), columns=list(columns) if columns is not None else None)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise SnapshotFileError(f"{stored} is not a readable Parquet snapshot: {exc}") from None


def iter_snapshots(directory: str | Path) -> Iterator[Path]:
    """The logical path of every snapshot under `directory`, plain or sealed, once each (sorted)."""
    found = {logical_path(p) for p in Path(directory).rglob("*") if _is_snapshot_file(p)}
    yield from sorted(found)


def _is_snapshot_file(path: Path) -> bool:
    name = path.name
    suffixes = SNAPSHOT_SUFFIXES + tuple(s + SUFFIX for s in SNAPSHOT_SUFFIXES)
    return not name.startswith(".") and name.endswith(suffixes) and path.is_file()


def seal_snapshots(directory: str | Path, provider: KeyProvider) -> list[Path]:
    """Seal every plain snapshot left under `directory` (written before encryption was on); the sealed paths.
    A plaintext next to a newer ciphertext of the same name (a crash between publishing the ciphertext and the
    unlink) is removed, not sealed again: no plain snapshot survives a rerun."""
    done = []
    for path in iter_snapshots(directory):
        sealed = sealed_path(path)
        if not path.is_file():
            continue
        if sealed.is_file() and sealed.stat().st_mtime_ns >= path.stat().st_mtime_ns:
            path.unlink()
            fsync_dir(path.parent)
        else:
            _publish(path, path.read_bytes(), provider)
        done.append(sealed)
    return done


def rotate_snapshots(directory: str | Path, provider: KeyProvider) -> int:
    """Re-encrypt every sealed snapshot under `directory` whose key is not the current one; how many changed."""
    return sum(rotate_file(sealed_path(p), provider) for p in iter_snapshots(directory) if sealed_path(p).is_file())
