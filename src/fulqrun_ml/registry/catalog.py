"""Read-only views of the registry for people: which models exist, their versions, one version in full.

These return plain data (dataclasses and dicts); `commands.py` turns them into tables, and the serving
layer can use them without any printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.audit import read_audit
from fulqrun_ml.registry.model_card import MODEL_CARD_FILE, read_json
from fulqrun_ml.registry.retrain_flags import retrain_flags
from fulqrun_ml.registry.store import ModelVersion, get_version, list_versions


@dataclass(frozen=True)
class VersionSummary:
    name: str
    version: int
    aliases: list[str]
    published_at: str | None
    holdout_auc: float | None
    rep_auc: float | None
    ece: float | None
    data_hash: str | None
    parent: str | None
    retrain: str | None = None  # why the version must be retrained (registry/retrain_flags.py), else None


def list_models(models_dir: Path) -> list[str]:
    """Model names with at least one published version (Triton repositories and strays are skipped)."""
    root = Path(models_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and list_versions(root, p.name))


def list_model_versions(models_dir: Path, name: str) -> list[VersionSummary]:
    """Every version of `name`, oldest first, with its aliases and headline numbers."""
    state = read_alias_state(models_dir, name)
    flags = retrain_flags(models_dir, name)
    rows = []
    for number in list_versions(models_dir, name):
        version = get_version(models_dir, name, number)
        metrics = read_json(version.path / "metrics.json")
        lineage = read_json(version.path / "lineage.json")
        parent = lineage.get("parent") or {}
        rows.append(
            VersionSummary(
                name=name,
                version=number,
                aliases=state.aliases_of(number),
                published_at=version.metadata.get("published_at"),
                holdout_auc=(metrics.get("model") or {}).get("auc", version.metadata.get("holdout_auc")),
                rep_auc=(metrics.get("rep") or {}).get("auc"),
                ece=(metrics.get("model") or {}).get("ece"),
                data_hash=version.metadata.get("data_hash") or lineage.get("data_hash"),
                parent=f"{parent.get('name')}@{parent.get('version')}" if parent else None,
                retrain="; ".join(f"{f['reason']} ({f['at']})" for f in flags.get(number, [])) or None,
            )
        )
    return rows


def show_version(models_dir: Path, name: str, version: int | str = "latest") -> dict[str, Any]:
    """Everything recorded about one version: metadata, metrics, lineage, aliases, card, audit trail."""
    chosen = get_version(models_dir, name, version)
    card = chosen.path / MODEL_CARD_FILE
    return {
        "name": name,
        "version": chosen.version,
        "path": str(chosen.path),
        "aliases": read_alias_state(models_dir, name).aliases_of(chosen.version),
        "metadata": chosen.metadata,
        "metrics": read_json(chosen.path / "metrics.json"),
        "lineage": read_json(chosen.path / "lineage.json"),
        "model_card": card.read_text(encoding="utf-8") if card.is_file() else None,
        "audit": [
            r for r in read_audit(models_dir, name) if chosen.version in (r.get("to_version"), r.get("from_version"))
        ],
    }


def serving_version(models_dir: Path, name: str) -> ModelVersion:
    """What a server should load: the production version once one is promoted, else the newest version
    (so a fresh registry still serves, as before aliases existed)."""
    production = read_alias_state(models_dir, name).production
    return get_version(models_dir, name, production if production is not None else "latest")
