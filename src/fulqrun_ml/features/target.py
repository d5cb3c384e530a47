"""How a regression target is presented to the network and turned back into the task's units.

Networks train best on a standardised target, and heavy-tailed durations (days to close) on their log, so
the datamodule fits a `TargetScaling` on the training split, the network learns the scaled value, and the
exported graph undoes the scaling (`prediction` in the task's own units, e.g. days). It lives in features/
because, like the FeatureSpec, it is fitted on training data and compiled into the serving graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fulqrun_ml.errors import FieldValidationError


@dataclass(frozen=True)
class TargetScaling:
    """y -> ((log1p(y) if log1p else y) - mean) / std, and back."""

    log1p: bool
    mean: float
    std: float

    @classmethod
    def fit(cls, values: np.ndarray, log1p: bool, name: str = "label") -> TargetScaling:
        y = np.asarray(values, dtype=np.float64)
        if y.size == 0 or not np.isfinite(y).all():
            raise FieldValidationError(name, "regression target must be a non-empty array of finite numbers")
        if log1p and (y < 0).any():
            raise FieldValidationError(name, "a log1p-scaled target must be >= 0")
        z = np.log1p(y) if log1p else y
        return cls(log1p=log1p, mean=float(z.mean()), std=float(z.std()) or 1.0)

    def encode(self, values: np.ndarray) -> np.ndarray:
        y = np.asarray(values, dtype=np.float64)
        z = np.log1p(y) if self.log1p else y
        return ((z - self.mean) / self.std).astype(np.float32)

    def decode(self, scaled: np.ndarray) -> np.ndarray:
        z = np.asarray(scaled, dtype=np.float32) * np.float32(self.std) + np.float32(self.mean)
        return np.expm1(z) if self.log1p else z

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> TargetScaling:
        return cls(**json.loads(Path(path).read_text()))
