"""Prometheus metrics of the monitor, served beside Triton's own `/metrics` (Triton owns 8002; ours is separate).

Gauges hold the latest value per label set (drift statistic per feature, rolling performance per segment,
data-quality rates); counters only go up (alerts fired and suppressed, webhook deliveries), which is what
Prometheus' rate() and alerting expect. Each MonitoringMetrics owns its own CollectorRegistry, so two
monitors (or tests) in one process never collide on metric names, and the default process/GC collectors
of the global registry are not mixed into the monitor's endpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from fulqrun_ml.monitoring.alerts import AlertOutcome
from fulqrun_ml.monitoring.drift import DriftReport
from fulqrun_ml.monitoring.performance import WindowPerformance
from fulqrun_ml.monitoring.quality import QualityReport

PREFIX = "fulqrun_monitor"
ROLLING = ("auc", "log_loss", "brier", "ece", "ece_excess", "win_rate")
ESTIMATED = ("auc", "accuracy", "brier")


class MonitoringMetrics:
    """The monitor's metric families; `record_*` update them from the library's results."""

    def __init__(self, model: str = "deal_win", registry: CollectorRegistry | None = None) -> None:
        self.model = model
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.drift_statistic = Gauge(
            f"{PREFIX}_drift_statistic",
            "Latest drift statistic of a feature against the training reference",
            ["model", "feature", "statistic"],
            registry=r,
        )
        self.drift_detected = Gauge(
            f"{PREFIX}_drift_detected",
            "1 if the feature drifted in the latest window",
            ["model", "feature"],
            registry=r,
        )
        self.quality_rate = Gauge(
            f"{PREFIX}_data_quality_rate",
            "Share of the latest window's rows failing a check",
            ["model", "feature", "check"],
            registry=r,
        )
        self.rolling = Gauge(
            f"{PREFIX}_performance",
            "Realised metric of the latest window with outcomes",
            ["model", "segment", "metric"],
            registry=r,
        )
        self.estimated = Gauge(
            f"{PREFIX}_performance_estimated",
            "CBPE estimate of the latest window (before outcomes)",
            ["model", "segment", "metric"],
            registry=r,
        )
        self.alerts = Counter(f"{PREFIX}_alerts", "Alerts fired", ["model", "rule", "severity"], registry=r)
        self.alerts_suppressed = Counter(
            f"{PREFIX}_alerts_suppressed", "Alerts suppressed by the cool-down", ["model", "rule"], registry=r
        )
        self.deliveries = Counter(
            f"{PREFIX}_webhook_deliveries", "Webhook deliveries by result", ["model", "result"], registry=r
        )

    def record_drift(self, report: DriftReport) -> None:
        features = [*report.features, *([report.prediction] if report.prediction else [])]
        for feature in features:
            if feature.status == "insufficient":
                continue
            for stat in feature.statistics:
                self.drift_statistic.labels(self.model, feature.feature, stat.name).set(stat.statistic)
            self.drift_detected.labels(self.model, feature.feature).set(1.0 if feature.drifted else 0.0)

    def record_quality(self, report: QualityReport) -> None:
        for f in report.features:
            checks = {
                "null": f.null_rate,
                "type_error": f.type_error_rate,
                "unknown": f.unknown_rate,
                "out_of_range": f.out_of_range_rate,
            }
            for check, value in checks.items():
                self.quality_rate.labels(self.model, f.feature, check).set(value)

    def record_performance(self, windows: Iterable[WindowPerformance]) -> None:
        """Oldest first, so the gauges end on each segment's latest window."""
        for w in windows:
            for metric in ESTIMATED:
                self.estimated.labels(self.model, w.segment, metric).set(w.estimated[metric])
            for metric in ROLLING if w.realised else ():
                if w.realised[metric] is not None:
                    self.rolling.labels(self.model, w.segment, metric).set(w.realised[metric])

    def record_alerts(self, outcome: AlertOutcome) -> None:
        for alert in outcome.fired:
            self.alerts.labels(self.model, alert.rule, alert.severity).inc()
        for alert in outcome.suppressed:
            self.alerts_suppressed.labels(self.model, alert.rule).inc()
        for result in outcome.deliveries.values():
            self.deliveries.labels(self.model, "delivered" if result.delivered else "failed").inc()


def start_metrics_server(
    port: int, addr: str = "127.0.0.1", metrics: MonitoringMetrics | None = None
) -> tuple[WSGIServer, MonitoringMetrics]:
    """Serve `metrics` (a fresh set when None) on http://addr:port/metrics in a daemon thread.

    Loopback by default: a metrics endpoint reveals model internals, so exposing it is a deliberate choice.
    Port 0 picks a free port (read it from `server.server_port`); `server.shutdown()` stops it."""
    metrics = metrics or MonitoringMetrics()
    server, _thread = start_http_server(port, addr=addr, registry=metrics.registry)
    return server, metrics
