"""Deliver one JSON event to a webhook at least once, with retries, backoff and an `Idempotency-Key`.

Alerts and ML-triggered automations (the CRM workflow engine's events) share this code. Delivery is at least
once: a timeout after the receiver processed the request looks exactly like a lost request, so we retry,
and the receiver drops repeats by the `Idempotency-Key` header (the same key on every attempt, derived from
the event's identity, never from time). Server errors (5xx), 429 and connection failures are retried with
exponential backoff; other 4xx mean the request itself is wrong and are not retried.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from fulqrun_ml.monitoring.drift import MonitoringInputError

log = logging.getLogger(__name__)
IDEMPOTENCY_HEADER = "Idempotency-Key"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def idempotency_key(*parts: object) -> str:
    """sha256 of the parts joined by a separator byte (so ("ab", "c") and ("a", "bc") differ), hex."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class WebhookClient:
    """POSTs JSON to `url`; `sleep` is injectable so tests of the backoff schedule need not wait."""

    def __init__(
        self,
        url: str,
        max_attempts: int = 4,
        backoff_seconds: float = 0.5,
        timeout_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise MonitoringInputError("webhook_url", f"must be an http(s) URL, got {url!r}")
        if max_attempts < 1:
            raise MonitoringInputError("max_attempts", "must be >= 1")
        self.url = url
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._session = requests.Session()

    def deliver(self, payload: dict[str, Any], key: str) -> DeliveryResult:
        """Try up to max_attempts times; waits backoff, 2 backoff, 4 backoff ... between attempts."""
        body = json.dumps({**payload, "idempotency_key": key}, sort_keys=True, default=str)
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        status: int | None = None
        error: str | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self._session.post(self.url, data=body, headers=headers, timeout=self.timeout_seconds)
                status, error = response.status_code, None
                if response.ok:
                    return DeliveryResult(True, attempt, status)
                if status not in RETRY_STATUS:
                    error = f"HTTP {status}: not retried (the request itself was refused)"
                    break
                error = f"HTTP {status}"
            except requests.RequestException as exc:
                status, error = None, type(exc).__name__
            log.info("webhook attempt %d/%d failed (%s); retrying", attempt, self.max_attempts, error)
            if attempt < self.max_attempts:
                self._sleep(self.backoff_seconds * 2 ** (attempt - 1))
        log.warning("webhook delivery failed after %d attempt(s): %s", attempt, error)
        return DeliveryResult(False, attempt, status, error)

    def close(self) -> None:
        self._session.close()
