"""Model versions on disk: `models/<name>/<version>/`, each complete or absent.

Publishing writes everything into a hidden temporary directory next to the versions, fsyncs it, then
renames it into place (rename is atomic on one filesystem). A reader therefore never sees a half-written
version; a crash leaves only a `.tmp-*` directory, which listing ignores and the next publish sweeps up.
Versions are positive integers, which is also what Triton's model repository expects.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import RegistryError

METADATA_FILE = "metadata.json"
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    path: Path
    metadata: dict[str, Any]


def list_versions(models_dir: Path, name: str) -> list[int]:
    """Published versions of `name`, oldest first (temporary and foreign directories are ignored)."""
    root = Path(models_dir) / name
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / METADATA_FILE).is_file())


def get_version(models_dir: Path, name: str, version: int | str = "latest") -> ModelVersion:
    versions = list_versions(models_dir, name)
    if not versions:
        raise RegistryError(f"no published versions of model '{name}' under {models_dir}")
    chosen = versions[-1] if str(version) == "latest" else int(version)
    if chosen not in versions:
        raise RegistryError(f"model '{name}' has no version {version}; published: {versions}")
    path = Path(models_dir) / name / str(chosen)
    return ModelVersion(name, chosen, path, json.loads((path / METADATA_FILE).read_text()))


def publish_version(
    models_dir: Path, name: str, write_files: Callable[[Path], None], metadata: dict[str, Any]
) -> ModelVersion:
    """Write a new version atomically. `write_files(tmp_dir)` writes the artifacts; metadata goes last."""
    root = Path(models_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale_tmp(root)
    tmp = root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write_files(tmp)
        while True:
            version = (list_versions(models_dir, name) or [0])[-1] + 1
            record = {
                **metadata,
                "name": name,
                "version": version,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (tmp / METADATA_FILE).write_text(json.dumps(record, indent=2, default=str))
            _fsync_tree(tmp)
            try:
                os.rename(tmp, root / str(version))  # fails if another publisher took this number
                break
            except OSError:
                if not (root / str(version)).exists():
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ModelVersion(name, version, root / str(version), record)


def _fsync_tree(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())


def _sweep_stale_tmp(root: Path) -> None:
    """Remove temporary directories left by publishers that crashed more than an hour ago."""
    now = datetime.now(UTC).timestamp()
    for stale in root.glob(f"{TMP_PREFIX}*"):
        if now - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
