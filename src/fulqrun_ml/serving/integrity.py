"""Serve only what the registry signed: checks on the way into a Triton repository and before Triton starts.

Why two checks: the registry version can be altered before the repository is generated (caught by
`verify_registry_version` in `TritonRepositoryBuilder.add`), and the generated repository can be altered after
(caught by `verify_repository` right before tritonserver starts or a model is reloaded). The builder copies the
version's SIGNATURE.json into each Triton version directory as `registry_signature.json`, so the copies are
checked against the same MAC-protected digests. With no signing key configured ($FULQRUN_SIGNING_KEYS unset)
both checks are off, which keeps unsigned development registries serving; with one, unsigned is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fulqrun_ml.registry.signing import (
    TamperedVersionError,
    read_signature,
    signing_provider,
    verify_manifest,
    verify_version,
)
from fulqrun_ml.registry.store import ModelVersion

log = logging.getLogger(__name__)
REGISTRY_SIGNATURE = "registry_signature.json"


def verify_registry_version(version: ModelVersion) -> Path | None:
    """The version's verified SIGNATURE.json path, or None when signing is off; TamperedVersionError otherwise."""
    provider = signing_provider()
    if provider is None:
        return None
    verify_version(version.path, f"{version.name} v{version.version}", provider)
    return version.path / "SIGNATURE.json"


def verify_repository(repository: Path, models: list[str] | None = None) -> int:
    """Check every version directory of `models` (default: all) in a Triton repository against the registry
    signature copied into it; returns how many were checked (0 when signing is off)."""
    provider = signing_provider()
    if provider is None:
        return 0
    checked = 0
    names = models if models is not None else [p.name for p in Path(repository).iterdir() if p.is_dir()]
    for name in names:
        model_dir = Path(repository) / name
        if not (model_dir / "config.pbtxt").is_file():
            continue
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()):
            where = f"Triton repository model '{name}' version {version_dir.name}"
            signature = read_signature(version_dir / REGISTRY_SIGNATURE, provider, where)
            verify_manifest(version_dir, signature["files"], where, plain=signature.get("plain"))
            checked += 1
    log.info("verified %d signed version(s) in %s", checked, repository)
    return checked


__all__ = ["REGISTRY_SIGNATURE", "TamperedVersionError", "verify_registry_version", "verify_repository"]
