"""ML-triggered automations: events for the CRM's workflow engine, fired from consecutive predictions.

Two kinds, both about one entity's successive scores:
- `probability_drop`: a deal's win probability fell by more than `points` (0.10 = ten points) since its
  previous prediction, the "this deal is slipping, call the champion" trigger;
- `score_crossing`: a lead's score went from below `threshold` to at or above it, the "route to a rep now"
  trigger (upward only; a score hovering around the line fires again only after dipping below it).

Each event is POSTed with the alerts' `WebhookClient` (retries, backoff). Its idempotency key is
sha256(rule, entity, request id of the triggering prediction): the same prediction can never produce two
different events, whichever process replays it. Fired keys are recorded in the append-only audit log and
loaded again at start-up, so replaying a prediction log (a restart, a backfill) never double-fires, and a
delivery that failed every retry is *not* recorded, so the next replay tries it again (at least once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.monitoring.drift import MonitoringInputError
from fulqrun_ml.monitoring.webhook import DeliveryResult, WebhookClient, idempotency_key
from fulqrun_ml.registry.audit import AUDIT_FILE, append_audit
from fulqrun_ml.registry.locking import model_lock

log = logging.getLogger(__name__)
KINDS = ("probability_drop", "score_crossing")
ACTOR = "fulqrun-ml automations"


@dataclass(frozen=True)
class AutomationRule:
    name: str
    kind: str
    points: float = 0.10  # probability_drop: fire when prev - current > points
    threshold: float = 0.5  # score_crossing: fire when prev < threshold <= current


def automation_rules_from_config(rules: Iterable[Mapping[str, Any]]) -> list[AutomationRule]:
    parsed = []
    for i, raw in enumerate(rules):
        where = f"automations.rules[{i}]"
        unknown = set(raw) - set(AutomationRule.__dataclass_fields__)
        if unknown:
            raise MonitoringInputError(f"{where}.{sorted(unknown)[0]}", "unknown setting")
        if raw.get("kind") not in KINDS:
            raise MonitoringInputError(f"{where}.kind", f"must be one of {KINDS}, got {raw.get('kind')!r}")
        if "name" not in raw:
            raise MonitoringInputError(f"{where}.name", "required")
        rule = AutomationRule(**raw)
        if not 0 < float(rule.points) < 1 or not 0 < float(rule.threshold) < 1:
            raise MonitoringInputError(f"{where}.points", "points and threshold must be in (0, 1)")
        parsed.append(rule)
    return parsed


@dataclass(frozen=True)
class AutomationEvent:
    rule: str
    kind: str
    entity_id: str
    request_id: str
    previous_probability: float
    probability: float
    predicted_at: str
    key: str


class AutomationEngine:
    """Keeps each entity's last score; `observe` one prediction at a time (the serving hook) or `replay` a log."""

    def __init__(
        self, rules: list[AutomationRule], webhook: WebhookClient | None = None, audit_dir: Path | None = None
    ) -> None:
        self.rules = rules
        self.webhook = webhook
        self.audit_dir = Path(audit_dir) if audit_dir is not None else None
        self.last: dict[str, float] = {}
        self.fired_keys: set[str] = set()
        self.deliveries: dict[str, DeliveryResult] = {}
        if self.audit_dir is not None and (self.audit_dir / AUDIT_FILE).is_file():
            for line in (self.audit_dir / AUDIT_FILE).read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("action") == "automation":
                    self.fired_keys.add(record["key"])

    def _triggered(self, rule: AutomationRule, previous: float, current: float) -> bool:
        if rule.kind == "probability_drop":
            return previous - current > rule.points
        return previous < rule.threshold <= current

    def observe(
        self, entity_id: str, request_id: str, probability: float, predicted_at: str = ""
    ) -> list[AutomationEvent]:
        """Events this prediction triggers (each delivered once); then it becomes the entity's last score."""
        if not 0.0 <= probability <= 1.0:
            raise MonitoringInputError("probability", f"must be in [0, 1], got {probability}")
        entity_id, request_id = str(entity_id), str(request_id)
        previous = self.last.get(entity_id)
        self.last[entity_id] = float(probability)
        if previous is None:
            return []
        events = []
        for rule in self.rules:
            if not self._triggered(rule, previous, probability):
                continue
            key = idempotency_key(rule.name, entity_id, request_id)
            event = AutomationEvent(
                rule.name, rule.kind, entity_id, request_id, previous, float(probability), str(predicted_at), key
            )
            events.append(event)
            if key not in self.fired_keys:
                self._fire(event)
        return events

    def _fire(self, event: AutomationEvent) -> None:
        result = None
        if self.webhook is not None:
            result = self.webhook.deliver({"type": "ml_automation", **asdict(event)}, event.key)
            self.deliveries[event.key] = result
            if not result.delivered:
                log.warning("automation %s for one entity not delivered: %s", event.rule, result.error)
                return  # not recorded: a later replay tries again
        log.info("automation %s fired (%.3f -> %.3f)", event.rule, event.previous_probability, event.probability)
        self.fired_keys.add(event.key)
        if self.audit_dir is not None:
            with model_lock(self.audit_dir):
                append_audit(self.audit_dir, "automation", ACTOR, **asdict(event))

    def replay(
        self,
        predictions: pd.DataFrame,
        entity: str = "entity_id",
        request_id: str = "request_id",
        probability: str = "probability",
        predicted_at: str = "predicted_at",
    ) -> list[AutomationEvent]:
        """Observe a prediction log in time order (ties keep file order); returns every triggered event."""
        for column in (entity, request_id, probability, predicted_at):
            if column not in predictions.columns:
                raise MonitoringInputError(column, "missing column in the predictions")
        times = pd.to_datetime(predictions[predicted_at], utc=True, errors="coerce")
        if times.isna().any():
            raise MonitoringInputError(predicted_at, "contains values that are not timestamps")
        order = times.argsort(kind="stable").to_numpy()
        rows = zip(
            predictions[entity].to_numpy()[order],
            predictions[request_id].to_numpy()[order],
            pd.to_numeric(predictions[probability], errors="coerce").to_numpy()[order],
            times.to_numpy()[order],
            strict=True,
        )
        events = []
        for entity_id, request, prob, at in rows:
            events += self.observe(entity_id, request, float(prob), str(pd.Timestamp(at)))
        return events
