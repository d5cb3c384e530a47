"""Concurrency and atomicity for the small mutable files next to a model's versions.

Versions themselves are immutable directories (see `store.py`); what changes is the alias file and the
audit log. Writers of those take an exclusive `fcntl` lock on `models/<name>/.lock`, so two `promote`
calls never interleave a read-modify-write, and files are replaced with `os.replace` of a fsynced
temporary file, so a reader (or Triton's control code) sees the old state or the new one, never half.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fulqrun_ml.crypto.atomic import atomic_write_bytes, fsync_dir  # noqa: F401  (re-exported: one copy)

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
