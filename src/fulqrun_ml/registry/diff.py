"""What changed between two versions of a model: metrics, training config and lineage.

Nested JSON is flattened to dotted keys (`model.auc`, `model.net.hidden_dims`) so a difference reads as
one line. Config keys under `paths` are skipped: output directories always differ and say nothing about
the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.model_card import read_json
from fulqrun_ml.registry.store import get_version

IGNORED_CONFIG_PREFIXES = ("paths.",)
LINEAGE_KEYS = ("data_hash", "git_commit", "wandb_run_id", "parent", "data_window", "sizes", "epochs", "run_dir")


@dataclass(frozen=True)
class Change:
    key: str
    a: Any
    b: Any

    @property
    def delta(self) -> float | None:
        """b - a for numbers (None otherwise), e.g. the AUC gained by the newer version."""
        numeric = (int, float)
        if isinstance(self.a, numeric) and isinstance(self.b, numeric) and not isinstance(self.a, bool):
            return float(self.b) - float(self.a)
        return None


@dataclass(frozen=True)
class VersionDiff:
    name: str
    a: int
    b: int
    metrics: list[Change] = field(default_factory=list)
    config: list[Change] = field(default_factory=list)
    lineage: list[Change] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.metrics or self.config or self.lineage)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values (a changed layer list is one change)."""
    if not isinstance(data, dict):
        return {prefix.rstrip("."): data} if prefix else {}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return flat


def _changes(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ()) -> list[Change]:
    keys = sorted(set(a) | set(b))
    return [Change(k, a.get(k), b.get(k)) for k in keys if not k.startswith(ignore) and a.get(k) != b.get(k)]


def diff(models_dir: Path, name: str, a: int | str, b: int | str) -> VersionDiff:
    """Differences from version `a` to version `b` (numbers, "latest" or aliases)."""
    va, vb = get_version(models_dir, name, a), get_version(models_dir, name, b)
    la, lb = read_json(va.path / "lineage.json"), read_json(vb.path / "lineage.json")
    return VersionDiff(
        name=name,
        a=va.version,
        b=vb.version,
        metrics=_changes(flatten(read_json(va.path / "metrics.json")), flatten(read_json(vb.path / "metrics.json"))),
        config=_changes(flatten(la.get("config") or {}), flatten(lb.get("config") or {}), IGNORED_CONFIG_PREFIXES),
        lineage=_changes(flatten({k: la.get(k) for k in LINEAGE_KEYS}), flatten({k: lb.get(k) for k in LINEAGE_KEYS})),
    )
