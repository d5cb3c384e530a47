"""Rebuild a registered model's training config from its lineage, pointed at a new output directory.

Lineage stores the *resolved* config (so it cannot drift when defaults change); resolution also baked the
original run directory into checkpoint, logger and trainer paths. Those are re-rooted here, so a
reproduction never writes into the run it reproduces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _reroot(node: Any, old: str, new: str) -> Any:
    if isinstance(node, dict):
        return {k: _reroot(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [_reroot(v, old, new) for v in node]
    if isinstance(node, str) and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old) :]
    return node


def config_from_lineage(lineage: dict[str, Any], output_dir: Path) -> DictConfig:
    old = str(lineage["config"]["paths"]["output_dir"])
    return OmegaConf.create(_reroot(lineage["config"], old, str(output_dir)))
