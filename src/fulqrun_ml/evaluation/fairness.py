"""Fairness of a binary scorer on the holdout, by group: fairlearn's MetricFrame over region, industry, company
size and rep tenure.

Per group: size, selection rate, true- and false-positive rates at the decision threshold (equalized odds),
and calibration (mean predicted vs observed rate, the signed error, and ECE). Per attribute, the gaps: the
largest minus the smallest value over groups with at least `min_group_size` rows (smaller groups are reported
but too noisy to judge: on 30 rows a rate moves by ~0.09 with one row), and for calibration the worst group's
|mean predicted - observed|. Why gaps and not ratios: a gate needs one number per attribute that is 0 when all
groups are treated alike, and a ratio explodes for rare positives.

One mitigation (`fairness_mitigation.py`: fairlearn's ThresholdOptimizer) is fitted on validation and its cost
(accuracy, AUC) and benefit (gaps) measured on the holdout. The report goes into the run as fairness.json; its `summary`
(gaps only) is what the exporter copies into metadata.json, where the registry's promote gate reads it.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate, true_positive_rate
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from torch import nn

from fulqrun_ml.datamodules.task_builders import REP_TENURE_COLUMN
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.evaluation.fairness_mitigation import fit_thresholds
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.registry.fairness_gate import FAIRNESS_FILE, FairnessSettings, load_governance_config
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.metrics import expected_calibration_error

TENURE_ATTRIBUTE = "rep_tenure"
UNKNOWN_GROUP = "unknown"
RATE_METRICS = ("selection_rate", "tpr", "fpr")
__all__ = ["FAIRNESS_FILE", "fairness_gaps", "fairness_report", "fairness_summary", "holdout_fairness"]


class FairnessInputError(FieldValidationError):
    """An input of the fairness evaluation (a column, the scores) is unusable; `field` names it."""


def tenure_bands(days: np.ndarray | pd.Series, edges: tuple[float, ...]) -> np.ndarray:
    """Band labels for days of tenure: edges (180, 365, 730) give '<180d', '180-365d', '365-730d', '730d+'."""
    values = np.asarray(days, dtype=np.float64)
    labels = [f"<{edges[0]:g}d", *(f"{a:g}-{b:g}d" for a, b in itertools.pairwise(edges)), f"{edges[-1]:g}d+"]
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    out = np.array([labels[i] for i in np.clip(index, 0, len(labels) - 1)], dtype=object)
    out[~np.isfinite(values)] = UNKNOWN_GROUP
    return out


def group_labels(frame: pd.DataFrame, settings: FairnessSettings) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Attribute -> one group label per row, and attribute -> why it is missing (column absent from the frame)."""
    groups, missing = {}, {}
    for attribute in settings.attributes:
        if attribute == TENURE_ATTRIBUTE:
            if REP_TENURE_COLUMN not in frame:
                missing[attribute] = f"the evaluation frame has no `{REP_TENURE_COLUMN}` column"
                continue
            groups[attribute] = tenure_bands(frame[REP_TENURE_COLUMN], settings.tenure_bands_days)
        elif attribute in frame:
            values = frame[attribute].astype(object)
            groups[attribute] = values.where(values.notna(), UNKNOWN_GROUP).astype(str).to_numpy(dtype=object)
        else:
            missing[attribute] = f"the evaluation frame has no `{attribute}` column"
    return groups, missing


