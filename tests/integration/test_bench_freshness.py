"""The freshness benchmark on a tiny CRM: its own PostgreSQL, Redis, stream worker and Triton, every probe's
change seen in a served prediction, the outage backlog drained with nothing left and Redis at the last seq."""

from __future__ import annotations

import pytest

from fulqrun_ml.benchmarks.freshness import FreshnessSettings, run

# The freshness benchmark harness end to end (extended); by-id freshness itself is checked by
# test_online_stream.py and test_serving_by_id.py.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.extended]


def test_freshness_probes_by_id_and_catch_up(published, tmp_path):
    version, _ = published
    settings = FreshnessSettings(
        opportunities=1500, companies=300, reps=10, loads=(0.0, 100.0), probes=4, probe_deals=10,
        probe_gap_s=0.05, warmup_s=1.0, redis_reads=50, outage_minutes=0.05, outage_rate=200.0,
        by_id_concurrency=8, by_id_duration_s=1.0, by_id_rounds=1,
    )  # fmt: skip
    report = run(settings, version, tmp_path)
    for level in report["levels"]:
        assert level["timed_out"] == 0 and level["probes"] == 4
        assert 0 < level["freshness"]["p50_ms"] <= level["freshness"]["max_ms"] < settings.probe_timeout_s * 1000
        assert level["redis_read"]["p99_ms"] > 0 and level["redis_hmget"]["p99_ms"] > 0
    assert report["levels"][1]["achieved_events_per_s"] > 50  # the load writer really wrote
    outage = report["catch_up"]
    assert outage["backlog_events"] >= 600 and outage["pending_after"] == 0 and outage["dead_letters"] == 0
    assert outage["redis_rows_carry_last_seq"]
    assert report["by_id_vs_record"]["by_id_rps"] > 0 and report["by_id_vs_record"]["record_rps"] > 0
    assert {t["target"] for t in report["targets"]} >= {"by-id throughput >= 0.7 x record"}
