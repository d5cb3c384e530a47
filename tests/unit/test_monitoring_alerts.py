"""Alert rules, dedup within the cool-down, the audit log as dedup memory, retries, and automations.

The real HTTP receiver (a failing first delivery, one effective delivery) is in
tests/integration/test_monitoring_alerts.py; here nothing listens, so deliveries fail and are retried.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.monitoring.alerts import AlertManager, Observation, observations_from_results, rules_from_config
from fulqrun_ml.monitoring.automations import AutomationEngine, automation_rules_from_config
from fulqrun_ml.monitoring.drift import MonitoringInputError
from fulqrun_ml.monitoring.webhook import WebhookClient, idempotency_key
from fulqrun_ml.registry.audit import AUDIT_FILE

RULES = [
    {"name": "drift", "metric": "drift.features_drifted", "comparison": ">=", "threshold": 1, "min_samples": 100,
     "cooldown_hours": 168, "window": "W-SUN"},
    {"name": "auc", "metric": "performance.auc", "comparison": "<", "threshold": 0.7, "cooldown_hours": 0,
     "window": "W-SUN"},
]  # fmt: skip


def _weeks(metric: str, values: list[float], n: int = 500, segment: str = "all") -> list[Observation]:
    ends = pd.date_range("2026-11-08", periods=len(values), freq="7D", tz="UTC")
    return [Observation(metric, v, n, str(at), segment, "W-SUN") for v, at in zip(values, ends, strict=True)]


def test_rules_are_validated_field_by_field() -> None:
    assert [r.name for r in rules_from_config(RULES)] == ["drift", "auc"]
    with pytest.raises(MonitoringInputError, match=r"alerts\.rules\[0\]\.comparison"):
        rules_from_config([{**RULES[0], "comparison": "~"}])
    with pytest.raises(MonitoringInputError, match=r"alerts\.rules\[0\]\.threshold"):
        rules_from_config([{"name": "x", "metric": "m"}])
    with pytest.raises(MonitoringInputError, match=r"alerts\.rules\[1\]\.name"):
        rules_from_config([RULES[0], RULES[0]])


def test_cooldown_dedups_the_same_rule_and_segment(tmp_path: Path) -> None:
    # A 168 h cool-down is exactly one week: consecutive weekly windows are not "within" it, so each fires.
    weekly = AlertManager(rules_from_config(RULES), tmp_path).evaluate(
        _weeks("drift.features_drifted", [1, 1, 0, 2, 1])
    )
    assert [a.at[:10] for a in weekly.fired] == ["2026-11-08", "2026-11-15", "2026-11-29", "2026-12-06"]
    # 25 days: the drift persisting into weeks 2 and 4 is suppressed; week 5 (28 days later) pages again.
    long = AlertManager(rules_from_config([{**RULES[0], "cooldown_hours": 24 * 25}]))
    outcome = long.evaluate(_weeks("drift.features_drifted", [1, 1, 0, 2, 1]))
    assert [a.at[:10] for a in outcome.fired] == ["2026-11-08", "2026-12-06"]
    assert [a.at[:10] for a in outcome.suppressed] == ["2026-11-15", "2026-11-29"]
    # another segment is its own alert
    both = long.evaluate(_weeks("drift.features_drifted", [1], segment="emea"))
    assert len(both.fired) == 1


def test_min_samples_and_window_gate_a_rule() -> None:
    manager = AlertManager(rules_from_config(RULES))
    assert manager.evaluate(_weeks("drift.features_drifted", [3], n=50)).fired == []
    other_window = [Observation("drift.features_drifted", 3, 500, "2026-11-08", "all", "D")]
    assert manager.evaluate(other_window).fired == []


def test_the_audit_log_remembers_what_fired_across_managers(tmp_path: Path) -> None:
    weeks = _weeks("drift.features_drifted", [1, 1, 1])
    rules = rules_from_config([{**RULES[0], "cooldown_hours": 24}])
    first = AlertManager(rules, tmp_path).evaluate(weeks)
    assert len(first.fired) == 3
    again = AlertManager(rules, tmp_path).evaluate(weeks)  # a rerun over the same results: pages nobody
    assert again.fired == [] and len(again.suppressed) == 3
    records = [json.loads(line) for line in (tmp_path / AUDIT_FILE).read_text().splitlines()]
    assert [r["action"] for r in records] == ["alert"] * 3
    assert {"actor", "at", "rule", "segment", "value", "window_end", "key"} <= set(records[0])


def test_failed_webhook_is_retried_with_exponential_backoff(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: every attempt is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits: list[float] = []
    client = WebhookClient(f"http://127.0.0.1:{port}/hook", max_attempts=4, backoff_seconds=0.5, sleep=waits.append)
    outcome = AlertManager(rules_from_config(RULES), tmp_path, client).evaluate(_weeks("performance.auc", [0.6]))
    (result,) = outcome.deliveries.values()
    assert not result.delivered and result.attempts == 4 and waits == [0.5, 1.0, 2.0]
    record = json.loads((tmp_path / AUDIT_FILE).read_text())
    assert record["webhook"]["delivered"] is False  # the audit says the page did not get through
    with pytest.raises(MonitoringInputError, match="webhook_url"):
        WebhookClient("ftp://example")


def test_observations_from_monitor_results() -> None:
    results = {
        "drift": {"windows": [{"window_end": "2026-11-08", "n_current": 300, "drifted_features": ["value"],
                               "prediction": None, "prediction_drifted": False, "features": []}]},
        "performance": {"windows": [{"window_end": "2026-11-08", "segment": "na", "n": 120, "n_labelled": 110,
                                     "estimated": {"auc": 0.8, "accuracy": 0.7, "brier": 0.2},
                                     "realised": {"auc": 0.6, "ece_excess": 0.05}}]},
    }  # fmt: skip
    observed = {(o.metric, o.segment): (o.value, o.n) for o in observations_from_results(results)}
    assert observed[("drift.features_drifted", "all")] == (1.0, 300)
    assert observed[("performance.auc", "na")] == (0.6, 110)
    assert observed[("performance.estimated_auc", "na")] == (0.8, 120)


def test_realised_rules_wait_for_most_outcomes() -> None:
    """A window scored last week has only its quick closes labelled: an outcome rule with min_labelled_share
    ignores it until enough outcomes are in, and the share comes from the performance window's counts."""
    rule = {**RULES[1], "min_labelled_share": 0.9}
    window = {"window_end": "2026-11-08", "segment": "all", "n": 400, "estimated": {}, "realised": {"auc": 0.6}}
    early = observations_from_results({"performance": {"windows": [{**window, "n_labelled": 120}]}})
    late = observations_from_results({"performance": {"windows": [{**window, "n_labelled": 380}]}})
    assert AlertManager(rules_from_config([rule])).evaluate(early).fired == []
    assert len(AlertManager(rules_from_config([rule])).evaluate(late).fired) == 1
    assert len(AlertManager(rules_from_config(RULES)).evaluate(early).fired) == 1  # no share asked: fires
    with pytest.raises(MonitoringInputError, match=r"alerts\.rules\[0\]\.min_labelled_share"):
        rules_from_config([{**rule, "min_labelled_share": 1.5}])


