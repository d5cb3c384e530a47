"""Alerts and automations delivered to a real HTTP receiver on 127.0.0.1 that fails the first delivery.

The receiver is what a CRM workflow engine must be: it commits an event under its `Idempotency-Key` and
ignores a key it has already seen. The first request it gets is committed and then answered with 500 (a
crash after the commit, the case that makes at-least-once delivery necessary and idempotency keys
essential): the sender must retry, and exactly one effective delivery must result.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from fulqrun_ml.monitoring.alerts import AlertManager, Observation, rules_from_config
from fulqrun_ml.monitoring.automations import AutomationEngine, automation_rules_from_config
from fulqrun_ml.monitoring.commands import main
from fulqrun_ml.monitoring.webhook import IDEMPOTENCY_HEADER, WebhookClient
from fulqrun_ml.registry.audit import AUDIT_FILE

pytestmark = pytest.mark.integration


class Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ReceiverHandler)
        self.requests: list[tuple[str, dict]] = []  # every request: (idempotency key, body)
        self.effective: dict[str, dict] = {}  # events acted on, once per key
        self.fail_next = True
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hooks/ml"


class ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.headers[IDEMPOTENCY_HEADER]
        with self.server.lock:
            self.server.requests.append((key, body))
            self.server.effective.setdefault(key, body)  # commit (a repeat of a known key is a no-op)
            fail, self.server.fail_next = self.server.fail_next, False
        self.send_response(500 if fail else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_alert_is_retried_after_a_500_and_takes_effect_once(receiver: Receiver, tmp_path: Path) -> None:
    rules = rules_from_config([{"name": "auc_drop", "metric": "performance.auc", "comparison": "<",
                                "threshold": 0.7, "window": "W-SUN", "severity": "critical"}])  # fmt: skip
    client = WebhookClient(receiver.url, max_attempts=3, backoff_seconds=0.05)
    outcome = AlertManager(rules, tmp_path, client).evaluate(
        [Observation("performance.auc", 0.61, 400, "2026-11-15", "na", "W-SUN")]
    )
    (alert,) = outcome.fired
    assert outcome.deliveries[alert.key].delivered and outcome.deliveries[alert.key].attempts == 2
    assert [key for key, _ in receiver.requests] == [alert.key, alert.key]  # the retry reused the key
    assert list(receiver.effective) == [alert.key]
    assert receiver.effective[alert.key]["rule"] == "auc_drop" and receiver.effective[alert.key]["segment"] == "na"
    audit = json.loads((tmp_path / AUDIT_FILE).read_text())
    assert audit["action"] == "alert" and audit["webhook"]["attempts"] == 2


def test_automations_never_double_fire_across_retries_and_restarts(receiver: Receiver, tmp_path: Path) -> None:
    rules = automation_rules_from_config([{"name": "deal_probability_drop", "kind": "probability_drop", "points": 0.1}])
    log = pd.DataFrame(
        {
            "entity_id": ["D1", "D1", "D2", "D2"],
            "request_id": ["r1", "r2", "r3", "r4"],
            "predicted_at": ["2026-11-02", "2026-11-09", "2026-11-02", "2026-11-09"],
            "probability": [0.70, 0.52, 0.40, 0.38],  # D1 drops 18 points; D2 only 2
        }
    )
    client = WebhookClient(receiver.url, max_attempts=3, backoff_seconds=0.05)
    events = AutomationEngine(rules, client, tmp_path).replay(log)
    assert [(e.entity_id, e.request_id) for e in events] == [("D1", "r2")]
    assert len(receiver.requests) == 2 and len(receiver.effective) == 1  # a 500, a retry, one effect
    # a restarted engine replaying the same log finds the event again but does not send it again
    AutomationEngine(rules, WebhookClient(receiver.url, backoff_seconds=0.05), tmp_path).replay(log)
    assert len(receiver.requests) == 2
    body = receiver.effective[events[0].key]
    assert body["type"] == "ml_automation" and body["previous_probability"] == 0.70 and body["probability"] == 0.52


def test_monitor_alerts_command_posts_to_the_webhook(receiver: Receiver, tmp_path: Path) -> None:
    results = tmp_path / "perf.json"
    window = {"window_end": "2026-11-15", "segment": "all", "n": 500, "n_labelled": 450,
              "estimated": {"auc": 0.7, "accuracy": 0.7, "brier": 0.2}, "realised": {"auc": 0.55}}  # fmt: skip
    results.write_text(json.dumps({"kind": "performance", "frequency": "W-SUN", "windows": [window]}))
    argv = ["alerts", "--results", str(results), "--webhook-url", receiver.url, "--audit-dir", str(tmp_path)]
    assert main(argv) == 0
    assert [body["rule"] for body in receiver.effective.values()] == ["auc_drop"]
    assert len(receiver.requests) == 2  # the receiver's first answer was a 500
