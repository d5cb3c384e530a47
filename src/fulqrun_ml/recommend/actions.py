"""The action space and the state features of next best action, and the rule that keeps recommendations actionable.

Why a separate module: what a recommendation may change is a product decision that every learner, the ranking,
the SDK and the CLI must obey in the same way. Only the four action components (type x channel, gap, slot,
content) can be recommended; a deal's industry, size, stage or value are facts the rep cannot change, so they
are state features, never treatment. `check_actionable` enforces it wherever a recommendation is built.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator_actions import COMPONENTS, STATE_COLUMNS
from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, NumericFeature

ACTION_FIELDS = tuple(COMPONENTS)  # the only fields a recommendation may set
CATEGORICAL_STATE = ("stage", "industry", "size")
NUMERIC_STATE = tuple(c for c in STATE_COLUMNS if c not in CATEGORICAL_STATE)
_LOG = {"value", "age_days", "days_in_stage", "days_since_last_touch", "touches_30d", "meetings_30d"}

STATE_SPEC = FeatureSpec(
    numeric=tuple(NumericFeature(name, f"deal state at as_of: {name}", log1p=name in _LOG) for name in NUMERIC_STATE),
    categorical=tuple(CategoricalFeature(name, f"deal state at as_of: {name}") for name in CATEGORICAL_STATE),
)


class ActionabilityError(FulqrunMLError):
    """A recommendation tried to change something that is not an action (industry, size, stage, ...)."""


def check_actionable(changes: Iterable[str]) -> None:
    """Refuse, by name, any change to a field that is not one of the action components."""
    bad = sorted(set(changes) - set(ACTION_FIELDS))
    if bad:
        raise ActionabilityError(
            f"fields {bad} are facts about the deal, not actions; a recommendation may set only {list(ACTION_FIELDS)}"
        )


def effect_outputs() -> list[tuple[str, str]]:
    """(component, arm) of every non-reference arm: the effect model's outputs, in order."""
    return [(c, arm) for c, arms in COMPONENTS.items() for arm in arms[1:]]


def all_actions() -> np.ndarray:
    """Every combination of component arms, [A, 4] (COMPONENTS order)."""
    return np.array(list(itertools.product(*(range(len(a)) for a in COMPONENTS.values()))), dtype=int)


def action_frame(actions: np.ndarray) -> pd.DataFrame:
    """Arm indices -> the arm names, one column per component."""
    return pd.DataFrame(
        {c: np.asarray(arms, dtype=object)[actions[:, j]] for j, (c, arms) in enumerate(COMPONENTS.items())}
    )


def validate_records(records: list[Mapping[str, object]]) -> pd.DataFrame:
    """Deal-state records -> a typed frame; a missing, non-numeric, non-finite or negative field is an error naming
    it (and the record's position)."""
    if not isinstance(records, list) or not records:
        raise FieldValidationError("records", "expected a non-empty list of deal records")
    rows = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise FieldValidationError(f"records[{i}]", "expected a mapping of field -> value")
        row: dict[str, object] = {"opportunity_id": str(record.get("opportunity_id", i))}
        for name in CATEGORICAL_STATE:
            value = record.get(name)
            if not isinstance(value, str) or not value:
                raise FieldValidationError(name, f"record {i}: expected a non-empty string, got {value!r}")
            row[name] = value
        for name in NUMERIC_STATE:
            value = record.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise FieldValidationError(name, f"record {i}: expected a finite number >= 0, got {value!r}")
            row[name] = float(value)
        rows.append(row)
    return pd.DataFrame(rows)
