"""Alert rules from config, evaluated on monitoring observations, deduplicated, and delivered three ways.

A rule (configs/monitoring/*.yaml `alerts.rules`) names a metric, a comparison with a threshold, the window
it applies to, the minimum rows below which a value is too noisy to act on, and a cool-down. An observation
is one value of one metric for one window and segment (`observations_from_results` turns drift, quality and
performance results into them). Time is the window's end, not the wall clock, so a replay of eight simulated
weeks dedups exactly as eight real weeks would.

Dedup: the same rule and segment firing again within its cool-down is suppressed (counted, logged at debug),
so a drift that persists pages once per cool-down, not every window; the same window seen again never
pages twice. Delivery: the Python log, the
append-only audit log (`registry.audit.append_audit`, the registry's own format, so one reader serves both)
and, when configured, a webhook (`webhook.WebhookClient`, retried, with an idempotency key of the rule,
segment and window). The audit log is also the dedup memory across processes: a new AlertManager seeds
its fired windows from it, so running `monitor alerts` twice on the same results does not page twice.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.monitoring.drift import MonitoringInputError
from fulqrun_ml.monitoring.webhook import DeliveryResult, WebhookClient, idempotency_key
from fulqrun_ml.registry.audit import AUDIT_FILE, append_audit
from fulqrun_ml.registry.locking import model_lock

log = logging.getLogger(__name__)
COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
ACTOR = "fulqrun-ml monitor"


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    threshold: float
    comparison: str = ">"
    window: str = "W-SUN"
    min_samples: int = 1
    cooldown_hours: float = 168.0
    severity: str = "warning"
    # Realised-performance rules only: the share of the window's predictions whose outcome is known. Outcomes
    # known early are the quick closes (mostly losses in the simulator), so a metric on them measures that
    # selection, not the model: `monitor simulate`'s control raised calibration_decay every week without it.
    min_labelled_share: float = 0.0

    def breached(self, value: float) -> bool:
        return bool(COMPARISONS[self.comparison](value, self.threshold))


def rules_from_config(rules: Iterable[Mapping[str, Any]]) -> list[AlertRule]:
    """Validate each rule, naming the offending field as `alerts.rules[i].<field>`."""
    parsed = []
    names: set[str] = set()
    for i, raw in enumerate(rules):
        where = f"alerts.rules[{i}]"
        if not isinstance(raw, Mapping):
            raise MonitoringInputError(where, "must be a mapping")
        unknown = set(raw) - set(AlertRule.__dataclass_fields__)
        if unknown:
            raise MonitoringInputError(f"{where}.{sorted(unknown)[0]}", "unknown setting")
        for required in ("name", "metric", "threshold"):
            if required not in raw:
                raise MonitoringInputError(f"{where}.{required}", "required")
        if raw.get("comparison", ">") not in COMPARISONS:
            raise MonitoringInputError(f"{where}.comparison", f"must be one of {list(COMPARISONS)}")
        try:
            rule = AlertRule(**{**raw, "threshold": float(raw["threshold"])})
        except (TypeError, ValueError) as exc:
            raise MonitoringInputError(where, str(exc)) from exc
        if rule.min_samples < 1 or rule.cooldown_hours < 0:
            raise MonitoringInputError(f"{where}.min_samples", "min_samples >= 1 and cooldown_hours >= 0 required")
        if not 0.0 <= rule.min_labelled_share <= 1.0:
            raise MonitoringInputError(f"{where}.min_labelled_share", "must be between 0 and 1")
        if rule.name in names:
            raise MonitoringInputError(f"{where}.name", f"duplicate rule name {rule.name!r}")
        names.add(rule.name)
        parsed.append(rule)
    return parsed


@dataclass(frozen=True)
class Observation:
    """One metric value for one window (ending at `at`) and segment, measured on `n` rows."""

    metric: str
    value: float
    n: int
    at: str
    segment: str = "all"
    window: str = "W-SUN"
    labelled_share: float = 1.0  # realised performance: labelled / scored rows of the window


@dataclass(frozen=True)
class Alert:
    rule: str
    metric: str
    segment: str
    value: float
    threshold: float
    comparison: str
    n: int
    at: str
    severity: str
    key: str  # idempotency key: rule, segment, window end

    def message(self) -> str:
        return (
            f"[{self.severity}] {self.rule}: {self.metric} = {self.value:.4g} {self.comparison} {self.threshold:g} "
            f"(segment {self.segment}, window ending {self.at}, n={self.n})"
        )


@dataclass
class AlertOutcome:
    fired: list[Alert] = field(default_factory=list)
    suppressed: list[Alert] = field(default_factory=list)
    deliveries: dict[str, DeliveryResult] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fired": [asdict(a) for a in self.fired],
            "suppressed": [asdict(a) for a in self.suppressed],
            "deliveries": {k: asdict(v) for k, v in self.deliveries.items()},
        }


def _utc(at: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(at)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


class AlertManager:
    """Evaluates rules on observations; dedups by (rule, segment) within the cool-down; delivers what fires."""

    def __init__(
        self, rules: list[AlertRule], audit_dir: Path | None = None, webhook: WebhookClient | None = None
    ) -> None:
        self.rules = rules
        self.audit_dir = Path(audit_dir) if audit_dir is not None else None
        self.webhook = webhook
        self.fired_at: dict[tuple[str, str], list[pd.Timestamp]] = {}  # window ends that fired, per rule+segment
        if self.audit_dir is not None:
            self._seed_from_audit()

    def _seed_from_audit(self) -> None:
        assert self.audit_dir is not None
        path = self.audit_dir / AUDIT_FILE
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else {}
            if record.get("action") == "alert":
                self.fired_at.setdefault((record["rule"], record["segment"]), []).append(_utc(record["window_end"]))

    def evaluate(self, observations: Iterable[Observation]) -> AlertOutcome:
        """Fire every breached rule with enough rows, oldest window first, unless it is cooling down."""
        outcome = AlertOutcome()
        by_metric: dict[str, list[AlertRule]] = {}
        for rule in self.rules:
            by_metric.setdefault(rule.metric, []).append(rule)
        for obs in sorted(observations, key=lambda o: _utc(o.at)):
            for rule in by_metric.get(obs.metric, []):
                if obs.window != rule.window or obs.n < rule.min_samples or not rule.breached(obs.value):
                    continue
                if obs.labelled_share < rule.min_labelled_share:
                    continue
                alert = Alert(
                    rule.name,
                    obs.metric,
                    obs.segment,
                    float(obs.value),
                    rule.threshold,
                    rule.comparison,
                    obs.n,
                    str(obs.at),
                    rule.severity,
                    idempotency_key(rule.name, obs.segment, _utc(obs.at).isoformat()),
                )
                at, cooldown = _utc(obs.at), pd.Timedelta(hours=rule.cooldown_hours)
                fired = self.fired_at.setdefault((rule.name, obs.segment), [])
                # Within the cool-down of an earlier (or, on a replay, a later) firing, or that very window again.
                if any(abs(at - t) < cooldown or at == t for t in fired):
                    outcome.suppressed.append(alert)
                    log.debug("suppressed (cool-down): %s", alert.message())
                    continue
                fired.append(at)
                outcome.fired.append(alert)
                result = self._deliver(alert)
                if result is not None:
                    outcome.deliveries[alert.key] = result
        return outcome

    def _deliver(self, alert: Alert) -> DeliveryResult | None:
        log.warning("monitoring alert %s", alert.message())
        result = None
        if self.webhook is not None:
            result = self.webhook.deliver({"type": "monitoring_alert", **asdict(alert)}, alert.key)
        if self.audit_dir is not None:
            details = {k: v for k, v in asdict(alert).items() if k != "at"}
            details["window_end"] = alert.at
            details["webhook"] = asdict(result) if result is not None else None
            with model_lock(self.audit_dir):
                append_audit(self.audit_dir, "alert", ACTOR, **details)
        return result


def observations_from_results(results: Mapping[str, Any], window: str = "W-SUN") -> list[Observation]:
    """Observations from the JSON that `monitor drift` / `monitor performance` write.

    drift windows   -> drift.features_drifted, drift.prediction_drifted, drift.psi.<feature> (segment "all", or
                       the cohort's name for a cohort's window: monitoring/cohorts.py)
    quality windows -> quality.max_null_rate_excess, quality.issues
    performance     -> performance.<auc|log_loss|brier|ece|ece_excess> per segment (realised windows only),
                       performance.estimated_<auc|accuracy|brier> per segment (CBPE, before labels)
    """
    out: list[Observation] = []
    for report in results.get("drift", {}).get("windows", []):
        at, counted = report["window_end"], [f for f in report["features"] if f["status"] != "insufficient"]
        n, segment = int(report["n_current"]), report.get("segment", "all")
        out.append(
            Observation("drift.features_drifted", float(len(report["drifted_features"])), n, at, segment, window)
        )
        prediction = report.get("prediction")
        if prediction and prediction["status"] != "insufficient":
            out.append(
                Observation("drift.prediction_drifted", float(report["prediction_drifted"]), n, at, segment, window)
            )
        for feature in counted:
            for stat in feature["statistics"]:
                metric = f"drift.{stat['name']}.{feature['feature']}"
                out.append(Observation(metric, float(stat["statistic"]), n, at, segment, window))
    for report in results.get("quality", {}).get("windows", []):
        at, n = report["window_end"], int(report["n"])
        out.append(
            Observation("quality.max_null_rate_excess", float(report["max_null_rate_excess"]), n, at, window=window)
        )
        out.append(Observation("quality.issues", float(len(report["issues"])), n, at, window=window))
    for perf in results.get("performance", {}).get("windows", []):
        at, segment = perf["window_end"], perf["segment"]
        for metric in ("auc", "accuracy", "brier"):
            value = perf["estimated"].get(metric)
            if value is not None:
                out.append(Observation(f"performance.estimated_{metric}", float(value), perf["n"], at, segment, window))
        realised = perf.get("realised") or {}
        share = perf["n_labelled"] / max(int(perf["n"]), 1)
        for metric in ("auc", "log_loss", "brier", "ece", "ece_excess", "win_rate"):
            if realised.get(metric) is not None:
                value = float(realised[metric])
                out.append(Observation(f"performance.{metric}", value, perf["n_labelled"], at, segment, window, share))
    return out
