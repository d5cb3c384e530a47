"""Model versions on disk: `models/<name>/<version>/`, each complete or absent.

Publishing writes everything into a hidden temporary directory next to the versions, fsyncs it, then
renames it into place (rename is atomic on one filesystem). A reader therefore never sees a half-written
version; a crash leaves only a `.tmp-*` directory, which listing ignores and the next publish sweeps up.
Versions are positive integers, which is also what Triton's model repository expects.

Each publish also writes MODEL_CARD.md into the version (generated from its metadata, metrics and
lineage, before the rename, so the card is part of the atomic version) and appends a `publish` record
to the model's audit log. `get_version` accepts an integer, "latest" or an alias ("production",
"candidate"; see `aliases.py`).

When signing keys are configured ($FULQRUN_SIGNING_KEYS or a key file, see signing.py), the version is signed
inside the temporary directory, after the card and before the rename: a version is never visible unsigned, and
serving (which requires signatures whenever keys are configured) accepts every version this function publishes.
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
from fulqrun_ml.registry.alias_state import POINTER_ALIASES, resolve_alias
from fulqrun_ml.registry.audit import append_audit
from fulqrun_ml.registry.encryption_at_rest import at_rest_provider, seal_model_files
from fulqrun_ml.registry.locking import fsync_dir, model_lock
from fulqrun_ml.registry.model_card import write_model_card
from fulqrun_ml.registry.names import model_root
from fulqrun_ml.registry.signing import sign_version, signing_provider

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
    root = model_root(models_dir, name)
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / METADATA_FILE).is_file())


def get_version(models_dir: Path, name: str, version: int | str = "latest") -> ModelVersion:
    """One version by number, "latest", or alias ("production", "candidate")."""
    versions = list_versions(models_dir, name)
    if not versions:
        raise RegistryError(f"no published versions of model '{name}' under {models_dir}")
    if str(version) == "latest":
        chosen = versions[-1]
    elif str(version) in POINTER_ALIASES:
        chosen = resolve_alias(models_dir, name, str(version))
    else:
        try:
            chosen = int(version)
        except ValueError:
            raise RegistryError(
                f"version '{version}' of model '{name}' is not a number, 'latest' or one of {list(POINTER_ALIASES)}"
            ) from None
    if chosen not in versions:
        raise RegistryError(f"model '{name}' has no version {version}; published: {versions}")
    path = Path(models_dir) / name / str(chosen)
    return ModelVersion(name, chosen, path, json.loads((path / METADATA_FILE).read_text()))


def publish_version(
    models_dir: Path,
    name: str,
    write_files: Callable[[Path], None],
    metadata: dict[str, Any],
    actor: str | None = None,
) -> ModelVersion:
    """Write a new version atomically. `write_files(tmp_dir)` writes the artifacts; metadata and the
    model card go last. `actor` (default $USER) is recorded in the audit log."""
    root = model_root(models_dir, name)
    signer = signing_provider()  # read once, before any file is written: bad key material fails early
    sealer = at_rest_provider()  # $FULQRUN_ENCRYPT_AT_REST: model files sealed before signing (encryption_at_rest.py)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale_tmp(root)
    tmp = root / f"{TMP_PREFIX}{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write_files(tmp)
        if sealer is not None:
            seal_model_files(tmp, sealer)
        version = 0
        while True:
            # Next free number; also past a foreign non-empty directory that once blocked the rename.
            version = max(version, (list_versions(models_dir, name) or [0])[-1]) + 1
            record = {
                **metadata,
                "name": name,
                "version": version,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (tmp / METADATA_FILE).write_text(json.dumps(record, indent=2, default=str))
            write_model_card(tmp)
            if signer is not None:
                sign_version(tmp, f"{name} v{version}", signer)  # the subject binds the number being claimed
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
    fsync_dir(root)
    with model_lock(root):
        append_audit(
            root,
            "publish",
            actor,
            model=name,
            to_version=version,
            data_hash=record.get("data_hash"),
            signed_with=None if signer is None else signer.current()[0],
            **({} if sealer is None else {"encrypted_with": sealer.current()[0]}),
        )
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
