"""`fulqrun-ml monitor simulate`: weeks of simulated production through a real Triton and the monitor, scored
against the simulator's known drift onset.

Per seed, one CRM history is simulated long enough to observe the outcomes of every scored deal. The model is
trained on that CRM truncated at `train_days` (what was known then: `features.recompute_audit.truncate_crm`),
published, and served by Triton. For each scenario (a no-drift control and every `DriftScenario` kind, with
onset `onset_week` weeks after training) the same seeded CRM is re-simulated with the drift, and every week:

1. the deals open that day are scored through Triton (raw records, the production path);
2. the monitor compares the week's features and probabilities with a reference of the same kind of traffic
   (open deals scored on the last `reference_weeks` weekly dates before training, so the reference is drawn
   like the traffic is), joins outcomes known by then, and estimates performance before labels (CBPE);
3. the alert rules of configs/monitoring/default.yaml run on the week's observations with their cool-downs.

Scored against truth: `detection_delay_days` = the first alert's window end minus the onset (None: missed),
`false_alerts` = alerts before the onset, and in the control every alert is false. Baseline: the same
monitor with only outcome-based rules (what a team that watches realised AUC/ECE alone would see).

The rep-history aggregates (`rep_closed_deals` only grows; `rep_win_rate` follows each rep's record) move by
construction in any live system, so they are left out of the drift tests (`exclude_from_drift`, stated in the
report); the outcome rules still watch what they feed into.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_drift import KINDS, DriftScenario
from fulqrun_ml.data.snapshots import open_deals_as_of
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.deal_features import compute_deal_features
from fulqrun_ml.features.recompute_audit import truncate_crm
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.machine import machine_info
from fulqrun_ml.monitoring.alerts import AlertManager, observations_from_results, rules_from_config
from fulqrun_ml.monitoring.drift import DriftThresholds, drift_report, spec_columns
from fulqrun_ml.monitoring.performance import JoinColumns, join_outcomes, performance_by_window
from fulqrun_ml.project import REPO_ROOT, compose_config
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.deploy import build_repositories
from fulqrun_ml.serving.server import TritonServer
from fulqrun_ml.training.train import train

log = logging.getLogger(__name__)
REPORT = Path("reports/bench_monitoring.json")
DEFAULT_CONFIG = REPO_ROOT / "configs" / "monitoring" / "default.yaml"
OUTCOME_RULES = ("calibration_decay", "auc_drop")


@dataclass(frozen=True)
class SimulationSettings:
    opportunities: int = 6000
    companies: int = 1200
    reps: int = 24
    train_days: int = 540
    weeks: int = 10
    onset_week: int = 3
    reference_weeks: int = 8
    seeds: tuple[int, ...] = (0,)
    scenarios: tuple[str, ...] = ("control", *KINDS)
    train_epochs: int = 12
    exclude_from_drift: tuple[str, ...] = ("rep_closed_deals", "rep_win_rate")

    @property
    def total_days(self) -> int:
        # Long enough after the last scored week that every scored deal has closed (horizon 180 days).
        return self.train_days + 7 * self.weeks + 200


def _load_rules(path: Path) -> tuple[list[Any], dict[str, Any]]:
    import yaml

    config = yaml.safe_load(path.read_text())
    return rules_from_config(config["alerts"]["rules"]), config


def _train_model(tables: Any, work: Path, epochs: int) -> tuple[Any, FittedFeatureSpec]:
    crm_dir = write_crm_directory(tables, work / "crm_train")
    cfg = compose_config(
        "train",
        [
            "task=deal_win",
            "data=crm_parquet",
            f"data.source.path={crm_dir}",
            f"paths.output_dir={work / 'run'}",
            f"paths.models_dir={work / 'models'}",
            "logger=none",
            "trainer.enable_progress_bar=false",
            f"trainer.max_epochs={epochs}",
        ],
    )
    version, _ = export_run(Path(train(cfg)["run_dir"]), work / "models", name="deal_win")
    return version, FittedFeatureSpec.load(version.path / "feature_spec.json")


def _traffic(tables: Any, as_of: pd.Timestamp, spec: FittedFeatureSpec) -> pd.DataFrame:
    """The deals open on `as_of` with their point-in-time features (what the CRM asks the model about)."""
    open_now = open_deals_as_of(tables, as_of)[["opportunity_id"]].assign(as_of=as_of)
    features = compute_deal_features(tables, open_now)
    return features.rename(columns={"opportunity_id": "entity_id"}).assign(predicted_at=as_of)[
        ["entity_id", "predicted_at", *spec.spec.names]
    ]


def _outcomes(tables: Any, known_by: pd.Timestamp) -> pd.DataFrame:
    closes = tables.stage_history[
        tables.stage_history["to_stage"].isin(["closed_won", "closed_lost"])
        & (tables.stage_history["changed_at"] <= known_by)
    ]
    return pd.DataFrame(
        {
            "entity_id": closes["opportunity_id"].to_numpy(),
            "closed_at": closes["changed_at"].to_numpy(),
            "won": (closes["to_stage"] == "closed_won").to_numpy(dtype=float),
        }
    ).drop_duplicates("entity_id", keep="last")


def _score(client: TritonPredictionClient, frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    return np.concatenate(
        [client.predict(frame.iloc[i : i + 512][list(names)]) for i in range(0, len(frame), 512)]
    ).astype(np.float64)


def run_scenario(
    kind: str,
    seed: int,
    settings: SimulationSettings,
    client: TritonPredictionClient,
    spec: FittedFeatureSpec,
    reference: pd.DataFrame,
    config: dict[str, Any],
    rules: list[Any],
    audit_dir: Path,
) -> dict[str, Any]:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    onset_day = settings.train_days + 7 * settings.onset_week
    drift = None if kind == "control" else DriftScenario(kind, onset_day=onset_day)  # type: ignore[arg-type]
    crm = simulate_crm(
        settings.opportunities, settings.reps, settings.companies, days=settings.total_days, seed=seed, drift=drift
    )
    numeric, categorical, vocabularies = spec_columns(spec)
    numeric = [c for c in numeric if c not in settings.exclude_from_drift]
    thresholds = DriftThresholds.from_config(config.get("drift"))
    managers = {
        "all_rules": AlertManager(rules, audit_dir=audit_dir / f"{kind}-{seed}-all"),
        "outcome_rules_only": AlertManager(
            [r for r in rules if r.name in OUTCOME_RULES], audit_dir=audit_dir / f"{kind}-{seed}-outcome"
        ),
    }
    traffic: list[pd.DataFrame] = []
    fired: dict[str, list[dict[str, Any]]] = {name: [] for name in managers}
    weeks = []
    for week in range(1, settings.weeks + 1):
        now = start + pd.Timedelta(days=settings.train_days + 7 * week)
        rows = _traffic(crm.tables, now, spec)
        rows["probability"] = _score(client, rows, spec.spec.names)
        traffic.append(rows)
        window = (str(now.date()), str(now.date()))
        drift_result = drift_report(
            reference, rows, numeric, categorical, "probability", thresholds, vocabularies, window
        ).to_dict()
        joined, _ = join_outcomes(pd.concat(traffic, ignore_index=True), _outcomes(crm.tables, now), JoinColumns())
        perf = performance_by_window(joined, min_samples=int(config["performance"]["min_samples"]))
        results = {
            "drift": {"windows": [drift_result]},
            "performance": {"windows": [_perf_dict(p, now) for p in perf]},
        }
        observations = observations_from_results(results)
        for name, manager in managers.items():
            outcome = manager.evaluate(observations)
            fired[name] += [{"week": week, "rule": a.rule, "at": a.at, "value": a.value} for a in outcome.fired]
        weeks.append(
            {
                "week": week,
                "as_of": str(now),
                "rows": len(rows),
                "drifted_features": drift_result["drifted_features"],
                "prediction_drifted": drift_result.get("prediction_drifted"),
                "mean_probability": float(rows["probability"].mean()),
            }
        )
    onset = start + pd.Timedelta(days=onset_day)
    return {
        "scenario": kind,
        "seed": seed,
        "onset": str(onset),
        "weeks": weeks,
        **{f"{name}": _score_alerts(alerts, onset, kind) for name, alerts in fired.items()},
        "true_win_rate_shift": _true_shift(crm.latent, onset_day, settings.train_days),
    }


def _perf_dict(window: Any, now: pd.Timestamp) -> dict[str, Any]:
    """A performance window as the alert rules read it, stamped with the evaluation date (labels known then)."""
    return {
        "window_end": str(now.date()),
        "segment": window.segment,
        "n": window.n,
        "n_labelled": window.n_labelled,
        "estimated": window.estimated,
        "realised": window.realised,
    }


def _score_alerts(alerts: list[dict[str, Any]], onset: pd.Timestamp, kind: str) -> dict[str, Any]:
    after = [a for a in alerts if pd.Timestamp(a["at"], tz="UTC") >= onset.normalize()]
    false = alerts if kind == "control" else [a for a in alerts if a not in after]
    first = after[0] if after and kind != "control" else None
    delay = (pd.Timestamp(first["at"], tz="UTC") - onset).days if first else None
    return {"alerts": alerts, "false_alerts": len(false), "detection_delay_days": delay, "first_alert": first}


def _true_shift(latent: pd.DataFrame, onset_day: int, train_days: int) -> float | None:
    """The simulator's true win-probability change of drifted deals (mean p after onset vs deals before)."""
    if "drifted" not in latent or not latent["drifted"].any():
        return None
    return float(
        latent.loc[latent["drifted"], "true_win_probability"].mean()
        - latent.loc[~latent["drifted"], "true_win_probability"].mean()
    )


