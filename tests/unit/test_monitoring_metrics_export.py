"""The monitor's Prometheus endpoint, scraped over real HTTP and parsed with prometheus-client's own parser."""

from __future__ import annotations

import numpy as np
import pandas as pd
import requests
from prometheus_client.parser import text_string_to_metric_families

from fulqrun_ml.monitoring.alerts import AlertManager, Observation, rules_from_config
from fulqrun_ml.monitoring.drift import DriftThresholds, drift_report
from fulqrun_ml.monitoring.drift_check import synthetic_window
from fulqrun_ml.monitoring.metrics_export import MonitoringMetrics, start_metrics_server
from fulqrun_ml.monitoring.performance import performance_by_window
from fulqrun_ml.monitoring.quality import ReferenceProfile, quality_report


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_drift_and_alerts_are_scraped_over_http() -> None:
    rng = np.random.default_rng(0)
    reference = synthetic_window(2000, rng)
    report = drift_report(
        reference, synthetic_window(400, rng, "industry_mix_10pt"), ["value"], ["industry"], "probability",
        DriftThresholds(),
    )  # fmt: skip
    server, metrics = start_metrics_server(0, metrics=MonitoringMetrics(model="deal_win"))
    try:
        metrics.record_drift(report)
        rules = rules_from_config([{"name": "drift", "metric": "m", "threshold": 0, "cooldown_hours": 1000}])
        metrics.record_alerts(
            AlertManager(rules).evaluate(
                [Observation("m", 1.0, 10, str(pd.Timestamp("2026-11-01") + pd.Timedelta(days=d))) for d in (0, 1)]
            )
        )
        samples = _scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    key = ("fulqrun_monitor_drift_detected", (("feature", "industry"), ("model", "deal_win")))
    assert samples[key] == 1.0
    assert samples[("fulqrun_monitor_drift_detected", (("feature", "value"), ("model", "deal_win")))] == 0.0
    chi2 = report.features[1].stat("chi2").statistic
    labels = (("feature", "industry"), ("model", "deal_win"), ("statistic", "chi2"))
    assert samples[("fulqrun_monitor_drift_statistic", labels)] == chi2
    fired = (("model", "deal_win"), ("rule", "drift"), ("severity", "warning"))
    assert samples[("fulqrun_monitor_alerts_total", fired)] == 1.0
    suppressed = (("model", "deal_win"), ("rule", "drift"))
    assert samples[("fulqrun_monitor_alerts_suppressed_total", suppressed)] == 1.0


def test_the_server_binds_loopback_by_default() -> None:
    server, _ = start_metrics_server(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_performance_and_quality_gauges_end_on_the_latest_window() -> None:
    rng = np.random.default_rng(1)
    n = 600
    frame = pd.DataFrame(
        {
            "entity_id": [f"D{i}" for i in range(n)],
            "predicted_at": pd.Timestamp("2026-11-02", tz="UTC") + pd.to_timedelta(rng.integers(0, 14, n), "D"),
            "probability": rng.uniform(0.1, 0.9, n),
        }
    )
    frame["label"] = (rng.random(n) < frame["probability"]).astype(float)
    windows = performance_by_window(frame, "W-SUN", min_samples=50, noise_floor_draws=10, cbpe_draws=10)
    reference = synthetic_window(500, rng)
    profile = ReferenceProfile.from_frame(reference, ["value"], ["industry"])
    broken = reference.assign(industry="a new product line")
    metrics = MonitoringMetrics(model="deal_win")
    metrics.record_performance(windows)
    metrics.record_quality(quality_report(broken, profile))
    server, _ = start_metrics_server(0, metrics=metrics)
    try:
        samples = _scrape(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
    auc = (("metric", "auc"), ("model", "deal_win"), ("segment", "all"))
    assert samples[("fulqrun_monitor_performance", auc)] == windows[-1].realised["auc"]
    assert samples[("fulqrun_monitor_performance_estimated", auc)] == windows[-1].estimated["auc"]
    unknown = (("check", "unknown"), ("feature", "industry"), ("model", "deal_win"))
    assert samples[("fulqrun_monitor_data_quality_rate", unknown)] == 1.0
