"""The serving benchmark's verdicts (`evaluate_targets`) on constructed rows, at and just past each boundary.

A report says "met" or "GAP" per target; these pin what each verdict means, so a changed threshold, a flipped
comparison or a point matched to the wrong row fails here rather than in a regenerated README.
"""

from __future__ import annotations

from typing import Any

import pytest

from fulqrun_ml.benchmarks.serving_report import IDENTITY, evaluate_targets

MODEL = "deal_win"


def row(model: str = MODEL, protocol: str = "http", concurrency: int = 1, rows: int = 1, **values: Any) -> dict:
    """One measured point; by default a clean, fast one."""
    point = {"model": model, "protocol": protocol, "concurrency": concurrency, "rows_per_request": rows}
    base = {"rps": 1000.0, "predictions_per_s": 1000.0 * rows, "p99_ms": 1.0, "errors": 0, "requests": 5000}
    return {**point, **base, **values}


def verdicts(rows: list[dict]) -> dict[tuple[str, str], tuple[Any, bool]]:
    return {(t["protocol"], t["target"]): (t["value"], t["met"]) for t in evaluate_targets(rows, MODEL)}


SINGLE = "single-record p99 <= 2 ms at concurrency 1"
RATIO = "throughput >= 0.8 x identity at concurrency 64"
BIG = "10,000 concurrent: 0 errors and p99 <= 1.5 s"
BATCHED = "10,240 in flight: p99 < 100 ms and >= 150k predictions/s"


@pytest.mark.parametrize(("p99", "met"), [(2.0, True), (2.0001, False), (0.5, True), (None, False)])
def test_single_record_p99_is_at_most_two_ms(p99, met):
    assert verdicts([row(p99_ms=p99)])[("http", SINGLE)] == (p99, met)


@pytest.mark.parametrize(("model_rps", "met"), [(800.0, True), (799.9, False), (1200.0, True)])
def test_throughput_ratio_to_the_identity_at_64(model_rps, met):
    rows = [row(concurrency=64, rps=model_rps), row(IDENTITY, concurrency=64, rps=1000.0)]
    value, got = verdicts(rows)[("http", RATIO)]
    assert got is met and value == pytest.approx(model_rps / 1000.0, abs=1e-3)


def test_the_ratio_needs_both_rows_and_an_identity_that_answered():
    assert ("http", RATIO) not in verdicts([row(concurrency=64)])  # no identity measured
    assert ("http", RATIO) not in verdicts([row(concurrency=64), row(IDENTITY, concurrency=64, rps=0.0)])


@pytest.mark.parametrize(
    ("values", "met"),
    [
        ({"errors": 0, "p99_ms": 1500.0}, True),
        ({"errors": 0, "p99_ms": 1500.1}, False),
        ({"errors": 1, "p99_ms": 900.0}, False),
        ({"errors": 0, "p99_ms": None, "requests": 0}, False),  # nothing answered is never a clean run
        ({"errors": 0, "p99_ms": 900.0, "requests": 0}, False),
    ],
)
def test_ten_thousand_concurrent(values, met):
    value, got = verdicts([row(concurrency=10000, **values)])[("http", BIG)]
    assert got is met and value == [values["errors"], values["p99_ms"]]


@pytest.mark.parametrize(
    ("p99", "predictions", "met"),
    [
        (99.99, 150_000.0, True),
        (100.0, 150_000.0, False),  # strictly below 100 ms
        (50.0, 149_999.0, False),
        (None, 200_000.0, False),
    ],
)
def test_batched_point(p99, predictions, met):
    rows = [row(concurrency=160, rows=64, p99_ms=p99, predictions_per_s=predictions)]
    assert verdicts(rows)[("http", BATCHED)] == ([p99, predictions], met)


def test_each_protocol_is_judged_on_its_own_rows_and_only_measured_points_count():
    rows = [row(protocol="http", p99_ms=1.0), row(protocol="grpc", p99_ms=3.0), row(protocol="grpc", concurrency=8)]
    result = evaluate_targets(rows, MODEL)
    assert [(t["protocol"], t["target"], t["met"]) for t in result] == [("grpc", SINGLE, False), ("http", SINGLE, True)]


def test_identity_rows_are_not_judged_as_the_model():
    assert evaluate_targets([row(IDENTITY, p99_ms=0.1)], MODEL) == []
