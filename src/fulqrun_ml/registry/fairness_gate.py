"""The governance config (`configs/governance/default.yaml`) and the fairness gate of `models promote`.

Why the gate lives in the registry and reads only files: the registry sits below the evaluation layer, so it
cannot compute fairness itself. Training writes `fairness.json` (evaluation/fairness.py) and the exporter
copies its gap summary into the version's `metadata.json` under `fairness`; the gate compares those recorded
gaps with the configured maxima. A gate that recomputed would also judge a different model than the one
the card describes.

A version without fairness results (a regression model, or one published before fairness was recorded)
passes or is blocked by `gate.on_missing`. The evaluation settings (`fairness:`) are loaded here too, so
training, the gate and the compliance report read one validated config.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fulqrun_ml.errors import RegistryError
from fulqrun_ml.project import CONFIG_DIR

CONFIG_GROUP = "governance"
FAIRNESS_FILE = "fairness.json"  # a run's (and its published version's) full fairness report
GAP_METRICS = ("selection_rate", "tpr", "fpr", "calibration", "ece")
CONSTRAINTS = ("equalized_odds", "demographic_parity", "true_positive_rate_parity", "false_positive_rate_parity")
ON_MISSING = ("pass", "block")


class GovernanceConfigError(RegistryError):
    """A governance setting is unusable; the message names the field (e.g. `gate.max_gaps.tpr`)."""


class FairnessGateError(RegistryError):
    """A promotion the fairness gate refuses; `violations` say which group gap exceeds which maximum."""

    def __init__(self, message: str, violations: list[Violation]) -> None:
        super().__init__(message)
        self.violations = violations


@dataclass(frozen=True)
class FairnessSettings:
    attributes: tuple[str, ...] = ("region", "industry", "company_size", "rep_tenure")
    threshold: float = 0.5
    min_group_size: int = 30
    tenure_bands_days: tuple[float, ...] = (180.0, 365.0, 730.0)
    ece_bins: int = 10
    mitigation_constraint: str = "equalized_odds"
    mitigation_attribute: str = "auto"


@dataclass(frozen=True)
class GateSettings:
    enabled: bool = True
    aliases: tuple[str, ...] = ("production",)
    max_gaps: dict[str, float] = field(default_factory=lambda: {"tpr": 0.3, "fpr": 0.3, "calibration": 0.15})
    on_missing: str = "pass"


@dataclass(frozen=True)
class GovernanceConfig:
    fairness: FairnessSettings = FairnessSettings()
    gate: GateSettings = GateSettings()
    source: str = "built-in defaults"


@dataclass(frozen=True)
class Violation:
    """One gap over its maximum: `attribute`'s `metric` differs by `gap` between groups `high` and `low` (for
    `calibration`, `high` is the worst-calibrated group and `low` is None)."""

    attribute: str
    metric: str
    gap: float
    limit: float
    high: str | None = None
    low: str | None = None

    def describe(self) -> str:
        if self.gap != self.gap:  # NaN: nothing was recorded to compare
            return f"{self.attribute}: {self.metric}"
        groups = f" (group {self.high}" + (f" vs {self.low})" if self.low is not None else ")") if self.high else ""
        return f"{self.attribute}: {self.metric} gap {self.gap:.4f} > max {self.limit:.4f}{groups}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "metric": self.metric,
            "gap": self.gap,
            "limit": self.limit,
            "high": self.high,
            "low": self.low,
        }


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key) or {}
    if not isinstance(value, dict):
        raise GovernanceConfigError(f"governance config: `{key}` must be a mapping, got {type(value).__name__}")
    return value


def _number(value: Any, name: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GovernanceConfigError(f"governance config: `{name}` must be a number, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise GovernanceConfigError(f"governance config: `{name}` must be {bound}, got {value!r}")
    return float(value)


def parse_governance_config(data: dict[str, Any], source: str = "<mapping>") -> GovernanceConfig:
    """Validate a loaded mapping field by field; defaults fill what it leaves out."""
    if not isinstance(data, dict):
        raise GovernanceConfigError(f"governance config {source} must hold a mapping")
    fair, gate = _section(data, "fairness"), _section(data, "gate")
    mitigation = _section(fair, "mitigation")
    defaults = FairnessSettings()
    attributes = fair.get("attributes", list(defaults.attributes))
    if not isinstance(attributes, list) or not attributes or not all(isinstance(a, str) for a in attributes):
        raise GovernanceConfigError(
            f"governance config: `fairness.attributes` must be a list of names, got {attributes!r}"
        )
    bands = fair.get("tenure_bands_days", list(defaults.tenure_bands_days))
    if not isinstance(bands, list) or any(b <= a for a, b in itertools.pairwise(bands)):
        raise GovernanceConfigError(f"governance config: `fairness.tenure_bands_days` must increase, got {bands!r}")
    constraint = mitigation.get("constraint", defaults.mitigation_constraint)
    if constraint not in CONSTRAINTS:
        raise GovernanceConfigError(
            f"governance config: `fairness.mitigation.constraint` must be one of {list(CONSTRAINTS)}, "
            f"got {constraint!r}"
        )
    target = str(mitigation.get("attribute", "auto"))
    if target != "auto" and target not in attributes:
        raise GovernanceConfigError(
            f"governance config: `fairness.mitigation.attribute` {target!r} is not `auto` or one of {attributes}"
        )
    fairness = FairnessSettings(
        attributes=tuple(attributes),
        threshold=_number(fair.get("threshold", defaults.threshold), "fairness.threshold", 0.0, 1.0),
        min_group_size=int(_number(fair.get("min_group_size", defaults.min_group_size), "fairness.min_group_size", 1)),
        tenure_bands_days=tuple(_number(b, "fairness.tenure_bands_days", 0.0) for b in bands),
        ece_bins=int(_number(fair.get("ece_bins", defaults.ece_bins), "fairness.ece_bins", 2)),
        mitigation_constraint=constraint,
        mitigation_attribute=target,
    )
    max_gaps = gate.get("max_gaps", GateSettings().max_gaps)
    if not isinstance(max_gaps, dict):
        raise GovernanceConfigError("governance config: `gate.max_gaps` must be a mapping of metric -> maximum gap")
    for metric in max_gaps:
        if metric not in GAP_METRICS:
            raise GovernanceConfigError(
                f"governance config: `gate.max_gaps.{metric}` is not a gap metric; use {list(GAP_METRICS)}"
            )
    on_missing = gate.get("on_missing", "pass")
    if on_missing not in ON_MISSING:
        raise GovernanceConfigError(f"governance config: `gate.on_missing` must be one of {list(ON_MISSING)}")
    aliases = gate.get("aliases", ["production"])
    if not isinstance(aliases, list):
        raise GovernanceConfigError(f"governance config: `gate.aliases` must be a list, got {aliases!r}")
    settings = GateSettings(
        enabled=bool(gate.get("enabled", True)),
        aliases=tuple(str(a) for a in aliases),
        max_gaps={m: _number(v, f"gate.max_gaps.{m}", 0.0, 1.0) for m, v in max_gaps.items()},
        on_missing=on_missing,
    )
    return GovernanceConfig(fairness, settings, source)


def load_governance_config(name_or_path: str | Path | None = None) -> GovernanceConfig:
    """A YAML path, or the name of a file in configs/governance/ (default: `default`)."""
    path = Path(name_or_path) if name_or_path is not None else CONFIG_DIR / CONFIG_GROUP / "default.yaml"
    if not path.is_file():
        path = CONFIG_DIR / CONFIG_GROUP / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / CONFIG_GROUP).glob("*.yaml"))
        raise GovernanceConfigError(f"--governance-config: no governance config {name_or_path!r} (known: {known})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GovernanceConfigError(f"governance config {path} is not valid YAML: {exc}") from exc
    return parse_governance_config(data, str(path))


def check_fairness(metadata: dict[str, Any], gate: GateSettings) -> tuple[list[Violation], bool]:
    """The violations of a version's recorded gaps (metadata['fairness']['gaps']) and whether results exist.

    `gaps` is {attribute: {metric: {"gap": x, "high": group, "low": group} | x}}; a metric the version did
    not record (e.g. an attribute with one group large enough) cannot violate anything."""
    fairness = metadata.get("fairness") or {}
    gaps = fairness.get("gaps")
    if not isinstance(gaps, dict) or not gaps:
        return [], False
    found = []
    for attribute, metrics in sorted(gaps.items()):
        for metric, limit in gate.max_gaps.items():
            entry = (metrics or {}).get(metric)
            value = entry.get("gap") if isinstance(entry, dict) else entry
            if isinstance(value, int | float) and value > limit:
                high = entry.get("high") if isinstance(entry, dict) else None
                low = entry.get("low") if isinstance(entry, dict) else None
                found.append(Violation(attribute, metric, float(value), limit, high, low))
    return found, True


def gate_violations(metadata: dict[str, Any], alias: str, config: GovernanceConfig) -> list[Violation]:
    """What blocks promoting a version (its metadata) to `alias`: gap violations, or missing results where
    `on_missing: block`. Empty when the gate is off or does not cover the alias."""
    gate = config.gate
    if not gate.enabled or alias not in gate.aliases:
        return []
    violations, recorded = check_fairness(metadata, gate)
    if not recorded and gate.on_missing == "block":
        return [Violation("(all)", "fairness results missing", float("nan"), float("nan"))]
    return violations


def gate_message(name: str, version: int, alias: str, violations: list[Violation], source: str) -> str:
    lines = "; ".join(v.describe() for v in violations)
    return (
        f"fairness gate ({source}) blocks promoting {name} v{version} to {alias}: {lines}. "
        'Fix the model, or promote with --override-fairness --reason "..." (recorded in the audit log).'
    )
