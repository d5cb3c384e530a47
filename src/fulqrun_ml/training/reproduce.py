"""Rebuild a registered model's training config from its lineage, pointed at a new output directory.

Lineage stores the *resolved* config (so it cannot drift when defaults change); resolution also baked the
original run directory into checkpoint, logger and trainer paths. Those are re-rooted here, so a
reproduction never writes into the run it reproduces. `reproduce_version` (`fulqrun-ml reproduce`) retrains a
version that way and says whether data and holdout metrics came out the same.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.project import git_commit
from fulqrun_ml.registry.store import ModelVersion, get_version
from fulqrun_ml.training.train import build_pipeline, train


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


def same_metrics(new: Any, recorded: Any, rel: float = 1e-6) -> bool:
    """Every metric of the new run equals the recorded one to `rel` (the calibration fit's last bits may differ).

    Keys the recorded file has besides (export parity, added at publish time) are not the run's and are ignored."""
    if isinstance(new, dict):
        return isinstance(recorded, dict) and all(
            k in recorded and same_metrics(v, recorded[k], rel) for k, v in new.items()
        )
    if isinstance(new, int | float) and not isinstance(new, bool) and isinstance(recorded, int | float):
        return math.isclose(new, recorded, rel_tol=rel, abs_tol=1e-12) or (math.isnan(new) and math.isnan(recorded))
    return new == recorded


@dataclass(frozen=True)
class Reproduction:
    """What retraining a registered version from its lineage gave, next to what was recorded."""

    version: ModelVersion
    same_data: bool
    same_metrics: bool
    headline: str
    recorded_headline: str
    recorded_commit: str

    @property
    def identical(self) -> bool:
        return self.same_data and self.same_metrics

    def report(self) -> str:
        verdict = "identical" if self.identical else "DIFFERENT"
        lines = [
            f"{self.version.name} v{self.version.version}: data hash {'matches' if self.same_data else 'DIFFERS'}; "
            f"holdout {self.headline} vs recorded {self.recorded_headline}: {verdict}"
        ]
        if self.recorded_commit.removesuffix("-dirty") != git_commit().removesuffix("-dirty"):
            lines.append(f"note: recorded at commit {self.recorded_commit}, now at {git_commit()}")
        return "\n".join(lines)


def reproduce_version(models_dir: Path, name: str, version: int | str) -> Reproduction:
    """Retrain a registered version from its recorded config and data, into
    `<log_dir>/<name>/reproduced/v<version>_<time>`, and compare data hash and holdout metrics."""
    published = get_version(Path(models_dir), name, version)
    lineage = json.loads((published.path / "lineage.json").read_text())
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    log_dir = Path(lineage["config"]["paths"]["log_dir"])
    cfg = config_from_lineage(lineage, log_dir / published.name / "reproduced" / f"v{published.version}_{stamp}")
    result = train(cfg)
    published_metrics = json.loads((published.path / "metrics.json").read_text())
    # The run's own metrics, without what publishing added next to them (export parity).
    recorded = {k: published_metrics[k] for k in result["metrics"] if k in published_metrics}
    pipeline = build_pipeline(cfg)
    return Reproduction(
        version=published,
        same_data=result["data_hash"] == lineage["data_hash"],
        same_metrics=same_metrics(result["metrics"], recorded),
        headline=pipeline.headline(result["metrics"]),
        recorded_headline=pipeline.headline(recorded),
        recorded_commit=str(lineage.get("git_commit", "")),
    )
