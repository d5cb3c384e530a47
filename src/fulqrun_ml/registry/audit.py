"""The append-only audit log of a model's registry: `models/<name>/audit.jsonl`, one JSON object a line.

Who (the given actor, else $USER), what (publish, promote, rollback), when (UTC) and from/to versions.
The file is only ever opened in append mode and each record is written with one `write` followed by
fsync, so earlier lines are never rewritten: an auditor can trust that history is a prefix of today's
file. Callers hold `locking.model_lock` so records from concurrent writers never interleave.
"""

from __future__ import annotations

import getpass
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.names import model_root

AUDIT_FILE = "audit.jsonl"


def current_actor(actor: str | None = None) -> str:
    """The person (or service) responsible: an explicit actor wins, then $USER, then the login name."""
    if actor:
        return actor
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def append_audit(root: Path, action: str, actor: str | None = None, **details: Any) -> dict[str, Any]:
    """Append one record and return it. `details` holds the what: model, alias, from/to versions, ..."""
    record = {
        "at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "actor": current_actor(actor),
        "action": action,
        **details,
    }
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / AUDIT_FILE, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    return record


def read_audit(models_dir: Path, name: str) -> list[dict[str, Any]]:
    """Every audit record of `name`, oldest first (an empty list before the first change)."""
    path = model_root(models_dir, name) / AUDIT_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
