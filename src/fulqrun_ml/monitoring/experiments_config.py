"""An A/B experiment's definition and its sticky assignment (`fulqrun-ml experiment assign`).

An experiment (configs/ab_test/*.yaml) names its variants (model versions or recommendation policies) with
split weights, a binary metric, the minimum detectable effect (absolute) and alpha. Validation names the
field at fault, so a typo in YAML is a one-line fix.

Assignment is sticky without storing anything: sha256(salt, experiment, entity id) gives a bucket in [0, 1)
and the cumulative split weights map the bucket to a variant. The same entity lands in the same arm in every
process, on every machine and after every restart, and two experiments split the population independently.
Kept apart from the analysis so the simulator (`experiments_sim`) can use it without an import cycle.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.project import CONFIG_DIR

CONFIG_GROUP = "ab_test"
DEFAULT_EXPERIMENT = "deal_win_next_step"
VARIANT_KINDS = ("model_version", "policy")


class ExperimentError(FieldValidationError):
    """An experiment config or outcomes file is invalid; `field` names the offending field or column."""


@dataclass(frozen=True)
class Variant:
    """One arm. `ref` says what the arm serves (a model version or alias such as `deal_win@candidate`, or a
    policy name); it is carried, not resolved, here: whoever serves the entity routes on the assigned
    variant, so assignment stays a pure function usable from any process."""

    name: str
    weight: float
    kind: str = "model_version"
    ref: str = ""


@dataclass(frozen=True)
class ExperimentConfig:
    """A validated experiment. `mixing_sd` (tau) defaults to the MDE: the mixture then puts its mass on
    effects of the size the experiment was designed to find, which is where the mSPRT is most powerful."""

    name: str
    variants: tuple[Variant, ...]
    minimum_detectable_effect: float
    alpha: float
    max_samples: int
    salt: str = ""
    unit: str = "entity_id"
    metric_name: str = "conversion"
    outcome_column: str = "outcome"
    power: float = 0.8
    min_samples_per_arm: int = 100
    mixing_sd: float | None = None
    simulation: dict[str, Any] = field(default_factory=dict)

    @property
    def tau(self) -> float:
        return float(self.mixing_sd if self.mixing_sd is not None else self.minimum_detectable_effect)

    @property
    def cumulative_weights(self) -> np.ndarray:
        weights = np.array([v.weight for v in self.variants], dtype=float)
        cumulative = np.cumsum(weights / weights.sum())
        cumulative[-1] = 1.0  # buckets are < 1, so rounding can never leave one unassigned
        return cumulative


def _number(raw: dict[str, Any], key: str, low: float, high: float, default: Any = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value < high:
        raise ExperimentError(key, f"must be a number in ({low:g}, {high:g}), got {value!r}")
    return float(value)


def experiment_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a parsed config; every error names the field, so a typo in YAML is a one-line fix."""
    if not isinstance(raw, dict):
        raise ExperimentError("<root>", f"an experiment config is a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ExperimentError("name", "a non-empty string is required (it salts the assignment hash)")
    raw_variants = raw.get("variants")
    if not isinstance(raw_variants, list) or len(raw_variants) < 2:
        raise ExperimentError("variants", "a list of at least two variants (control first) is required")
    variants = []
    for i, item in enumerate(raw_variants):
        where = f"variants[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ExperimentError(f"{where}.name", "each variant needs a non-empty name")
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise ExperimentError(f"{where}.weight", f"must be a positive number, got {weight!r}")
        kind = item.get("kind", "model_version")
        if kind not in VARIANT_KINDS:
            raise ExperimentError(f"{where}.kind", f"must be one of {VARIANT_KINDS}, got {kind!r}")
        variants.append(Variant(name=item["name"], weight=float(weight), kind=kind, ref=str(item.get("ref", ""))))
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ExperimentError("variants", f"variant names must be unique, got {names}")
    metric = raw.get("metric") or {}
    if metric.get("type", "binary") != "binary":
        raise ExperimentError("metric.type", f"only 'binary' metrics are supported, got {metric.get('type')!r}")
    max_samples = raw.get("max_samples")
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
        raise ExperimentError("max_samples", f"must be an integer >= 2, got {max_samples!r}")
    min_per_arm = raw.get("min_samples_per_arm", 100)
    if isinstance(min_per_arm, bool) or not isinstance(min_per_arm, int) or min_per_arm < 1:
        raise ExperimentError("min_samples_per_arm", f"must be a positive integer, got {min_per_arm!r}")
    mixing_sd = raw.get("mixing_sd")
    return ExperimentConfig(
        name=name,
        variants=tuple(variants),
        minimum_detectable_effect=_number(raw, "minimum_detectable_effect", 0.0, 1.0),
        alpha=_number(raw, "alpha", 0.0, 0.5),
        power=_number(raw, "power", 0.0, 1.0, default=0.8),
        max_samples=max_samples,
        salt=str(raw.get("salt", "")),
        unit=str(raw.get("unit", "entity_id")),
        metric_name=str(metric.get("name", "conversion")),
        outcome_column=str(metric.get("outcome_column", "outcome")),
        min_samples_per_arm=min_per_arm,
        mixing_sd=None if mixing_sd is None else _number(raw, "mixing_sd", 0.0, 1.0),
        simulation=dict(raw.get("simulation") or {}),
    )


def load_experiment(name_or_path: str | Path) -> ExperimentConfig:
    """A YAML path, or the name of a file in configs/ab_test/."""
    path = Path(name_or_path)
    if not path.exists():
        path = CONFIG_DIR / CONFIG_GROUP / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (CONFIG_DIR / CONFIG_GROUP).glob("*.yaml"))
        raise ExperimentError("config", f"no experiment file {name_or_path!r} (known: {known})")
    return experiment_from_dict(yaml.safe_load(path.read_text()))


def bucket(experiment: ExperimentConfig, entity_id: str) -> float:
    """Uniform in [0, 1): the first 8 bytes of sha256(salt, name, id). A cryptographic hash (not Python's
    `hash`, which is salted per process) makes it identical everywhere; the separator byte keeps
    ("ab", "c") and ("a", "bc") apart."""
    key = f"{experiment.salt}\x1f{experiment.name}\x1f{entity_id}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


def assign_indices(experiment: ExperimentConfig, entity_ids: list[str] | np.ndarray) -> np.ndarray:
    """Variant index (into `experiment.variants`) per entity; vectorised after the hashing."""
    buckets = np.fromiter((bucket(experiment, str(e)) for e in entity_ids), dtype=float, count=len(entity_ids))
    return np.searchsorted(experiment.cumulative_weights, buckets, side="right")


def assign(experiment: ExperimentConfig, entity_ids: list[str]) -> list[str]:
    """Variant name per entity id."""
    return [experiment.variants[i].name for i in assign_indices(experiment, entity_ids)]
