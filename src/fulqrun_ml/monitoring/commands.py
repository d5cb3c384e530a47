"""`fulqrun-ml monitor ...`: drift, data quality, live performance and alerts from files, as JSON.

    fulqrun-ml monitor drift --reference train.parquet --current traffic.parquet [--spec feature_spec.json]
    fulqrun-ml monitor performance --predictions predictions.parquet --outcomes outcomes.parquet [--segment region]
    fulqrun-ml monitor alerts --results drift.json perf.json [--webhook-url URL] [--audit-dir DIR]
    fulqrun-ml monitor automations --predictions predictions.parquet [--webhook-url URL] [--audit-dir DIR]
    fulqrun-ml monitor drift-check [--repeats 200]       false-alarm and detection rates of the drift tests
    fulqrun-ml monitor ship [--interval S]               serving spool -> prediction store (PostgreSQL or Parquet)
    fulqrun-ml monitor watch [--once] [--metrics-port N]  the monitor loop, Prometheus metrics on 127.0.0.1
    fulqrun-ml monitor refresh --task deal_win           the daily refresh (cron / systemd timer)
    fulqrun-ml monitor simulate                          drifting simulated weeks through Triton and the monitor

Thresholds, windows and rules come from configs/monitoring/<--config>.yaml. Subcommands are a registry
(`SUBCOMMANDS`). A module listed in `PLUGIN_SUBCOMMANDS` (e.g. `monitor simulate`) parses its own options:
`monitor <name> ...` is passed through to its `main(argv) -> int`, like the CLI's command groups.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fulqrun_ml.data.snapshot_files import SEALED_SUFFIX, read_snapshot, sealed_path
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.alerts import AlertManager, observations_from_results, rules_from_config
from fulqrun_ml.monitoring.automations import AutomationEngine, automation_rules_from_config
from fulqrun_ml.monitoring.cohorts import cohort_reports, cohorts_from_config
from fulqrun_ml.monitoring.drift import (
    DriftThresholds,
    MonitoringInputError,
    drift_by_window,
    drift_report,
    infer_columns,
    spec_columns,
)
from fulqrun_ml.monitoring.drift_check import error_rates
from fulqrun_ml.monitoring.performance import JoinColumns, join_outcomes, performance_by_window, performance_to_dict
from fulqrun_ml.monitoring.quality import QualityThresholds, ReferenceProfile, quality_by_window, quality_report
from fulqrun_ml.monitoring.webhook import WebhookClient
from fulqrun_ml.project import CONFIG_DIR, REPO_ROOT
from fulqrun_ml.registry.locking import atomic_write_json

CONFIG_GROUP = "monitoring"
# Columns of a prediction log that are not model inputs: never compared as features.
NOT_FEATURES = (
    "request_id",
    "entity_id",
    "opportunity_id",
    "lead_id",
    "predicted_at",
    "model",
    "version",
    "latency_ms",
    "label",
    "won",
    "closed_at",
    "as_of",
)

Runner = Callable[[argparse.Namespace], int]
SUBCOMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {}
PLUGIN_SUBCOMMANDS = {
    "simulate": (
        "fulqrun_ml.monitoring.simulate",
        "replay simulated weeks of traffic and outcomes through the monitor",
    ),
    "ship": ("fulqrun_ml.monitoring.prediction_log", "move the serving spool into the prediction store"),
    "watch": ("fulqrun_ml.monitoring.watch", "the monitor loop: ship, drift, quality, performance, alerts, metrics"),
    "refresh": ("fulqrun_ml.monitoring.refresh_command", "one daily refresh: warm start, gates, promote or alert"),
}


def subcommand(name: str, help_text: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    def register(run: Runner) -> Runner:
        SUBCOMMANDS[name] = (help_text, add_arguments, run)
        return run

    return register


def load_monitoring_config(name_or_path: str | Path = "default") -> dict[str, Any]:
    """A YAML path, or the name of a file in configs/monitoring/."""
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / CONFIG_GROUP / f"{Path(str(name_or_path)).stem}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CONFIG_DIR / CONFIG_GROUP).glob("*.yaml"))
        raise MonitoringInputError("--config", f"no monitoring config {name_or_path!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise MonitoringInputError("--config", f"{path} must hold a mapping")
    return data


def read_frame(path: str, option: str) -> pd.DataFrame:
    """Parquet, CSV or JSON lines, chosen by suffix; a missing or unreadable file names its option."""
    file = Path(path)
    if file.name.endswith((".parquet", SEALED_SUFFIX)) and sealed_path(file).is_file():
        try:  # a run snapshot sealed at rest (holdout.parquet.enc), decrypted in memory
            return read_snapshot(file)
        except FulqrunMLError as exc:
            raise MonitoringInputError(option, str(exc)) from None
    if not file.is_file():
        raise MonitoringInputError(option, f"no such file: {path}")
    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv, ".jsonl": lambda p: pd.read_json(p, lines=True)}
    reader = readers.get(file.suffix.lower())
    if reader is None:
        raise MonitoringInputError(option, f"{file.name}: expected .parquet, .csv or .jsonl")
    try:
        return reader(file)
    except (OSError, ValueError) as exc:
        raise MonitoringInputError(option, f"cannot read {file.name}: {exc}") from exc


def write_result(result: dict[str, Any], out: str | None) -> None:
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(out), result)
        print(f"wrote {out}")
    else:
        print(json.dumps(result, indent=2, sort_keys=True, default=str))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="configs/monitoring/<name>.yaml or a path")
    parser.add_argument("--out", help="write the JSON result here (atomically); default: print it")


def _drift_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reference", required=True, help="training reference rows (.parquet/.csv/.jsonl)")
    p.add_argument("--current", required=True, help="live traffic rows, e.g. the prediction log")
    p.add_argument("--spec", help="feature_spec.json of the model version: its features and vocabularies")
    p.add_argument("--prediction-column", default="probability", help="'' to skip prediction drift")
    p.add_argument("--time-column", help="window by this column (default: the config's windows.time_column)")
    p.add_argument("--frequency", help="pandas frequency of a window (default: the config's windows.frequency)")
    _common(p)


@subcommand("drift", "feature and prediction drift + data quality per window", _drift_args)
def run_drift(args: argparse.Namespace) -> int:
    config = load_monitoring_config(args.config)
    thresholds = DriftThresholds.from_config(config.get("drift"))
    quality_thresholds = QualityThresholds.from_config(config.get("quality"))
    reference, current = read_frame(args.reference, "--reference"), read_frame(args.current, "--current")
    windows = config.get("windows", {})
    time_column = args.time_column or windows.get("time_column", "predicted_at")
    frequency = args.frequency or windows.get("frequency", "W-SUN")
    prediction = args.prediction_column or None
    if args.spec:
        spec_file = Path(args.spec)
        if not spec_file.is_file():
            raise MonitoringInputError("--spec", f"no such file: {args.spec}")
        numeric, categorical, vocabularies = spec_columns(FittedFeatureSpec.load(spec_file))
    else:
        shared = [c for c in reference.columns if c in current.columns]
        numeric, categorical = infer_columns(reference[shared], exclude=[*NOT_FEATURES, time_column, prediction or ""])
        vocabularies = {}
    if prediction and prediction not in reference.columns:
        prediction = None  # a training frame without scores: feature drift only
    kwargs = dict(
        numeric=numeric,
        categorical=categorical,
        prediction_column=prediction,
        thresholds=thresholds,
        vocabularies=vocabularies,
    )
    profile = ReferenceProfile.from_frame(reference, numeric, categorical, quality_thresholds, vocabularies)
    if time_column in current.columns:
        drift = drift_by_window(reference, current, time_column, frequency, **kwargs)
        quality = quality_by_window(current, profile, time_column, frequency, quality_thresholds)
    else:
        drift = [drift_report(reference, current, **kwargs)]
        quality = [quality_report(current, profile, quality_thresholds)]
    by_time = time_column if time_column in current.columns else None
    cohorts = cohort_reports(cohorts_from_config(config), reference, current, by_time, frequency, **kwargs)
    result = {
        "kind": "drift",
        "frequency": frequency,
        "features": {"numeric": numeric, "categorical": categorical, "prediction": prediction},
        "drift": {"windows": [r.to_dict() for r in [*drift, *cohorts.reports]]},
        "quality": {"windows": [q.to_dict() for q in quality]},
        "cohorts_skipped": cohorts.skipped,
    }
    for r, q in zip(drift, quality, strict=True):
        flagged = r.drifted_features + (["<prediction>"] if r.prediction and r.prediction.drifted else [])
        print(
            f"window {r.window_start or 'all'}: n={r.n_current} drifted={flagged or 'none'} quality={q.issues or 'ok'}"
        )
    for r in cohorts.reports:
        print(f"cohort {r.segment} window {r.window_start or 'all'}: n={r.n_current} drifted={r.drifted_features}")
    write_result(result, args.out)
    return 0


def _performance_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True, help="prediction log: entity id, time, probability")
    p.add_argument("--outcomes", required=True, help="closed entities: entity id, closed_at, won")
    p.add_argument("--segment", help="also report per value of this column (e.g. region)")
    for field in ("entity", "predicted_at", "probability", "closed_at", "label"):
        p.add_argument(f"--{field.replace('_', '-')}-column", dest=field, default=getattr(JoinColumns(), field))
    _common(p)


@subcommand("performance", "outcomes join, rolling AUC/log loss/Brier/ECE and CBPE estimates", _performance_args)
def run_performance(args: argparse.Namespace) -> int:
    section = load_monitoring_config(args.config).get("performance", {})
    frequency = section.get("frequency", "W-SUN")
    columns = JoinColumns(args.entity, args.predicted_at, args.probability, args.closed_at, args.label)
    joined, summary = join_outcomes(
        read_frame(args.predictions, "--predictions"), read_frame(args.outcomes, "--outcomes"), columns
    )
    windows = performance_by_window(
        joined,
        frequency,
        args.segment,
        columns,
        min_samples=int(section.get("min_samples", 100)),
        noise_floor_draws=int(section.get("noise_floor_draws", 400)),
        cbpe_draws=int(section.get("cbpe_draws", 200)),
    )
    result = {"kind": "performance", "frequency": frequency, **performance_to_dict(windows, summary)}
    print(f"joined {summary.labelled} labelled, {summary.unresolved} open, {summary.after_close_dropped} after close")
    write_result(result, args.out)
    return 0


def webhook_client(url: str | None, section: dict[str, Any]) -> WebhookClient | None:
    if not url:
        return None
    return WebhookClient(
        url,
        int(section.get("max_attempts", 4)),
        float(section.get("backoff_seconds", 0.5)),
        float(section.get("timeout_seconds", 5)),
    )


def _alerts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results", nargs="+", required=True, help="JSON written by `monitor drift` / `performance`")
    p.add_argument("--webhook-url", help="override the config's alerts.webhook_url")
    p.add_argument("--audit-dir", help="override the config's alerts.audit_dir (audit.jsonl goes there)")
    _common(p)


@subcommand("alerts", "evaluate the alert rules on monitoring results; deliver what fires", _alerts_args)
def run_alerts(args: argparse.Namespace) -> int:
    section = load_monitoring_config(args.config).get("alerts", {})
    rules = rules_from_config(section.get("rules", []))
    observations = []
    for path in args.results:
        file = Path(path)
        if not file.is_file():
            raise MonitoringInputError("--results", f"no such file: {path}")
        try:
            data = json.loads(file.read_text())
            if data.get("kind") == "performance":
                data = {"performance": {"windows": data["windows"]}, "frequency": data.get("frequency")}
            observations += observations_from_results(data, data.get("frequency") or "W-SUN")
        except json.JSONDecodeError as exc:
            raise MonitoringInputError("--results", f"{file.name} is not JSON: {exc}") from exc
        except (AttributeError, KeyError, TypeError) as exc:  # JSON that is not a `monitor drift|performance` result
            raise MonitoringInputError("--results", f"{file.name}: missing or malformed field {exc}") from exc
    audit_dir = Path(args.audit_dir or section.get("audit_dir") or "monitoring")
    webhook = webhook_client(args.webhook_url or section.get("webhook_url"), section)
    manager = AlertManager(rules, audit_dir, webhook)
    outcome = manager.evaluate(observations)
    for alert in outcome.fired:
        print(alert.message())
    print(f"{len(outcome.fired)} alert(s) fired, {len(outcome.suppressed)} suppressed by cool-down")
    write_result({"kind": "alerts", **outcome.to_dict()}, args.out)
    return 0


def _automations_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--predictions", required=True, help="prediction log: entity_id, request_id, predicted_at, probability"
    )
    p.add_argument("--webhook-url", help="override the config's automations.webhook_url")
    p.add_argument("--audit-dir", help="override the config's alerts.audit_dir")
    _common(p)


@subcommand("automations", "replay predictions through the ML-triggered automations", _automations_args)
def run_automations(args: argparse.Namespace) -> int:
    config = load_monitoring_config(args.config)
    section, alerts = config.get("automations", {}), config.get("alerts", {})
    engine = AutomationEngine(
        automation_rules_from_config(section.get("rules", [])),
        webhook_client(args.webhook_url or section.get("webhook_url"), alerts),
        Path(args.audit_dir or alerts.get("audit_dir") or "monitoring"),
    )
    events = engine.replay(read_frame(args.predictions, "--predictions"))
    print(f"{len(events)} automation event(s)")
    result = {
        "kind": "automations",
        "events": [asdict(e) for e in events],
        "deliveries": {k: asdict(v) for k, v in engine.deliveries.items()},
    }
    write_result(result, args.out)
    return 0


def _drift_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--n-current", type=int, default=500, help="rows per synthetic window")
    p.add_argument("--config", default="default")
    p.add_argument("--out", default=str(REPO_ROOT / "reports" / "monitoring_drift_check.json"))


@subcommand("drift-check", "false-alarm and 10%%-shift detection rates of the drift tests", _drift_check_args)
def run_drift_check(args: argparse.Namespace) -> int:
    thresholds = DriftThresholds.from_config(load_monitoring_config(args.config).get("drift"))
    result = {"benchmark": "monitoring_drift_check", "thresholds": asdict(thresholds), "machine": machine_info()}
    result["default_window"] = error_rates(args.repeats, n_current=args.n_current, thresholds=thresholds)
    # The price increase is a 0.095-sd shift: how many rows a window needs to see it.
    result["value_x1.10_by_window_size"] = {
        str(n): error_rates(args.repeats // 4, n_current=n, thresholds=thresholds, shifts=("value_x1.10",))
        for n in (2000, 5000)
    }
    write_result(result, args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml monitor", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _run) in SUBCOMMANDS.items():
        add_arguments(commands.add_parser(name, help=help_text))
    for name, (module, help_text) in PLUGIN_SUBCOMMANDS.items():
        if importlib.util.find_spec(module) is not None:  # listed for --help; main() passes its argv through
            commands.add_parser(name, help=f"{help_text} (see `monitor {name} --help`)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Errors are FulqrunMLError subclasses naming the option or column; `fulqrun-ml` prints them, exits 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in PLUGIN_SUBCOMMANDS:
        return int(importlib.import_module(PLUGIN_SUBCOMMANDS[argv[0]][0]).main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return SUBCOMMANDS[args.command][2](args)
