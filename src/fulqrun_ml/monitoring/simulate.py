"""`fulqrun-ml monitor simulate`: weeks of simulated production through a real Triton and the monitor, scored
against the simulator's known drift onset; writes reports/bench_monitoring.json and a PNG next to it.

Per seed, one CRM history is simulated long enough to observe the outcomes of every scored deal. The model is
trained by the project's refresh (its bootstrap) on that CRM cut at `train_days` (`truncate_crm`: what was
known then), promoted to production and served by Triton. For each scenario (a no-drift control and every
`DriftScenario` kind, starting with week `onset_week`) the same seeded CRM is simulated with the drift.
Every simulated week (simulate_scenario.py):

1. the deals open during the week are scored through Triton, once each on a working day (simulate_traffic.py);
2. the monitor compares the week's features and probabilities with a reference of the same kind of traffic
   (the `reference_weeks` weeks before training: one quarter), joins the outcomes known at the week's end and
   estimates performance before labels (CBPE);
3. the alert rules of configs/monitoring/default.yaml run on the week's observations with their cool-downs;
4. on the first alert, the refresh warm-starts a candidate on the CRM cut at that moment, publishes it with
   the `candidate` alias, and the candidate scores the same requests in shadow (simulate_retrain.py).

Scored against truth (simulate_report.py): detection delay, false alerts (before the onset; every alert in the
control), an outcome-rules-only baseline (a team that watches realised AUC / ECE alone), CBPE's AUC error once
all labels are in, and the accuracy the refresh recovered on post-onset deals. Features that move by
construction in any live CRM are left out of the drift tests (`exclude_from_drift`, with reasons).

The Triton backends' prediction log is switched off here: the monitor reads the scored frames directly, and
the log has its own benchmark (reports/bench_prediction_log.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fulqrun_ml.data.simulator_drift import KINDS
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.features.recompute_audit import truncate_crm
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.alerts import AlertRule, rules_from_config
from fulqrun_ml.monitoring.refresh import refresh
from fulqrun_ml.monitoring.simulate_report import (
    MONITORS,
    credit_against_control,
    goals,
    plot,
    production_model,
    score_alerts,
    summarise,
)
from fulqrun_ml.monitoring.simulate_scenario import (
    EXCLUSION_REASONS,
    NAME,
    TRAIN_OVERRIDES,
    SeedContext,
    SimulationSettings,
    run_scenario,
    simulate,
)
from fulqrun_ml.monitoring.simulate_traffic import reference_traffic
from fulqrun_ml.project import REPO_ROOT, compose_config
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer

log = logging.getLogger(__name__)
REPORT = Path("reports/bench_monitoring.json")
DEFAULT_CONFIG = REPO_ROOT / "configs" / "monitoring" / "default.yaml"
METHOD = {
    "traffic": "each deal open during a week is scored once through Triton, at midday of a working day drawn "
    "per deal and week; the reference is the same traffic over the reference_weeks before the training cut, "
    "in the scenario's own world",
    "detection_delay_days": "the day after the end of the first window that alerted after the onset, minus the "
    "onset (a drift caught in its first week: 7); the goal is <= 14",
    "credited_delay_days": "the same, counting only rules that raised no alert in the same seed's control run "
    "(the control shares the calendar, the model and the reference)",
    "false_alerts": "alerts in windows that ended before the onset; in the control, every alert",
    "cbpe": "CBPE's expected AUC per week (made without labels), compared with the realised AUC once every "
    "outcome is in (error = realised - estimated)",
    "accuracy_recovered": "candidate AUC - production AUC on requests about post-onset deals scored after the "
    "alert-triggered refresh, final outcomes; the oracle (true probability given the stage) is the ceiling",
}


def load_config(path: Path) -> tuple[list[AlertRule], dict[str, Any]]:
    """The alert rules and the whole monitoring config (drift thresholds, performance settings)."""
    config = yaml.safe_load(Path(path).read_text())
    return rules_from_config(config["alerts"]["rules"]), config


def run_seed(
    seed: int, settings: SimulationSettings, config: dict[str, Any], rules: list[AlertRule], work: Path
) -> list[dict[str, Any]]:
    """Train and serve the seed's production model, build the reference, replay every scenario."""
    cal = settings.calendar
    base = simulate(settings, seed, "control")
    crm_dir = write_crm_directory(truncate_crm(base.tables, cal.cut), work / "crm_at_training")
    started = time.perf_counter()
    boot = refresh(
        work / "registry",
        NAME,
        "deal_win",
        work / "bootstrap",
        overrides=["data=crm_parquet", f"data.source.path={crm_dir}", *TRAIN_OVERRIDES,
                   f"trainer.max_epochs={settings.train_epochs}"],
    )  # fmt: skip
    version = get_version(work / "registry", NAME, "production")
    training = {"version": version.version, "decision": boot.decision, "seconds": round(time.perf_counter() - started)}
    training["holdout_metrics"] = json.loads((version.path / "metrics.json").read_text())
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    serving = compose_config("serve", ["serving.prediction_log.enabled=false"]).serving
    repository, model_names = build_repositories(version, serving, work / "serving")
    runs = []
    with TritonServer(repository, explicit_models=model_names) as server:
        client = TritonPredictionClient(server.grpc_url, version.name, protocol="grpc")
        reference = reference_traffic(base.tables, cal, settings.reference_weeks, client, spec.spec.names)
        ctx = SeedContext(seed, work, server, repository, client, spec, reference, serving)
        for kind in settings.scenarios:
            started = time.perf_counter()
            runs.append(run_scenario(kind, ctx, settings, config, rules))
            runs[-1]["seconds"] = round(time.perf_counter() - started, 1)
            runs[-1]["production_training"] = training
            log.info("scenario %s seed %s done in %.0fs", kind, seed, runs[-1]["seconds"])
        client.close()
    return runs


