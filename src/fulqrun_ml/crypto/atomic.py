"""Atomic, durable replacement of one file: a reader sees the old bytes or the new ones, never half.

Why here: a sealed file (model or snapshot) is only safe if no reader can ever see a truncated ciphertext, and
no crash can leave a plaintext temporary behind under the final name. The registry's JSON/text writers
(registry/locking.py) reuse these two functions.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a temporary sibling, fsync, rename over `path`, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename (or an unlink) durable: the directory entry is only on disk once the directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