def _rate(metric: Callable[..., float]) -> Callable[..., float]:
    """A fairlearn rate that is NaN (not a warning and 0) where the group has no rows of the needed class."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(metric(y_true, y_pred))

    return score


def _tpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate(true_positive_rate)(y_true, y_pred) if np.any(y_true == 1) else float("nan")


def _fpr(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return _rate(false_positive_rate)(y_true, y_pred) if np.any(y_true == 0) else float("nan")


def by_group(
    labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, settings: FairnessSettings
) -> dict[str, dict[str, float]]:
    """Group -> n, selection_rate, tpr, fpr, mean_predicted, observed_rate, calibration_error, ece (MetricFrame)."""
    predicted = (probabilities >= settings.threshold).astype(int)
    rates = MetricFrame(
        metrics={"n": count, "selection_rate": _rate(selection_rate), "tpr": _tpr, "fpr": _fpr},
        y_true=labels,
        y_pred=predicted,
        sensitive_features=pd.Series(groups, name="group"),
    ).by_group
    calibration = MetricFrame(
        metrics={
            "mean_predicted": lambda y, p: float(np.mean(p)),
            "observed_rate": lambda y, p: float(np.mean(y)),
            "ece": lambda y, p: float(expected_calibration_error(p, y, settings.ece_bins)),
        },
        y_true=labels,
        y_pred=probabilities,
        sensitive_features=pd.Series(groups, name="group"),
    ).by_group
    table = pd.concat([rates, calibration], axis=1)
    table["calibration_error"] = table["mean_predicted"] - table["observed_rate"]
    out = {}
    for group, row in table.iterrows():
        values = {k: (None if pd.isna(v) else float(v)) for k, v in row.items()}
        values["n"] = int(row["n"])
        out[str(group)] = values
    return out


def gaps(table: dict[str, dict[str, Any]], min_group_size: int) -> dict[str, dict[str, Any]]:
    """Per metric, the gap over groups with >= min_group_size rows: max - min for rates and ECE (with the high
    and low groups), the worst |calibration_error| for calibration. Metrics with fewer than two judged groups
    (one for calibration) are left out: there is nothing to compare."""
    judged = {g: m for g, m in table.items() if m["n"] >= min_group_size}
    out: dict[str, dict[str, Any]] = {}
    for metric in (*RATE_METRICS, "ece"):
        values = {g: m[metric] for g, m in judged.items() if m.get(metric) is not None}
        if len(values) >= 2:
            high, low = max(values, key=values.get), min(values, key=values.get)
            out[metric] = {"gap": values[high] - values[low], "high": high, "low": low}
    errors = {g: abs(m["calibration_error"]) for g, m in judged.items() if m.get("calibration_error") is not None}
    if errors:
        worst = max(errors, key=errors.get)
        out["calibration"] = {"gap": errors[worst], "high": worst, "low": None}
    return out


def _check_inputs(frame: pd.DataFrame, probabilities: np.ndarray, which: str) -> tuple[np.ndarray, np.ndarray]:
    if "label" not in frame:
        raise FairnessInputError(f"{which}.label", "the evaluation frame needs the 0/1 label column")
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if len(probs) != len(frame):
        raise FairnessInputError(f"{which}.probabilities", f"{len(probs)} scores for {len(frame)} rows")
    if not np.all(np.isfinite(probs)) or probs.min(initial=0.0) < 0.0 or probs.max(initial=0.0) > 1.0:
        raise FairnessInputError(f"{which}.probabilities", "scores must be probabilities in [0, 1]")
    labels = frame["label"].to_numpy(dtype=np.float64)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise FairnessInputError(f"{which}.label", "labels must be 0 or 1")
    return labels.astype(int), probs


def fairness_gaps(frame: pd.DataFrame, probabilities: np.ndarray, settings: FairnessSettings) -> dict[str, Any]:
    """Only the gaps per attribute (what the leaderboard and metadata.json carry)."""
    labels, probs = _check_inputs(frame, probabilities, "holdout")
    groups, _ = group_labels(frame, settings)
    return {a: gaps(by_group(labels, probs, g, settings), settings.min_group_size) for a, g in groups.items()}


def fairness_report(
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    settings: FairnessSettings | None = None,
    val_frame: pd.DataFrame | None = None,
    val_probabilities: np.ndarray | None = None,
) -> dict[str, Any]:
    """The holdout's fairness by group for every configured attribute, plus the mitigation (when validation
    rows are given to fit it on). The `summary` is the part metadata.json and the promote gate use."""
    settings = settings or load_governance_config().fairness
    labels, probs = _check_inputs(frame, probabilities, "holdout")
    groups, missing = group_labels(frame, settings)
    attributes = {}
    for attribute, values in groups.items():
        table = by_group(labels, probs, values, settings)
        attributes[attribute] = {
            "groups": table,
            "gaps": gaps(table, settings.min_group_size),
            "judged_groups": sorted(g for g, m in table.items() if m["n"] >= settings.min_group_size),
        }
    report: dict[str, Any] = {
        "n": len(frame),
        "threshold": settings.threshold,
        "min_group_size": settings.min_group_size,
        "tenure_bands_days": list(settings.tenure_bands_days),
        "attributes": attributes,
        "missing_attributes": missing,
    }
    if val_frame is not None and val_probabilities is not None and attributes:
        val_labels, val_probs = _check_inputs(val_frame, val_probabilities, "validation")
        val_groups, _ = group_labels(val_frame, settings)
        report["mitigation"] = mitigation_report(
            (val_labels, val_probs, val_groups), (labels, probs, groups), attributes, settings
        )
    report["summary"] = fairness_summary(report)
    return report


Split = tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]  # labels, probabilities, attribute -> groups


def equalized_odds_gap(gap_table: dict[str, dict[str, Any]]) -> float:
    """The larger of an attribute's TPR and FPR gaps (0 where neither could be judged)."""
    return max((gap_table.get(m) or {}).get("gap", 0.0) for m in ("tpr", "fpr"))


