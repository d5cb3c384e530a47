"""Data quality of live traffic, per feature and per window: nulls, type errors, unknown categories, out-of-range.

Why separate from drift: a broken upstream field (a CRM export that starts sending "" for deal value, a new
stage name) is a bug to fix today, not a slow change of the world; it needs its own rates and thresholds,
and drift statistics deliberately skip such values (drift.py compares only the parseable ones).

Rates are shares of the window's rows. The reference fixes what "normal" is: its null rate per feature, its
numeric range (min/max, or quantiles for robustness) and, for categoricals, the fitted FeatureSpec's
vocabulary (what the model can embed) or else the reference's own values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.monitoring.drift import MonitoringInputError, window_groups


@dataclass(frozen=True)
class QualityThresholds:
    null_rate_tolerance: float = 0.02
    unknown_rate_threshold: float = 0.05
    out_of_range_threshold: float = 0.05
    range_quantiles: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> QualityThresholds:
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise MonitoringInputError(f"quality.{sorted(unknown)[0]}", "unknown setting")
        values = {**asdict(cls()), **section}
        low, high = (float(q) for q in values["range_quantiles"])
        if not 0.0 <= low < high <= 1.0:
            raise MonitoringInputError("quality.range_quantiles", f"need 0 <= low < high <= 1, got {low}, {high}")
        values["range_quantiles"] = (low, high)
        for key in ("null_rate_tolerance", "unknown_rate_threshold", "out_of_range_threshold"):
            if not 0.0 <= float(values[key]) <= 1.0:
                raise MonitoringInputError(f"quality.{key}", "must be a rate in [0, 1]")
        return cls(**values)


@dataclass(frozen=True)
class FeatureQuality:
    """One feature in one window. `type_error_rate` and range apply to numerics, `unknown_rate` to categoricals."""

    feature: str
    kind: str
    n: int
    null_rate: float
    reference_null_rate: float
    type_error_rate: float = 0.0
    unknown_rate: float = 0.0
    out_of_range_rate: float = 0.0
    issues: tuple[str, ...] = ()

    @property
    def null_rate_excess(self) -> float:
        return self.null_rate - self.reference_null_rate


@dataclass(frozen=True)
class QualityReport:
    n: int
    features: tuple[FeatureQuality, ...]
    window_start: str | None = None
    window_end: str | None = None

    @property
    def issues(self) -> dict[str, list[str]]:
        return {f.feature: list(f.issues) for f in self.features if f.issues}

    @property
    def max_null_rate_excess(self) -> float:
        return max((f.null_rate_excess for f in self.features), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["issues"] = self.issues
        data["max_null_rate_excess"] = self.max_null_rate_excess
        return data


@dataclass(frozen=True)
class ReferenceProfile:
    """What quality is measured against, taken once from the training reference."""

    null_rates: dict[str, float]
    ranges: dict[str, tuple[float, float]]
    vocabularies: dict[str, list[str]]

    @classmethod
    def from_frame(
        cls,
        reference: pd.DataFrame,
        numeric: Sequence[str],
        categorical: Sequence[str],
        thresholds: QualityThresholds = QualityThresholds(),
        vocabularies: Mapping[str, Sequence[str]] | None = None,
    ) -> ReferenceProfile:
        for column in [*numeric, *categorical]:
            if column not in reference.columns:
                raise MonitoringInputError(column, "missing column in the reference frame")
        low, high = thresholds.range_quantiles
        ranges = {}
        for column in numeric:
            values = pd.to_numeric(reference[column], errors="coerce").dropna().to_numpy(dtype=np.float64)
            if values.size == 0:
                raise MonitoringInputError(column, "the reference has no numeric values")
            ranges[column] = (float(np.quantile(values, low)), float(np.quantile(values, high)))
        vocabularies = dict(vocabularies or {})
        vocab = {
            c: sorted(str(v) for v in vocabularies[c])
            if c in vocabularies
            else sorted(reference[c].dropna().astype(str).unique())
            for c in categorical
        }
        nulls = {c: float(reference[c].isna().mean()) for c in [*numeric, *categorical]}
        return cls(nulls, ranges, vocab)


def _numeric_quality(
    column: str, values: pd.Series, profile: ReferenceProfile, thresholds: QualityThresholds
) -> FeatureQuality:
    n = len(values)
    nulls = values.isna()
    parsed = pd.to_numeric(values, errors="coerce")
    type_errors = parsed.isna() & ~nulls  # present but not a number ("n/a", "12k", a dict ...)
    low, high = profile.ranges[column]
    numbers = parsed.to_numpy(dtype=np.float64)
    out_of_range = (~np.isnan(numbers)) & ((numbers < low) | (numbers > high))
    null_rate = float(nulls.mean()) if n else 0.0
    quality = FeatureQuality(
        feature=column,
        kind="numeric",
        n=n,
        null_rate=null_rate,
        reference_null_rate=profile.null_rates[column],
        type_error_rate=float(type_errors.mean()) if n else 0.0,
        out_of_range_rate=float(out_of_range.mean()) if n else 0.0,
    )
    issues = []
    if quality.null_rate_excess > thresholds.null_rate_tolerance:
        issues.append("null_rate")
    if quality.type_error_rate > 0:
        issues.append("type_errors")
    if quality.out_of_range_rate > thresholds.out_of_range_threshold:
        issues.append("out_of_range")
    return FeatureQuality(**{**asdict(quality), "issues": tuple(issues)})


def _categorical_quality(
    column: str, values: pd.Series, profile: ReferenceProfile, thresholds: QualityThresholds
) -> FeatureQuality:
    n = len(values)
    nulls = values.isna()
    known = values[~nulls].astype(str).isin(profile.vocabularies[column])
    unknown_rate = float((~known).sum() / n) if n else 0.0
    null_rate = float(nulls.mean()) if n else 0.0
    issues = []
    if null_rate - profile.null_rates[column] > thresholds.null_rate_tolerance:
        issues.append("null_rate")
    if unknown_rate > thresholds.unknown_rate_threshold:
        issues.append("unknown_categories")
    return FeatureQuality(
        feature=column,
        kind="categorical",
        n=n,
        null_rate=null_rate,
        reference_null_rate=profile.null_rates[column],
        unknown_rate=unknown_rate,
        issues=tuple(issues),
    )


def quality_report(
    current: pd.DataFrame,
    profile: ReferenceProfile,
    thresholds: QualityThresholds = QualityThresholds(),
    window: tuple[str | None, str | None] = (None, None),
) -> QualityReport:
    """Rates of every profiled feature in `current`; a feature missing from `current` is an error naming it."""
    features = []
    for column in profile.ranges:
        if column not in current.columns:
            raise MonitoringInputError(column, "missing column in the current frame")
        features.append(_numeric_quality(column, current[column], profile, thresholds))
    for column in profile.vocabularies:
        if column not in current.columns:
            raise MonitoringInputError(column, "missing column in the current frame")
        features.append(_categorical_quality(column, current[column], profile, thresholds))
    return QualityReport(len(current), tuple(features), window[0], window[1])


def quality_by_window(
    current: pd.DataFrame,
    profile: ReferenceProfile,
    time_column: str,
    frequency: str,
    thresholds: QualityThresholds = QualityThresholds(),
) -> list[QualityReport]:
    """One `quality_report` per calendar window of the current traffic, oldest first."""
    return [
        quality_report(rows, profile, thresholds, (start, end))
        for start, end, rows in window_groups(current, time_column, frequency)
    ]
