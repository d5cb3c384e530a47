"""Incremental training: `init_from=<model>@<version>` warm-starts the backbone from a registry version.

The version must carry the backbone weights (`net_state.pt`) and its constructor config
(`net_config.json`); `export/package.py` stores both since warm start exists.

Compatibility (decided here, documented in the error): this run fits its own FeatureSpec on the newer
window, and the warm start is allowed only when the feature list (names, order, kind, log1p) **and every
categorical vocabulary** are identical to the parent's. Then every embedding row and every input column
means the same thing in both models, so copying weights is sound. Only the standardisation statistics
(means/stds) are refitted; the resulting small input shift is what the few fine-tuning epochs absorb.
Anything else (a new category, a dropped feature, a different backbone shape) is refused with an error
naming the field, rather than silently mapping categories to the wrong embedding rows: train from
scratch (`init_from=null`) in that case.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.store import ModelVersion, get_version

log = logging.getLogger(__name__)
NET_STATE_FILE = "net_state.pt"
NET_CONFIG_FILE = "net_config.json"
FEATURE_SPEC_FILE = "feature_spec.json"


class WarmStartError(FulqrunMLError):
    """`init_from` names no usable version, or one whose features or backbone differ from this run's."""


@dataclass(frozen=True)
class ParentModel:
    version: ModelVersion
    net_state: dict[str, torch.Tensor]
    net_config: dict[str, Any]
    spec: FittedFeatureSpec | None  # None for models without one (forecasters)

    @property
    def lineage(self) -> dict[str, Any]:
        """What the child's lineage records about its parent."""
        return {
            "name": self.version.name,
            "version": self.version.version,
            "data_hash": self.version.metadata.get("data_hash"),
        }


def parse_init_from(value: str) -> tuple[str, str]:
    """ "deal_win@3" -> ("deal_win", "3"); the version may also be "latest" or an alias ("production")."""
    name, sep, version = str(value).partition("@")
    if not sep or not name or not version:
        raise WarmStartError(f"init_from='{value}': expected <model>@<version>, e.g. deal_win@3 or deal_win@production")
    return name, version


def load_parent(models_dir: Path, init_from: str) -> ParentModel:
    name, version = parse_init_from(init_from)
    try:
        chosen = get_version(models_dir, name, version)
    except FulqrunMLError as exc:
        raise WarmStartError(f"init_from={init_from}: {exc}") from exc
    missing = [f for f in (NET_STATE_FILE, NET_CONFIG_FILE) if not (chosen.path / f).is_file()]
    if missing:
        raise WarmStartError(
            f"init_from={init_from}: version {chosen.version} has no {', '.join(missing)} (published before warm "
            "start was supported); re-export its training run with `fulqrun-ml export` and warm-start from that"
        )
    return ParentModel(
        version=chosen,
        net_state=torch.load(chosen.path / NET_STATE_FILE, weights_only=True),
        net_config=json.loads((chosen.path / NET_CONFIG_FILE).read_text()),
        spec=FittedFeatureSpec.load(spec_path) if (spec_path := chosen.path / FEATURE_SPEC_FILE).is_file() else None,
    )


def check_feature_compatibility(parent: FittedFeatureSpec | None, child: FittedFeatureSpec, init_from: str) -> None:
    """Refuse unless features and vocabularies are identical (see the module docstring for why)."""
    if parent is None:
        raise WarmStartError(f"init_from={init_from}: the parent has no feature spec, this run has one")
    problems = []
    parent_numeric = [(f.name, f.log1p) for f in parent.spec.numeric]
    child_numeric = [(f.name, f.log1p) for f in child.spec.numeric]
    if parent_numeric != child_numeric:
        problems.append(f"numeric features differ: parent {parent_numeric}, this run {child_numeric}")
    parent_cat = [f.name for f in parent.spec.categorical]
    child_cat = [f.name for f in child.spec.categorical]
    if parent_cat != child_cat:
        problems.append(f"categorical features differ: parent {parent_cat}, this run {child_cat}")
    else:
        for field in child_cat:
            old, new = set(parent.vocabularies[field]), set(child.vocabularies[field])
            if old != new:
                problems.append(
                    f"field '{field}': vocabulary differs (new in this window: {sorted(new - old)}, "
                    f"missing from it: {sorted(old - new)})"
                )
    if problems:
        raise WarmStartError(
            f"init_from={init_from} is incompatible with this run's features: "
            + "; ".join(problems)
            + ". Warm start needs identical feature lists and vocabularies; train from scratch with init_from=null"
        )


def warm_start(net: nn.Module, parent: ParentModel, net_config: dict[str, Any], init_from: str) -> None:
    """Copy the parent's backbone weights into `net` (built from this run's config)."""
    differing = sorted(
        k for k in set(parent.net_config) | set(net_config) if parent.net_config.get(k) != net_config.get(k)
    )
    try:
        net.load_state_dict(parent.net_state, strict=True)
    except RuntimeError as exc:
        detail = ", ".join(f"{k}: parent {parent.net_config.get(k)!r} vs {net_config.get(k)!r}" for k in differing)
        raise WarmStartError(
            f"init_from={init_from}: the backbone does not match this run's model.net ({detail or 'same config'}); "
            f"use the parent's model settings. Torch said: {str(exc).splitlines()[0]}"
        ) from exc
    if differing:
        log.warning("warm start from %s with model.net differing in %s (weights still fit)", init_from, differing)
    log.info("warm-started the backbone from %s v%d", parent.version.name, parent.version.version)
