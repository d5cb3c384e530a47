"""SDK retry: connection errors are retried with bounded backoff against a real closed port; field errors never are."""

from __future__ import annotations

import socket
import time

import pytest
from tritonclient.utils import InferenceServerException

from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.codec import FieldValidationError, RetryPolicy, ServerUnavailableError, is_retryable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_retried_with_bounded_backoff() -> None:
    port = _closed_port()
    policy = RetryPolicy(attempts=3, initial_backoff_s=0.05, max_backoff_s=0.06)
    client = TritonPredictionClient(f"127.0.0.1:{port}", "m", retry=policy, timeout_s=2.0)
    calls: list[int] = []

    def connect() -> None:
        calls.append(1)
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()

    start = time.monotonic()
    with pytest.raises(ServerUnavailableError):
        client._call(connect)
    elapsed = time.monotonic() - start
    assert len(calls) == 3
    assert 0.11 - 0.01 <= elapsed < 2.0  # slept 0.05 + 0.06, bounded by max_backoff_s


def test_non_retryable_error_is_not_retried() -> None:
    client = TritonPredictionClient("127.0.0.1:1", "m", retry=RetryPolicy(attempts=4))
    calls: list[int] = []

    def bad() -> None:
        calls.append(1)
        raise InferenceServerException("field 'amount': not a number", status="400")

    with pytest.raises(FieldValidationError):
        client._call(bad)
    assert calls == [1]
    assert is_retryable(ConnectionRefusedError()) and not is_retryable(ValueError("x"))