def _predictions(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["entity_id", "request_id", "predicted_at", "probability"])


def test_automations_fire_on_drops_and_upward_crossings(tmp_path: Path) -> None:
    rules = automation_rules_from_config(
        [
            {"name": "drop", "kind": "probability_drop", "points": 0.10},
            {"name": "hot", "kind": "score_crossing", "threshold": 0.7},
        ]
    )
    log = _predictions(
        [
            ("D1", "r1", "2026-11-02", 0.60),
            ("D1", "r2", "2026-11-03", 0.45),  # -15 points: drop
            ("D1", "r3", "2026-11-04", 0.40),  # -5: nothing
            ("L1", "r4", "2026-11-02", 0.65),
            ("L1", "r5", "2026-11-03", 0.72),  # crosses 0.7 upward
            ("L1", "r6", "2026-11-04", 0.75),  # still above: nothing
            ("L1", "r7", "2026-11-05", 0.60),  # -15 points: drop
        ]
    )
    engine = AutomationEngine(rules, audit_dir=tmp_path)
    events = engine.replay(log.sample(frac=1.0, random_state=0))  # replay sorts by time
    assert [(e.rule, e.entity_id, e.request_id) for e in events] == [
        ("drop", "D1", "r2"),
        ("hot", "L1", "r5"),
        ("drop", "L1", "r7"),
    ]
    assert events[0].key == idempotency_key("drop", "D1", "r2")
    fired = [json.loads(line)["key"] for line in (tmp_path / AUDIT_FILE).read_text().splitlines()]
    assert fired == [e.key for e in events]
    # a restart replays the same log: the same events are found, none is recorded (fired) again
    AutomationEngine(rules, audit_dir=tmp_path).replay(log)
    assert len((tmp_path / AUDIT_FILE).read_text().splitlines()) == 3


def test_automation_config_errors_name_the_field() -> None:
    with pytest.raises(MonitoringInputError, match=r"automations\.rules\[0\]\.kind"):
        automation_rules_from_config([{"name": "x", "kind": "vibes"}])
    with pytest.raises(MonitoringInputError, match="'request_id'"):
        AutomationEngine([]).replay(pd.DataFrame({"entity_id": [], "predicted_at": [], "probability": []}))