def run(settings: SimulationSettings, config_path: Path = DEFAULT_CONFIG, work: Path | None = None) -> dict[str, Any]:
    """Every seed and scenario, scored and summarised: the report (without the figure)."""
    rules, config = load_config(config_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fulqrun-monitor-sim-") as tmp:
        root = Path(work) if work is not None else Path(tmp)
        runs = [r for seed in settings.seeds for r in run_seed(seed, settings, config, rules, root / f"seed{seed}")]
    for r in runs:
        fired = r.pop("fired")
        for monitor in MONITORS:
            r[monitor] = score_alerts(fired[monitor], pd.Timestamp(r["onset"]), r["scenario"])
    credit_against_control(runs)
    summary = summarise(runs)
    return {
        "benchmark": "monitoring",
        "machine": machine_info(),
        "settings": {**asdict(settings), "onset": str(settings.calendar.onset), "cut": str(settings.calendar.cut)},
        "config": os.path.relpath(Path(config_path).resolve(), REPO_ROOT),
        "exclude_from_drift": {
            f: EXCLUSION_REASONS.get(f, "excluded by the caller") for f in settings.exclude_from_drift
        },
        "seconds": round(time.perf_counter() - started, 1),
        "method": METHOD,
        "production_model": production_model(runs, settings.onset_week),
        "summary": summary,
        "goals": goals(summary),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    defaults = SimulationSettings()
    parser = argparse.ArgumentParser(prog="fulqrun-ml monitor simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--opportunities", type=int, default=defaults.opportunities, help="deals per seed")
    parser.add_argument("--reps", type=int, default=defaults.reps)
    parser.add_argument("--weeks", type=int, default=defaults.weeks, help="simulated weeks after training")
    parser.add_argument("--onset-week", type=int, default=defaults.onset_week, help="the first drifted week")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    parser.add_argument("--scenarios", nargs="+", default=list(defaults.scenarios), choices=["control", *KINDS])
    parser.add_argument("--train-epochs", type=int, default=defaults.train_epochs)
    parser.add_argument("--warm-epochs", type=int, default=defaults.warm_epochs)
    parser.add_argument("--no-retrain", action="store_true", help="skip the alert-triggered refresh")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="monitoring config (rules, thresholds)")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep models, registries and audits here")
    parser.add_argument("--out", type=Path, default=REPORT, help="report JSON; the PNG goes next to it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = SimulationSettings(
        opportunities=args.opportunities,
        companies=max(args.opportunities // 5, 100),
        reps=args.reps,
        weeks=args.weeks,
        onset_week=args.onset_week,
        seeds=tuple(args.seeds),
        scenarios=tuple(args.scenarios),
        train_epochs=args.train_epochs,
        warm_epochs=args.warm_epochs,
        retrain=not args.no_retrain,
    )
    report = run(settings, args.config, args.work_dir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["figure"] = str(plot(report, args.out.with_suffix(".png")))
    atomic_write_json(args.out, report)
    print(json.dumps(report["summary"], indent=2, default=str))
    return 0
