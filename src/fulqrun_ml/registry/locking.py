"""Concurrency and atomicity for the small mutable files next to a model's versions.

Versions themselves are immutable directories (see `store.py`); what changes is the alias file and the
audit log. Writers of those take an exclusive `fcntl` lock on `models/<name>/.lock`, so two `promote`
calls never interleave a read-modify-write, and files are replaced with `os.replace` of a fsynced
temporary file, so a reader (or Triton's control code) sees the old state or the new one, never half.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_FILE = ".lock"


@contextmanager
def model_lock(root: Path) -> Iterator[None]:
    """Exclusive, process-wide lock on one model's mutable registry files (blocks until granted)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def atomic_write_json(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON (see `atomic_write_text`)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text`: write a temporary sibling, fsync, rename over, fsync the dir, so readers see
    the old file or the new one, never half of it."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """`atomic_write_text` for bytes (encrypted artifacts): temporary sibling, fsync, rename, fsync the dir."""
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
    """Make a rename durable: the directory entry is only on disk once the directory is synced."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