def run(settings: SimulationSettings, config_path: Path = DEFAULT_CONFIG, work: Path | None = None) -> dict[str, Any]:
    rules, config = _load_rules(config_path)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fulqrun-monitor-sim-") as tmp:
        work = work or Path(tmp)
        runs = []
        for seed in settings.seeds:
            seed_dir = work / f"seed{seed}"
            base = simulate_crm(
                settings.opportunities, settings.reps, settings.companies, days=settings.total_days, seed=seed
            )
            train_cut = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=settings.train_days)
            version, spec = _train_model(truncate_crm(base.tables, train_cut), seed_dir, settings.train_epochs)
            serving = compose_config("serve").serving
            repo, names = build_repositories(version, serving, seed_dir / "models")
            with TritonServer(repo, explicit_models=names) as server:
                client = TritonPredictionClient(server.grpc_url, version.name, protocol="grpc")
                reference = pd.concat(
                    [
                        _traffic(base.tables, train_cut - pd.Timedelta(days=7 * k), spec)
                        for k in range(settings.reference_weeks)
                    ],
                    ignore_index=True,
                )
                reference["probability"] = _score(client, reference, spec.spec.names)
                for kind in settings.scenarios:
                    runs.append(
                        run_scenario(kind, seed, settings, client, spec, reference, config, rules, seed_dir / "audit")
                    )
                    log.info("scenario %s seed %s done", kind, seed)
    return {
        "benchmark": "monitoring",
        "machine": machine_info(),
        "settings": settings.__dict__,
        "seconds": round(time.perf_counter() - started, 1),
        "summary": summarise(runs),
        "runs": runs,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: detection delays over seeds (and misses), false alerts; the outcome-rules-only baseline."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == kind]
        row: dict[str, Any] = {}
        for monitor in ("all_rules", "outcome_rules_only"):
            delays = [r[monitor]["detection_delay_days"] for r in mine]
            row[monitor] = {
                "detection_delay_days": delays,
                "missed": sum(d is None for d in delays) if kind != "control" else None,
                "false_alerts": sum(r[monitor]["false_alerts"] for r in mine),
            }
        row["true_win_rate_shift"] = mine[0]["true_win_rate_shift"]
        out[kind] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fulqrun-ml monitor simulate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--weeks", type=int, default=SimulationSettings.weeks)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SimulationSettings.seeds))
    parser.add_argument("--opportunities", type=int, default=SimulationSettings.opportunities)
    parser.add_argument("--scenarios", nargs="+", default=list(SimulationSettings.scenarios))
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    settings = SimulationSettings(
        opportunities=args.opportunities,
        companies=max(args.opportunities // 5, 100),
        weeks=args.weeks,
        seeds=tuple(args.seeds),
        scenarios=tuple(args.scenarios),
    )
    report = run(settings, args.config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(args.out)
    print(json.dumps(report["summary"], indent=2, default=str))
    return 0
