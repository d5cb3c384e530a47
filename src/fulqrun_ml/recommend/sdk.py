"""`recommend(records, k)`: next best actions for deal-state records from a registered effect model, in process.

The registered version (`fulqrun-ml export` of a `task=nba_uplift` run) is one ONNX graph taking the raw state
columns (FeatureSpec preprocessing inside) to `uplift` / `uplift_sd` per arm, plus the propensity models as JSON
for the support mask. The served Triton path will run the same graph; until then onnxruntime runs it here. Bad
records get a FieldValidationError naming the field, never a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.recommend.actions import validate_records
from fulqrun_ml.recommend.effect_model import UPLIFT, UPLIFT_SD
from fulqrun_ml.recommend.learners import LinearModel, propensities, supported
from fulqrun_ml.recommend.ranking import rank_actions
from fulqrun_ml.registry.store import get_version

MODEL_NAME = "nba_uplift"


@dataclass
class EffectModel:
    """Anything that gives (uplift, sd) per arm for state rows, with the propensity models of its training data."""

    predict: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]]
    spec: FittedFeatureSpec
    propensity_models: dict[str, list[LinearModel]]
    source: str

    def recommend(self, states: pd.DataFrame, k: int = 5) -> pd.DataFrame:
        uplift, sd = self.predict(states)
        support = supported(propensities(self.spec, self.propensity_models, states))
        return rank_actions(states, uplift, sd, support, k)


def load_registered(models_dir: Path, name: str = MODEL_NAME, version: str = "latest") -> EffectModel:
    """A published effect model version, run by onnxruntime."""
    import onnxruntime as ort

    found = get_version(Path(models_dir), name, version)
    spec = FittedFeatureSpec.load(found.path / "feature_spec.json")
    raw = json.loads((found.path / "propensity.json").read_text())
    models = {c: [LinearModel(**m) for m in fold] for c, fold in raw.items()}
    session = ort.InferenceSession(str(found.path / "model.onnx"), providers=["CPUExecutionProvider"])

    def predict(states: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        uplift, sd = session.run([UPLIFT, UPLIFT_SD], raw_feeds(spec, states))
        return uplift.astype(np.float64), sd.astype(np.float64)

    return EffectModel(predict, spec, models, f"{name} v{found.version}")


def check_states(records: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Records -> a state frame; every field checked (types, ranges, an open stage)."""
    states = validate_records(records)
    bad = ~states["stage"].isin(OPEN_STAGES)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FieldValidationError(
            "stage", f"record {i}: {states['stage'].iloc[i]!r} is not an open stage {OPEN_STAGES}"
        )
    return states


def recommend(
    records: list[Mapping[str, Any]], k: int = 5, models_dir: str | Path = "models", version: str = "latest"
) -> list[dict[str, Any]]:
    """Top-k actions per record from the registered `nba_uplift` model: dicts with the action components,
    `uplift_win_probability` and its 95% interval, `uplift_expected_revenue` and a plain `reason`."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise FieldValidationError("k", f"expected a positive integer, got {k!r}")
    states = check_states(records)
    model = load_registered(Path(models_dir), MODEL_NAME, version)
    return model.recommend(states, k).to_dict(orient="records")
