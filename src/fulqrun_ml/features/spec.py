"""FeatureSpec: the one declaration of a model's inputs, fitted once, compiled twice.

A spec lists numeric and categorical features. Fitting it on the training split yields the encoders
(standardisation statistics, vocabularies) that are saved with the model version. The fitted spec
then builds training tensors (`encode`, here) and the serving preprocessing graph (`onnx_graph.py`);
a parity test keeps the two equal.

Batch convention (shared with models and tasks): `continuous` float32 [N, n_numeric],
`categorical` int64 [N, n_categorical] where index 0 means "unknown category", `target` float32 [N].
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.errors import FieldValidationError

UNKNOWN_INDEX = 0


@dataclass(frozen=True)
class NumericFeature:
    """A float input. `log1p` compresses heavy tails (money, counts); it requires values >= 0.

    `impute_missing` lets the column hold NaN (user tables have gaps; CRM features never do): the fitted
    spec replaces NaN with the training median, in `encode` and in the serving graph alike."""

    name: str
    description: str
    log1p: bool = False
    impute_missing: bool = False


@dataclass(frozen=True)
class CategoricalFeature:
    """A string input, embedded by the model; unseen values map to the shared unknown index 0."""

    name: str
    description: str


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[NumericFeature, ...]
    categorical: tuple[CategoricalFeature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.numeric] + [f.name for f in self.categorical]

    def fit(self, frame: pd.DataFrame) -> FittedFeatureSpec:
        """Learn encoders from the training split only (never from validation or test rows)."""
        validate_frame(self, frame)
        means: dict[str, float] = {}
        stds: dict[str, float] = {}
        fill_values: dict[str, float] = {}
        for feat in self.numeric:
            values = frame[feat.name].to_numpy(dtype=np.float64)
            if feat.impute_missing:
                present = values[~np.isnan(values)]
                if present.size == 0:
                    raise FieldValidationError(feat.name, "has no values in the training split")
                fill_values[feat.name] = float(np.median(present))
                values = np.where(np.isnan(values), fill_values[feat.name], values)
            values = _transform(feat, values)
            means[feat.name] = float(values.mean())
            stds[feat.name] = float(values.std()) or 1.0
        vocabularies = {
            feat.name: sorted(str(v) for v in frame[feat.name].astype(str).unique()) for feat in self.categorical
        }
        modes = {feat.name: str(frame[feat.name].astype(str).mode().iloc[0]) for feat in self.categorical}
        return FittedFeatureSpec(
            spec=self, means=means, stds=stds, vocabularies=vocabularies, modes=modes, fill_values=fill_values
        )


@dataclass(frozen=True)
class FittedFeatureSpec:
    spec: FeatureSpec
    means: dict[str, float]
    stds: dict[str, float]
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # most frequent training category per column
    fill_values: dict[str, float] = field(default_factory=dict)  # NaN replacement of impute_missing columns

    def raw_baseline(self) -> dict[str, float | str]:
        """A "typical deal" in raw units: each numeric at its training mean (in the model's transformed
        space, so it encodes to exactly 0), each categorical at its most frequent value. Reasons are
        measured against it: how much does this record's value of a field move the probability?"""
        baseline: dict[str, float | str] = {}
        for feat in self.spec.numeric:
            mean = self.means[feat.name]
            baseline[feat.name] = float(np.expm1(mean)) if feat.log1p else mean
        baseline.update(self.modes)
        return baseline

    @property
    def cardinalities(self) -> list[int]:
        """Embedding table sizes: the vocabulary plus the unknown index."""
        return [len(self.vocabularies[f.name]) + 1 for f in self.spec.categorical]

    def encode(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Raw feature columns -> the model's batch arrays (float32 continuous, int64 categorical)."""
        validate_frame(self.spec, frame)
        continuous = np.empty((len(frame), len(self.spec.numeric)), dtype=np.float32)
        for j, feat in enumerate(self.spec.numeric):
            # float32 throughout, exactly like the ONNX graph, so parity is limited only by op order.
            values = frame[feat.name].to_numpy(dtype=np.float32)
            if feat.name in self.fill_values:
                values = np.where(np.isnan(values), np.float32(self.fill_values[feat.name]), values)
            values = _transform(feat, values)
            continuous[:, j] = (values - np.float32(self.means[feat.name])) / np.float32(self.stds[feat.name])
        categorical = np.empty((len(frame), len(self.spec.categorical)), dtype=np.int64)
        for j, feat in enumerate(self.spec.categorical):
            index = {v: i + 1 for i, v in enumerate(self.vocabularies[feat.name])}
            categorical[:, j] = [index.get(str(v), UNKNOWN_INDEX) for v in frame[feat.name]]
        return {"continuous": continuous, "categorical": categorical}

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": [asdict(f) for f in self.spec.numeric],
            "categorical": [asdict(f) for f in self.spec.categorical],
            "means": self.means,
            "stds": self.stds,
            "vocabularies": self.vocabularies,
            "modes": self.modes,
            "fill_values": self.fill_values,
            "raw_baseline": self.raw_baseline(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FittedFeatureSpec:
        spec = FeatureSpec(
            numeric=tuple(NumericFeature(**f) for f in data["numeric"]),
            categorical=tuple(CategoricalFeature(**f) for f in data["categorical"]),
        )
        return cls(
            spec=spec,
            means=data["means"],
            stds=data["stds"],
            vocabularies=data["vocabularies"],
            modes=data.get("modes", {}),
            fill_values=data.get("fill_values", {}),
        )

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: Path) -> FittedFeatureSpec:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _transform(feat: NumericFeature, values: np.ndarray) -> np.ndarray:
    return np.log1p(values) if feat.log1p else values


def validate_frame(spec: FeatureSpec, frame: pd.DataFrame) -> None:
    """Reject what the model cannot score, naming the field: missing columns, non-numbers, NaN/inf,
    negative values under log1p, missing categories. Extra columns are allowed here (snapshots carry
    ids and labels); the serving boundary rejects them."""
    for feat in spec.numeric:
        if feat.name not in frame.columns:
            raise FieldValidationError(feat.name, "missing column")
        column = frame[feat.name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            raise FieldValidationError(feat.name, f"expected numbers, got dtype {column.dtype}")
        values = column.to_numpy(dtype=np.float64)
        if feat.impute_missing:
            values = values[~np.isnan(values)]
        if not np.isfinite(values).all():
            raise FieldValidationError(feat.name, "contains NaN or infinite values")
        if feat.log1p and (values < 0).any():
            raise FieldValidationError(feat.name, "must be >= 0")
    for cat in spec.categorical:
        if cat.name not in frame.columns:
            raise FieldValidationError(cat.name, "missing column")
        if frame[cat.name].isna().any():
            raise FieldValidationError(cat.name, "contains missing values")
