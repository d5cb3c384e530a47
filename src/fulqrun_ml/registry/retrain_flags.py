"""Retraining flags: versions trained on data that has since been erased (a right-to-erasure request).

Why a flag and not a deletion: the version keeps serving until a retrained one replaces it (deleting a production
model because one contact asked to be forgotten would take the product down), but everyone who lists the models
must see that it learned from data that no longer exists. `models/<name>/retrain_flags.json` maps a version to
its flags (when, why, the hashed erasure reference; never the subject's id); each flag is appended to the
model's audit log (`flag_retrain`, who and when). Written under the model's lock, atomically.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.audit import append_audit, current_actor
from fulqrun_ml.registry.locking import atomic_write_json, model_lock

FLAGS_FILE = "retrain_flags.json"


def model_root(models_dir: Path, name: str) -> Path:
    return Path(models_dir) / name


def retrain_flags(models_dir: Path, name: str) -> dict[int, list[dict[str, Any]]]:
    """{version: [flag, ...]} of one model (empty when none)."""
    path = model_root(models_dir, name) / FLAGS_FILE
    if not path.is_file():
        return {}
    return {int(k): v for k, v in json.loads(path.read_text(encoding="utf-8")).items()}


def flag_for_retraining(
    models_dir: Path, name: str, version: int, reason: str, reference: str, actor: str | None = None
) -> bool:
    """Flag one version (idempotent per `reference`: a rerun of the same erasure adds nothing); True if added."""
    root = model_root(models_dir, name)
    with model_lock(root):
        flags = retrain_flags(models_dir, name)
        if any(f.get("reference") == reference for f in flags.get(version, [])):
            return False
        flag = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": current_actor(actor),
            "reason": reason,
            "reference": reference,
        }
        flags.setdefault(version, []).append(flag)
        atomic_write_json(root / FLAGS_FILE, {str(k): v for k, v in sorted(flags.items())})
        append_audit(root, "flag_retrain", actor, model=name, to_version=version, reason=reason, reference=reference)
    return True
