"""Roles that gate registry actions: researcher, approver, admin; every decision (allowed or denied) is audited.

Why here and why a file: the registry is a directory on a shared disk driven by the `fulqrun-ml models` CLI, so the
gate sits where every action passes (promote, rollback, archive, delete), not in a server. Roles come from a JSON
file `{"users": {"alice": "approver", "ci": "researcher"}}` named by `$FULQRUN_REGISTRY_ROLES_FILE` or found at
`<models_dir>/roles.json`; without either, roles are off (development registries). The file must not be writable
by group or others (whoever can edit it can grant themselves admin), as ssh refuses loose key permissions.

Identity is the actor the audit log records (`--actor`, else $USER); with roles on, an `--actor` other than the
login user is refused, so one user cannot act under another's name from the CLI.

What each role may do:
- researcher: promote to `candidate` (propose a version).
- approver: everything a researcher may, plus promote to `production`, archive, roll back.
- admin: everything, plus delete a version.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
from pathlib import Path

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.audit import append_audit, current_actor

ROLES_ENV = "FULQRUN_REGISTRY_ROLES_FILE"
ROLES_FILE = "roles.json"
ROLES = ("researcher", "approver", "admin")
# (action, alias) -> the least role allowed; alias None matches any alias of that action.
REQUIRED = {
    ("promote", "candidate"): "researcher",
    ("promote", "production"): "approver",
    ("archive", None): "approver",
    ("rollback", None): "approver",
    ("delete", None): "admin",
}


class AccessDeniedError(RegistryError):
    """The actor's role does not allow this registry action (the refusal is in the audit log)."""


def roles_path(models_dir: Path) -> Path | None:
    """The roles file in force, or None when roles are off."""
    configured = os.environ.get(ROLES_ENV, "").strip()
    if configured:
        return Path(configured)
    default = Path(models_dir) / ROLES_FILE
    return default if default.is_file() else None


def load_roles(path: Path) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
    except OSError:
        raise RegistryError(f"roles file {path} does not exist (${ROLES_ENV})") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RegistryError(f"roles file {path} is writable by group or others; chmod 644 (or 600) it")
    try:
        users = json.loads(path.read_text())["users"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
        raise RegistryError(f"roles file {path} must be JSON with 'users': {{user: role}}") from None
    bad = {u: r for u, r in users.items() if r not in ROLES} if isinstance(users, dict) else {"users": users}
    if bad:
        raise RegistryError(f"roles file {path}: unknown role(s) {bad}; roles are {list(ROLES)}")
    return {str(u): str(r) for u, r in users.items()}


def required_role(action: str, alias: str | None) -> str:
    return REQUIRED.get((action, alias)) or REQUIRED.get((action, None)) or "admin"


def authorize(models_dir: Path, name: str, action: str, actor: str | None, alias: str | None = None) -> str | None:
    """The actor's role when allowed (None when roles are off); AccessDeniedError otherwise, after auditing it."""
    path = roles_path(models_dir)
    if path is None:
        return None
    users = load_roles(path)
    who = current_actor(actor)
    needed = required_role(action, alias)
    role = users.get(who)
    reason = None
    login = _login()
    if actor and login and actor != login:
        reason = f"--actor '{actor}' is not the login user '{login}'"
    elif role is None:
        reason = f"'{who}' has no role in {path}"
    elif ROLES.index(role) < ROLES.index(needed):
        reason = f"'{who}' has role {role}; {action}{f' to {alias}' if alias else ''} needs {needed}"
    if reason is not None:
        append_audit(Path(models_dir) / name, "denied", who, model=name, attempted=action, alias=alias, reason=reason)
        raise AccessDeniedError(f"model '{name}': {reason}")
    return role


def _login() -> str | None:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (KeyError, OSError):
        return None
