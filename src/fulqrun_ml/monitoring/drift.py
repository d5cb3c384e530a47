"""Feature and prediction drift of one window of live traffic against the training reference.

Numeric features: PSI on reference-decile bins, the two-sample Kolmogorov-Smirnov test and the Wasserstein
distance (in reference standard deviations, so one threshold fits every unit). Categorical features: the
chi-square test of homogeneity on counts and PSI, both with an "unknown" bucket for values the reference (or
the fitted vocabulary) never saw. Prediction drift is numeric drift of the probability column.

Why our own code rather than Evidently: evidently 0.7 pins plotly < 6, which the dashboard (dash 4) cannot
live with, and NannyML does not install with our pandas/lightgbm pins (../shared/DEPENDENCIES.md). The tests
(KS, chi-square, Wasserstein) are scipy's; only PSI is ours, and it is checked against a hand computation.

Why "drifted" defaults to the KS / chi-square tests plus PSI: a 10% shift of a feature moves PSI by ~0.01,
far under any PSI rule of thumb, while KS sees it at a few hundred rows. The tests run at `alpha` split over
the window's features (Bonferroni), so a window of identical distributions raises a false flag with
probability <= alpha, whatever the number of features; prediction drift is its own one-test family.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.spec import FittedFeatureSpec

UNKNOWN_CATEGORY = "__unknown__"
PSI_EPSILON = 1e-4  # floor of a bin's share, so an empty bin adds a large but finite term
KS_EXACT_MAX_PAIRS = 10_000
STATISTICS = ("psi", "ks", "wasserstein", "chi2")


class MonitoringInputError(FieldValidationError):
    """A monitoring input (frame, column, config value) is unusable; `field` names it."""


@dataclass(frozen=True)
class DriftThresholds:
    min_samples: int = 200
    psi_bins: int = 10
    psi_threshold: float = 0.2
    alpha: float = 0.001
    wasserstein_threshold: float = 0.25
    decide_by: tuple[str, ...] = ("ks", "chi2", "psi")

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> DriftThresholds:
        """The `drift:` section of configs/monitoring/*.yaml, each field checked (unknown keys rejected)."""
        section = dict(section or {})
        unknown = set(section) - set(cls.__dataclass_fields__)
        if unknown:
            raise MonitoringInputError(f"drift.{sorted(unknown)[0]}", "unknown setting")
        values = {**asdict(cls()), **section}
        values["decide_by"] = tuple(values["decide_by"])
        for name in values["decide_by"]:
            if name not in STATISTICS:
                raise MonitoringInputError("drift.decide_by", f"{name!r} is not one of {STATISTICS}")
        if int(values["min_samples"]) < 1 or int(values["psi_bins"]) < 2:
            raise MonitoringInputError("drift.min_samples", "min_samples >= 1 and psi_bins >= 2 required")
        if not 0 < float(values["alpha"]) < 1:
            raise MonitoringInputError("drift.alpha", f"must be in (0, 1), got {values['alpha']}")
        for key in ("psi_threshold", "wasserstein_threshold"):
            if float(values[key]) <= 0:
                raise MonitoringInputError(f"drift.{key}", "must be > 0")
        return cls(**values)


@dataclass(frozen=True)
class DriftStatistic:
    """One measure: `p_value` only for the tests (KS, chi-square); `drifted` = beyond its threshold."""

    name: str
    statistic: float
    threshold: float
    drifted: bool
    p_value: float | None = None


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # numeric | categorical | prediction
    n_reference: int
    n_current: int
    status: str  # ok | drifted | insufficient (fewer than min_samples current rows)
    statistics: tuple[DriftStatistic, ...] = ()

    @property
    def drifted(self) -> bool:
        return self.status == "drifted"

    def stat(self, name: str) -> DriftStatistic:
        for s in self.statistics:
            if s.name == name:
                return s
        raise KeyError(f"{self.feature} has no {name} statistic")


@dataclass(frozen=True)
class DriftReport:
    """Drift of one window (or of a whole current frame when `window_start` is None)."""

    n_current: int
    features: tuple[FeatureDrift, ...]
    prediction: FeatureDrift | None = None
    window_start: str | None = None
    window_end: str | None = None
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    segment: str = "all"  # or a cohort's name (monitoring/cohorts.py): alerts key on (rule, segment)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["drifted_features"] = self.drifted_features
        data["prediction_drifted"] = bool(self.prediction and self.prediction.drifted)
        return data


def psi_from_shares(reference: np.ndarray, current: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index sum((c - r) * ln(c / r)) over bins, shares floored at `epsilon`."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    c = np.maximum(np.asarray(current, dtype=np.float64), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (deciles for 10 bins); repeated values collapse, so a
    count feature with few distinct values gets fewer, still well-filled bins."""
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of `current` against `reference` on the reference's quantile bins (open-ended outer bins)."""
    edges = quantile_edges(reference, bins)
    k = len(edges) + 1
    ref_share = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=k) / len(reference)
    cur_share = np.bincount(np.searchsorted(edges, current, side="right"), minlength=k) / len(current)
    return psi_from_shares(ref_share, cur_share)


def _numbers(values: Iterable[Any] | pd.Series) -> np.ndarray:
    """Finite numbers only: nulls and unparseable values are data-quality findings (quality.py), not drift."""
    numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return numbers[np.isfinite(numbers)]


def _decide(
    feature: str, kind: str, n_ref: int, n_cur: int, stats_: list[DriftStatistic], thresholds: DriftThresholds
) -> FeatureDrift:
    if n_cur < thresholds.min_samples:
        return FeatureDrift(feature, kind, n_ref, n_cur, "insufficient", tuple(stats_))
    drifted = any(s.drifted for s in stats_ if s.name in thresholds.decide_by)
    return FeatureDrift(feature, kind, n_ref, n_cur, "drifted" if drifted else "ok", tuple(stats_))


def numeric_drift(
    feature: str,
    reference: Iterable[Any],
    current: Iterable[Any],
    thresholds: DriftThresholds = DriftThresholds(),
    n_tests: int = 1,
    kind: str = "numeric",
) -> FeatureDrift:
    """PSI, KS and Wasserstein of one numeric column; the KS test runs at alpha / n_tests."""
    ref, cur = _numbers(reference), _numbers(current)
    if ref.size < 2:
        raise MonitoringInputError(feature, "the reference has fewer than 2 numeric values")
    if cur.size == 0:
        return FeatureDrift(feature, kind, ref.size, 0, "insufficient")
    alpha = thresholds.alpha / max(n_tests, 1)
    # scipy's exact KS p-value costs O(n * m); past ~10^4 pairs the asymptotic one is as accurate as needed.
    ks = stats.ks_2samp(ref, cur, method="asymp" if ref.size * cur.size > KS_EXACT_MAX_PAIRS else "auto")
    scale = float(np.std(ref)) or 1.0  # a constant reference: distance in raw units
    wasserstein = float(stats.wasserstein_distance(ref, cur)) / scale
    psi = numeric_psi(ref, cur, thresholds.psi_bins)
    measured = [
        DriftStatistic("psi", psi, thresholds.psi_threshold, psi > thresholds.psi_threshold),
        DriftStatistic("ks", float(ks.statistic), alpha, float(ks.pvalue) < alpha, float(ks.pvalue)),
        DriftStatistic(
            "wasserstein", wasserstein, thresholds.wasserstein_threshold, wasserstein > thresholds.wasserstein_threshold
        ),
    ]
    return _decide(feature, kind, ref.size, cur.size, measured, thresholds)


def category_counts(values: Iterable[Any], categories: Sequence[str]) -> np.ndarray:
    """Counts per category, in `categories` order, with one last bucket for everything else (nulls excluded)."""
    series = pd.Series(values).dropna().astype(str)
    codes = pd.Categorical(series, categories=list(categories)).codes  # -1: not a known category
    return np.bincount(np.where(codes < 0, len(categories), codes), minlength=len(categories) + 1)


def categorical_drift(
    feature: str,
    reference: Iterable[Any],
    current: Iterable[Any],
    thresholds: DriftThresholds = DriftThresholds(),
    n_tests: int = 1,
    vocabulary: Sequence[str] | None = None,
) -> FeatureDrift:
    """Chi-square test of homogeneity (reference vs current counts) and PSI over the categories.

    The categories are the fitted vocabulary when given (what the model can embed), else the reference's
    values; anything else falls into the unknown bucket, so a new product line shows up as drift."""
    ref_series = pd.Series(reference).dropna().astype(str)
    categories = sorted(set(vocabulary) if vocabulary is not None else set(ref_series.unique()))
    ref_counts = category_counts(ref_series, categories)
    cur_counts = category_counts(current, categories)
    n_ref, n_cur = int(ref_counts.sum()), int(cur_counts.sum())
    if n_ref == 0:
        raise MonitoringInputError(feature, "the reference has no values")
    if n_cur == 0:
        return FeatureDrift(feature, "categorical", n_ref, 0, "insufficient")
    alpha = thresholds.alpha / max(n_tests, 1)
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]  # a category neither sample has carries no information
    if table.shape[1] < 2:
        chi2, p_value = 0.0, 1.0
    else:
        result = stats.chi2_contingency(table, correction=False)
        chi2, p_value = float(result.statistic), float(result.pvalue)
    psi = psi_from_shares(ref_counts / n_ref, cur_counts / n_cur)
    measured = [
        DriftStatistic("psi", psi, thresholds.psi_threshold, psi > thresholds.psi_threshold),
        DriftStatistic("chi2", chi2, alpha, p_value < alpha, p_value),
    ]
    return _decide(feature, "categorical", n_ref, n_cur, measured, thresholds)


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], which: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise MonitoringInputError(column, f"missing column in the {which} frame")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    prediction_column: str | None = None,
    thresholds: DriftThresholds = DriftThresholds(),
    vocabularies: Mapping[str, Sequence[str]] | None = None,
    window: tuple[str | None, str | None] = (None, None),
    segment: str = "all",
) -> DriftReport:
    """Drift of every listed feature (Bonferroni over them) and of the prediction column, for one window."""
    _require_columns(reference, [*numeric, *categorical], "reference")
    _require_columns(current, [*numeric, *categorical], "current")
    n_tests = len(numeric) + len(categorical)
    features = [numeric_drift(c, reference[c], current[c], thresholds, n_tests) for c in numeric]
    vocabularies = vocabularies or {}
    features += [
        categorical_drift(c, reference[c], current[c], thresholds, n_tests, vocabularies.get(c)) for c in categorical
    ]
    prediction = None
    if prediction_column is not None:
        _require_columns(reference, [prediction_column], "reference")
        _require_columns(current, [prediction_column], "current")
        prediction = numeric_drift(
            prediction_column, reference[prediction_column], current[prediction_column], thresholds, 1, "prediction"
        )
    return DriftReport(len(current), tuple(features), prediction, window[0], window[1], thresholds, segment)


def spec_columns(fitted: FittedFeatureSpec) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """Numeric names, categorical names and vocabularies of a fitted FeatureSpec (the model's own view)."""
    return (
        [f.name for f in fitted.spec.numeric],
        [f.name for f in fitted.spec.categorical],
        {k: list(v) for k, v in fitted.vocabularies.items()},
    )


def infer_columns(reference: pd.DataFrame, exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Without a spec: numeric dtype columns are numeric features, string/categorical ones categorical."""
    skip = set(exclude)
    numeric = [
        c
        for c in reference.columns
        if c not in skip
        and pd.api.types.is_numeric_dtype(reference[c])
        and not pd.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [
        c
        for c in reference.columns
        if c not in skip and c not in numeric and not pd.api.types.is_datetime64_any_dtype(reference[c])
    ]
    return numeric, categorical


def window_groups(frame: pd.DataFrame, time_column: str, frequency: str) -> list[tuple[str, str, pd.DataFrame]]:
    """(start, end, rows) per calendar window of `frequency` (e.g. W-SUN), oldest first, empty ones skipped."""
    _require_columns(frame, [time_column], "current")
    times = pd.to_datetime(frame[time_column], utc=True, errors="coerce")
    if times.isna().any():
        raise MonitoringInputError(time_column, f"{int(times.isna().sum())} values are not timestamps")
    try:
        periods = times.dt.tz_localize(None).dt.to_period(frequency)
    except ValueError as exc:
        raise MonitoringInputError("windows.frequency", f"{frequency!r} is not a pandas frequency: {exc}") from exc
    groups = []
    for period, rows in frame.groupby(periods.to_numpy(), sort=True):
        groups.append((str(period.start_time.date()), str(period.end_time.date()), rows))
    return groups


def drift_by_window(
    reference: pd.DataFrame, current: pd.DataFrame, time_column: str, frequency: str, **kwargs: Any
) -> list[DriftReport]:
    """One `drift_report` per window of the current traffic (windows under min_samples come out insufficient)."""
    return [
        drift_report(reference, rows, window=(start, end), **kwargs)
        for start, end, rows in window_groups(current, time_column, frequency)
    ]