def mitigation_report(
    val: Split, test: Split, attributes: dict[str, dict[str, Any]], settings: FairnessSettings
) -> dict[str, Any]:
    """Fit the ThresholdOptimizer for one attribute on validation; on the holdout, its gaps before and after and
    its cost: accuracy and AUC of the plain threshold rule vs the mitigated decisions."""
    base = {"method": "threshold_optimizer", "constraint": settings.mitigation_constraint, "fitted_on": "val"}
    target = settings.mitigation_attribute
    if target == "auto":
        judged = {a: equalized_odds_gap(v["gaps"]) for a, v in attributes.items() if v["gaps"]}
        if not judged:
            return {**base, "skipped": "no attribute has two groups large enough to compare"}
        target = max(judged, key=judged.get)
    if target not in attributes or target not in val[2]:
        return {**base, "attribute": target, "skipped": f"no `{target}` groups in the evaluation frames"}
    (val_labels, val_probs, val_groups), (labels, probs, groups) = val, test
    fitted = fit_thresholds(
        val_labels,
        val_probs,
        val_groups[target],
        settings.mitigation_constraint,
        settings.min_group_size,
        settings.threshold,
    )
    decisions, positive = fitted.decide(probs, groups[target])
    plain = (probs >= settings.threshold).astype(int)
    rule = replace(settings, threshold=0.5)  # decisions are 0/1: any threshold in (0, 1] reads them the same
    after = gaps(by_group(labels, decisions.astype(np.float64), groups[target], rule), settings.min_group_size)
    before = attributes[target]["gaps"]
    accuracy = (float(np.mean(plain == labels)), float(np.mean(decisions == labels)))
    auc = (float(roc_auc_score(labels, probs)), float(roc_auc_score(labels, positive)))
    balanced = (float(balanced_accuracy_score(labels, plain)), float(balanced_accuracy_score(labels, decisions)))
    return {
        **base,
        "attribute": target,
        "groups_fitted": sorted(fitted.fitted_groups),
        "holdout_rows_without_threshold": fitted.unfitted_rows(groups[target]),
        "gaps_before": {m: before[m] for m in RATE_METRICS if m in before},
        "gaps_after": {m: after[m] for m in RATE_METRICS if m in after},
        "cost": {
            "accuracy_before": accuracy[0],
            "accuracy_after": accuracy[1],
            "accuracy_change": accuracy[1] - accuracy[0],
            "balanced_accuracy_before": balanced[0],
            "balanced_accuracy_after": balanced[1],
            "auc_before": auc[0],
            "auc_after": auc[1],
            "auc_change": auc[1] - auc[0],
            "equalized_odds_gap_before": equalized_odds_gap(before),
            "equalized_odds_gap_after": equalized_odds_gap(after),
        },
    }


def fairness_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The compact record a version's metadata.json holds: gaps per attribute and the mitigation's costs."""
    mitigation = report.get("mitigation") or {}
    return {
        "threshold": report["threshold"],
        "min_group_size": report["min_group_size"],
        "gaps": {a: v["gaps"] for a, v in report["attributes"].items()},
        "missing_attributes": sorted(report.get("missing_attributes") or {}),
        "mitigation": {k: mitigation[k] for k in ("method", "attribute", "constraint", "cost") if k in mitigation},
    }


def holdout_fairness(
    net: nn.Module,
    spec: FittedFeatureSpec,
    frames: dict[str, pd.DataFrame],
    calibration: dict[str, Any] | None,
    settings: FairnessSettings | None = None,
) -> dict[str, Any]:
    """A trained binary network's fairness report: calibrated scores on validation (to fit the mitigation) and
    on the holdout (to judge), as the run would ship them."""
    val, test = frames["val"], frames["test"]
    val_probs = predict_probabilities(net, spec.encode(val), calibration)
    test_probs = predict_probabilities(net, spec.encode(test), calibration)
    return fairness_report(test, test_probs, settings, val, val_probs)
