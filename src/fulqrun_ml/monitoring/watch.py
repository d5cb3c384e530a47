"""`fulqrun-ml monitor watch`: the production monitor as one long-running process.

Every `--interval` seconds (or once, with `--once`), one cycle:

1. **ship** the serving spool into the prediction store (`prediction_log.ship`; the stores the serving
   config names, as the backends were configured);
2. **read** the model's logged predictions of the last `--lookback-days`;
3. **drift and quality** per window against the training reference: the served version's holdout rows
   (from its run, scored by its own exported graph so the prediction has a reference too) or `--reference`;
4. **performance** per window: outcomes from `--outcomes` joined to the predictions made before each close;
   without outcomes (or before deals close) the CBPE estimates alone;
5. **alerts**: the config's rules, deduplicated by their cool-downs across cycles (the audit log is the
   memory), delivered to the webhook, the log and the audit log;
6. **Prometheus**: the latest drift, quality, performance and alert counters on `--metrics-port` (loopback).

Each cycle's result is written atomically to `--out` (JSON). A cycle that fails (a store outage, a bad file)
is logged and the next one runs: the monitor outlives any one cycle. Why one process and not cron jobs per
step: the gauges must persist between cycles for Prometheus to scrape them.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.snapshot_files import read_snapshot
from fulqrun_ml.export.onnx_export import onnx_probabilities
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.monitoring.alerts import AlertManager, observations_from_results, rules_from_config
from fulqrun_ml.monitoring.cohorts import cohort_reports, cohorts_from_config
from fulqrun_ml.monitoring.commands import NOT_FEATURES, load_monitoring_config, read_frame, webhook_client
from fulqrun_ml.monitoring.drift import DriftThresholds, MonitoringInputError, drift_by_window, spec_columns
from fulqrun_ml.monitoring.metrics_export import MonitoringMetrics, start_metrics_server
from fulqrun_ml.monitoring.performance import JoinColumns, join_outcomes, performance_by_window, performance_to_dict
from fulqrun_ml.monitoring.prediction_log import read_predictions, ship, store_from_serving_config
from fulqrun_ml.monitoring.quality import QualityThresholds, ReferenceProfile, quality_by_window
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.commands import default_models_dir
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.run_record import version_holdout_path
from fulqrun_ml.registry.store import ModelVersion, get_version

log = logging.getLogger(__name__)
PREDICTED_AT = "predicted_at"


def reference_rows(version: ModelVersion, path: str | None) -> pd.DataFrame:
    """The drift reference: `path`, or the version's holdout rows with the version's own probabilities."""
    if path:
        return read_frame(path, "--reference")
    holdout = version_holdout_path(version.path)
    if holdout is None:
        raise MonitoringInputError(
            "--reference", f"{version.name} v{version.version}'s training run is not on disk: pass --reference"
        )
    rows = read_snapshot(holdout)
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    return rows.assign(probability=onnx_probabilities(version.path / "model.onnx", spec, rows))


class Watcher:
    """State that outlives a cycle: the reference, its profile, the alert manager and the metric gauges."""

    def __init__(self, args: argparse.Namespace, metrics: MonitoringMetrics) -> None:
        self.args = args
        self.config = load_monitoring_config(args.config)
        self.version = get_version(Path(args.models_dir), args.model, args.version)
        self.spec = FittedFeatureSpec.load(self.version.path / "feature_spec.json")
        self.numeric, self.categorical, self.vocabularies = spec_columns(self.spec)
        self.reference = reference_rows(self.version, args.reference)
        self.quality_thresholds = QualityThresholds.from_config(self.config.get("quality"))
        self.profile = ReferenceProfile.from_frame(
            self.reference, self.numeric, self.categorical, self.quality_thresholds, self.vocabularies
        )
        alerts = self.config.get("alerts", {})
        audit_dir = Path(args.audit_dir or alerts.get("audit_dir") or "monitoring")
        webhook = webhook_client(args.webhook_url or alerts.get("webhook_url"), alerts)
        self.alerts = AlertManager(rules_from_config(alerts.get("rules", [])), audit_dir, webhook)
        self.spool, self.store = store_from_serving_config(Path(args.serving_config))
        self.metrics = metrics

    def cycle(self) -> dict[str, Any]:
        shipped = ship(self.spool, self.store)
        since = datetime.now(UTC) - timedelta(days=self.args.lookback_days)
        logged = read_predictions(self.store, self.version.name, since=since)
        logged = logged.rename(columns={"time": PREDICTED_AT})
        frequency = self.config.get("windows", {}).get("frequency", "W-SUN")
        result: dict[str, Any] = {
            "kind": "watch",
            "model": f"{self.version.name} v{self.version.version}",
            "at": datetime.now(UTC).isoformat(),
            "shipped": {"records": shipped.records, "files": shipped.files, "bad_lines": shipped.bad_lines},
            "rows": len(logged),
            "frequency": frequency,
        }
        if logged.empty:
            return result
        drift_kwargs: dict[str, Any] = dict(
            numeric=[c for c in self.numeric if c not in NOT_FEATURES],
            categorical=self.categorical,
            prediction_column="probability",
            thresholds=DriftThresholds.from_config(self.config.get("drift")),
            vocabularies=self.vocabularies,
        )
        drift = drift_by_window(self.reference, logged, PREDICTED_AT, frequency, **drift_kwargs)
        cohorts = cohort_reports(
            cohorts_from_config(self.config), self.reference, logged, PREDICTED_AT, frequency, **drift_kwargs
        )
        quality = quality_by_window(logged, self.profile, PREDICTED_AT, frequency, self.quality_thresholds)
        performance = self._performance(logged, frequency)
        result |= {
            "drift": {"windows": [r.to_dict() for r in [*drift, *cohorts.reports]]},
            "cohorts_skipped": cohorts.skipped,
            "quality": {"windows": [q.to_dict() for q in quality]},
            "performance": performance_to_dict(*performance),
        }
        outcome = self.alerts.evaluate(observations_from_results(result, frequency))
        result["alerts"] = outcome.to_dict()
        for report in drift[-1:]:
            self.metrics.record_drift(report)
        for report in quality[-1:]:
            self.metrics.record_quality(report)
        self.metrics.record_performance(performance[0])
        self.metrics.record_alerts(outcome)
        return result

    def _performance(self, logged: pd.DataFrame, frequency: str) -> tuple[list[Any], Any]:
        columns = JoinColumns()
        if self.args.outcomes:
            outcomes = read_frame(self.args.outcomes, "--outcomes")
        else:  # no outcomes yet: every window is CBPE-estimated only
            outcomes = pd.DataFrame({columns.entity: [], columns.closed_at: pd.Series(dtype="datetime64[ns, UTC]")})
            outcomes[columns.label] = pd.Series(dtype=float)
        if columns.entity not in logged or logged[columns.entity].isna().all():
            logged = logged.assign(**{columns.entity: logged["request_id"] + ":" + logged["row"].astype(str)})
        joined, summary = join_outcomes(logged, outcomes, columns)
        section = self.config.get("performance", {})
        windows = performance_by_window(
            joined,
            frequency,
            columns=columns,
            min_samples=int(section.get("min_samples", 100)),
            noise_floor_draws=int(section.get("noise_floor_draws", 400)),
            cbpe_draws=int(section.get("cbpe_draws", 200)),
        )
        return windows, summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fulqrun-ml monitor watch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="deal_win")
    parser.add_argument("--version", default="production", help="alias or number of the version being served")
    parser.add_argument("--models-dir", default=str(default_models_dir()))
    parser.add_argument("--serving-config", default=str(CONFIG_DIR / "serving" / "cpu.yaml"))
    parser.add_argument("--config", default="default", help="configs/monitoring/<name>.yaml or a path")
    parser.add_argument("--reference", help="reference rows (default: the version's holdout, scored)")
    parser.add_argument("--outcomes", help="closed entities: entity_id, closed_at, won (.parquet/.csv/.jsonl)")
    parser.add_argument("--lookback-days", type=float, default=56.0)
    parser.add_argument("--interval", type=float, default=3600.0, help="seconds between cycles")
    parser.add_argument("--once", action="store_true", help="one cycle, then exit (cron style)")
    parser.add_argument("--metrics-port", type=int, default=9108, help="Prometheus port on 127.0.0.1 (0: free)")
    parser.add_argument("--webhook-url", help="override the config's alerts.webhook_url")
    parser.add_argument("--audit-dir", help="override the config's alerts.audit_dir")
    parser.add_argument("--out", default="monitoring/watch.json", help="each cycle's result, written atomically")
    return parser


def main(argv: list[str] | None = None, stop: threading.Event | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server, metrics = start_metrics_server(args.metrics_port, metrics=MonitoringMetrics(args.model))
    log.info("monitor metrics on http://127.0.0.1:%d/metrics", server.server_port)
    stop = stop or threading.Event()
    try:
        watcher = Watcher(args, metrics)
        while True:
            started = time.perf_counter()
            try:
                result = watcher.cycle()
                result["seconds"] = round(time.perf_counter() - started, 3)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(Path(args.out), result)
                fired = result.get("alerts", {}).get("fired", [])
                log.info("cycle: %d rows, %d alert(s) fired -> %s", result["rows"], len(fired), args.out)
            except Exception as err:  # the monitor must outlive any one cycle
                if args.once:
                    raise
                log.error("monitor cycle failed, next in %.0fs: %s", args.interval, err)
            if args.once or stop.wait(args.interval):
                return 0
    finally:
        server.shutdown()
