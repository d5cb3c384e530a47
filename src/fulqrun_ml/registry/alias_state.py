"""Where a model's aliases point: `models/<name>/aliases.json`, small, replaced atomically.

`candidate` and `production` each name one version (or none); `archived` is a set of versions retired
from use. `production_history` is the stack of versions production pointed to, newest last: promote
pushes, rollback pops, so repeated rollbacks walk back through earlier production versions instead of
toggling between two. This module only reads and writes the state; `aliases.py` changes it under a lock.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.names import model_root

ALIASES_FILE = "aliases.json"
POINTER_ALIASES = ("candidate", "production")
ALIASES = (*POINTER_ALIASES, "archived")


@dataclass(frozen=True)
class AliasState:
    candidate: int | None = None
    production: int | None = None
    archived: tuple[int, ...] = ()
    production_history: tuple[int, ...] = field(default=())

    def aliases_of(self, version: int) -> list[str]:
        """The aliases that currently include `version`, in ALIASES order."""
        found = [a for a in POINTER_ALIASES if getattr(self, a) == version]
        return [*found, "archived"] if version in self.archived else found

    def to_dict(self) -> dict:
        data = asdict(self)
        data["archived"] = sorted(self.archived)
        data["production_history"] = list(self.production_history)
        return data


def read_alias_state(models_dir: Path, name: str) -> AliasState:
    """The current aliases of `name` (all unset when nothing was ever promoted)."""
    path = model_root(models_dir, name) / ALIASES_FILE
    if not path.is_file():
        return AliasState()
    try:
        data = json.loads(path.read_text())
        return AliasState(
            candidate=data.get("candidate"),
            production=data.get("production"),
            archived=tuple(sorted(data.get("archived", []))),
            production_history=tuple(data.get("production_history", [])),
        )
    except (ValueError, TypeError, AttributeError) as exc:
        raise RegistryError(f"{path} is not a valid alias file ({exc}); restore it from audit.jsonl") from exc


def write_alias_state(models_dir: Path, name: str, state: AliasState) -> None:
    """Replace the alias file atomically (callers hold `locking.model_lock`)."""
    atomic_write_json(model_root(models_dir, name) / ALIASES_FILE, state.to_dict())


def resolve_alias(models_dir: Path, name: str, alias: str) -> int:
    """The version a pointer alias names, e.g. what Triton should serve for `production`."""
    if alias not in POINTER_ALIASES:
        raise RegistryError(f"'{alias}' is not a pointer alias; use one of {list(POINTER_ALIASES)}")
    version = getattr(read_alias_state(models_dir, name), alias)
    if version is None:
        raise RegistryError(f"model '{name}' has no '{alias}' version yet; run `fulqrun-ml models promote`")
    return int(version)
