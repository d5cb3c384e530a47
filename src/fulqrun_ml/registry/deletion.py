"""Delete a model version: admin only (when roles are on), never a version an alias serves, audited, all or nothing.

Why it exists: erasure and retention need a way to remove a version trained on data that must go; why it is
guarded: a deleted production version cannot be rolled back to. The version directory is first renamed to a
hidden `.tmp-` name (atomic: readers see the version or nothing) and then removed; a crash in between leaves a
temporary directory that the next publish sweeps up.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.audit import append_audit
from fulqrun_ml.registry.locking import fsync_dir, model_lock
from fulqrun_ml.registry.names import model_root
from fulqrun_ml.registry.roles import authorize
from fulqrun_ml.registry.store import TMP_PREFIX, get_version


def delete_version(models_dir: Path, name: str, version: int, actor: str | None = None, reason: str = "") -> dict:
    """Remove version `version` of `name`; returns the audit record."""
    root = model_root(models_dir, name)
    with model_lock(root):
        authorize(models_dir, name, "delete", actor)
        chosen = get_version(models_dir, name, int(version))
        state = read_alias_state(models_dir, name)
        held = [a for a, v in (("production", state.production), ("candidate", state.candidate)) if v == chosen.version]
        if held or chosen.version in state.production_history:
            where = held or ["the production history (a rollback target)"]
            raise RegistryError(f"model '{name}' v{chosen.version} is {', '.join(where)}; move the alias first")
        doomed = root / f"{TMP_PREFIX}deleted-{uuid.uuid4().hex}"
        chosen.path.rename(doomed)
        fsync_dir(root)
        shutil.rmtree(doomed, ignore_errors=True)
        return append_audit(root, "delete", actor, model=name, from_version=chosen.version, reason=reason)
