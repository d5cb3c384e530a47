"""Live model answers for the dashboard: what-if scoring and reasons, through the project's Triton SDK.

Why through Triton and not onnxruntime in-process: the scenario planner must show what production would
answer, with its validation (a bad field gets the server's error naming it, shown to the user as text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.serving.client import TritonPredictionClient

# Fields a user may change in the planner (actions and facts a rep controls); the rest stay as recorded.
EDITABLE_NUMERIC = (
    "value",
    "activities_total",
    "activities_last_14d",
    "meetings_total",
    "calls_total",
    "emails_total",
    "days_since_last_activity",
    "days_in_stage",
)
EDITABLE_CATEGORICAL = ("stage",)
STAGE_CHOICES = ("prospecting", "qualifying", "proposal", "negotiation")


@dataclass
class ScenarioResult:
    probability: float
    baseline: float
    value: float
    reasons: dict[str, list[dict[str, Any]]] | None

    @property
    def expected_revenue(self) -> float:
        return self.probability * self.value


def base_record(features: pd.DataFrame | None, opportunity_id: str, names: list[str]) -> dict[str, Any]:
    if features is None:
        raise FulqrunMLError("no open-deal features: train and export a deal-win model (fulqrun-ml run)")
    rows = features[features["opportunity_id"].astype(str) == str(opportunity_id)]
    if rows.empty:
        raise FulqrunMLError(f"opportunity_id {opportunity_id!r}: not an open deal the model scored")
    return {name: rows.iloc[0][name] for name in names}


def apply_changes(record: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The record with the user's edits; a number that does not parse is refused naming its field."""
    out = dict(record)
    for name, raw in changes.items():
        if raw is None or raw == "":
            continue
        if name in EDITABLE_NUMERIC:
            try:
                out[name] = float(raw)
            except (TypeError, ValueError):
                raise FulqrunMLError(f"field '{name}': expected a number, got {raw!r}") from None
        elif name in EDITABLE_CATEGORICAL:
            out[name] = str(raw)
        else:
            raise FulqrunMLError(f"field '{name}' cannot be changed in the planner")
    return out


def score(url: str, model: str, baseline: dict[str, Any], changed: dict[str, Any]) -> ScenarioResult:
    """Both records through Triton in one request; reasons from `<model>_reasons` when it is served."""
    with TritonPredictionClient(url, model) as client:
        p = client.predict([baseline, changed])
    reasons = None
    try:
        with TritonPredictionClient(url, f"{model}_reasons") as explainer:
            reasons = explainer.predict_detailed([changed])[0].reasons
    except Exception:  # the reasons endpoint is optional (served by `fulqrun-ml serve`, not every repository)
        reasons = None
    return ScenarioResult(float(p[1]), float(p[0]), float(changed["value"]), reasons)


def reasons_for(url: str, model: str, records: list[dict[str, Any]]) -> list[dict[str, list[dict[str, Any]]] | None]:
    with TritonPredictionClient(url, f"{model}_reasons") as explainer:
        return [p.reasons for p in explainer.predict_detailed(records)]
