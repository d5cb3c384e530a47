"""One scenario of `fulqrun-ml monitor simulate`, week by week, and the settings it runs under.

Each week: score the week's requests through Triton (production, and the candidate once a refresh has run),
test drift against the reference, join the outcomes known at the week's end, estimate performance (CBPE),
and run the alert rules twice: all rules, and the outcome rules alone (the baseline). The first alert of
all rules triggers the refresh. After the last week, with every outcome in, each week's CBPE estimate is
compared with its realised AUC and the refresh's recovered accuracy is measured.

Why features are left out of the drift tests (`EXCLUSION_REASONS`, in the report as `exclude_from_drift`):
each moves by construction in any live CRM, so testing it pages every week whatever the business does. They
are still tested, and what they would have flagged is reported per week (`excluded_would_flag`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.simulator import SimulatedCRM, oracle_win_probability, simulate_crm
from fulqrun_ml.data.simulator_drift import KINDS, DriftScenario
from fulqrun_ml.data.vocabulary import OPEN_STAGES
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.monitoring.alerts import AlertManager, AlertRule, observations_from_results
from fulqrun_ml.monitoring.cohorts import cohort_reports, cohorts_from_config
from fulqrun_ml.monitoring.drift import DriftThresholds, drift_report, spec_columns
from fulqrun_ml.monitoring.performance import join_outcomes, performance_by_window
from fulqrun_ml.monitoring.simulate_retrain import (
    Candidate,
    recovered_accuracy,
    refresh_on_alert,
    retire_candidate,
    serve_candidate,
)
from fulqrun_ml.monitoring.simulate_traffic import (
    SimCalendar,
    outcomes_known_by,
    reference_traffic,
    score,
    week_traffic,
)
from fulqrun_ml.serving.client import TritonPredictionClient
from fulqrun_ml.serving.server import TritonServer

NAME = "deal_win"
OUTCOME_RULES = ("calibration_decay", "auc_drop")
TRAIN_OVERRIDES = ["logger=none", "trainer.enable_progress_bar=false"]
EXCLUSION_REASONS = {
    "rep_win_rate": "a rep-level running record: rows cluster on the reps (one value feeds hundreds of rows), "
    "so the tests' independence fails, and the spread narrows as the records lengthen",
    "region": "the rep's territory: reps transfer regions (data/simulator_history.py) and rows cluster on the "
    "reps, so a single transfer moves a share of the traffic that chi-square calls significant",
    "days_since_last_activity": "recency in calendar days: after a public holiday no deal has been touched for "
    "a day longer, so the whole week moves; the reference cannot hold the calendar to compare like with like",
}


@dataclass(frozen=True)
class SimulationSettings:
    opportunities: int = 20000
    companies: int = 4000
    reps: int = 60
    train_days: int = 539  # the cut is Monday 2025-06-23 (weeks = the monitor's W-SUN windows)
    weeks: int = 12
    onset_week: int = 3
    reference_weeks: int = 13  # one quarter before the cut: the quarter-end cycle is in the reference
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    scenarios: tuple[str, ...] = ("control", *KINDS)
    train_epochs: int = 12
    warm_epochs: int = 3
    retrain: bool = True
    exclude_from_drift: tuple[str, ...] = tuple(EXCLUSION_REASONS)

    @property
    def calendar(self) -> SimCalendar:
        return SimCalendar(self.train_days, self.onset_week)

    @property
    def total_days(self) -> int:
        # Long enough after the last scored week that nearly every scored deal has closed.
        return self.train_days + 7 * self.weeks + 200


@dataclass
class SeedContext:
    """What every scenario of one seed shares: the served production model, and the monitor's reference in the
    seed's base world (the control's; a drift scenario builds its own, simulate_traffic.py says why)."""

    seed: int
    work: Path
    server: TritonServer
    repository: Path
    client: TritonPredictionClient
    spec: FittedFeatureSpec
    reference: pd.DataFrame
    serving: Any


def simulate(settings: SimulationSettings, seed: int, kind: str) -> SimulatedCRM:
    """The seed's CRM, drifted by `kind` from the onset on (the control: not at all)."""
    onset_day = settings.calendar.onset_day
    drift = None if kind == "control" else DriftScenario(kind, onset_day=onset_day)  # type: ignore[arg-type]
    return simulate_crm(
        settings.opportunities, settings.reps, settings.companies, days=settings.total_days, seed=seed, drift=drift
    )


def performance(joined: pd.DataFrame, config: dict[str, Any]) -> list[Any]:
    """`performance_by_window` with the config's `performance:` section."""
    section = config["performance"]
    return performance_by_window(
        joined,
        frequency=str(section["frequency"]),
        min_samples=int(section["min_samples"]),
        noise_floor_draws=int(section["noise_floor_draws"]),
        cbpe_draws=int(section["cbpe_draws"]),
    )


def _perf_dict(window: Any, evaluated: str) -> dict[str, Any]:
    """A performance window as the alert rules read it, stamped with the evaluating week (labels known then):
    a window is re-evaluated every week as its outcomes arrive, and an alert is raised when it is seen."""
    return {
        "window_end": evaluated,
        "segment": window.segment,
        "n": window.n,
        "n_labelled": window.n_labelled,
        "estimated": window.estimated,
        "realised": window.realised,
    }


def run_scenario(
    kind: str, ctx: SeedContext, settings: SimulationSettings, config: dict[str, Any], rules: list[AlertRule]
) -> dict[str, Any]:
    """Replay `settings.weeks` weeks of scenario `kind` for the seed of `ctx` (module docstring)."""
    cal, names = settings.calendar, ctx.spec.spec.names
    crm = simulate(settings, ctx.seed, kind)
    reference = ctx.reference  # the control's world is the seed's base world
    if kind != "control":
        reference = reference_traffic(crm.tables, cal, settings.reference_weeks, ctx.client, names)
    latent = crm.latent.set_index("opportunity_id")
    created = crm.tables.opportunities.drop_duplicates("id").set_index("id")["created_at"]
    numeric, categorical, vocabularies = spec_columns(ctx.spec)
    excluded = set(settings.exclude_from_drift)
    watched = ([c for c in numeric if c not in excluded], [c for c in categorical if c not in excluded])
    left_out = ([c for c in numeric if c in excluded], [c for c in categorical if c in excluded])
    thresholds = DriftThresholds.from_config(config.get("drift"))
    cohorts = cohorts_from_config(config)
    audit = ctx.work / "audit" / kind
    managers = {
        "all_rules": AlertManager(rules, audit_dir=audit / "all"),
        "outcome_rules_only": AlertManager([r for r in rules if r.name in OUTCOME_RULES], audit_dir=audit / "outcome"),
    }
    fired: dict[str, list[dict[str, Any]]] = {name: [] for name in managers}
    traffic: list[pd.DataFrame] = []
    weeks: list[dict[str, Any]] = []
    candidate: Candidate | None = None
    retrain: dict[str, Any] = {}
    try:
        for week in range(1, settings.weeks + 1):
            rows = week_traffic(crm.tables, cal, week, names)
            rows["probability"] = score(ctx.client, rows, names)
            rows["candidate_probability"] = score(candidate.client, rows, names) if candidate else np.nan
            rows["week"] = week
            traffic.append(rows)
            window = cal.window(week)
            drift = drift_report(reference, rows, *watched, "probability", thresholds, vocabularies, window)
            by_cohort = cohort_reports(
                cohorts, reference, rows, None, numeric=watched[0], categorical=watched[1],
                prediction_column="probability", thresholds=thresholds, vocabularies=vocabularies, window=window,
            )  # fmt: skip
            would_flag = drift_report(reference, rows, *left_out, None, thresholds, vocabularies, window)
            known_by = cal.week_end(week)
            joined, _ = join_outcomes(pd.concat(traffic, ignore_index=True), outcomes_known_by(crm.tables, known_by))
            results = {
                "drift": {"windows": [drift.to_dict(), *(r.to_dict() for r in by_cohort.reports)]},
                "performance": {"windows": [_perf_dict(p, window[1]) for p in performance(joined, config)]},
            }
            observations = observations_from_results(results)
            for name, manager in managers.items():
                fired[name] += [
                    {"week": week, "rule": a.rule, "segment": a.segment, "at": a.at, "value": a.value}
                    for a in manager.evaluate(observations).fired
                ]
            weeks.append(
                {
                    "week": week,
                    "window": list(window),
                    "rows": len(rows),
                    "post_onset_share": float((created.reindex(rows["entity_id"]) >= cal.onset).mean()),
                    "drifted_features": drift.drifted_features,
                    "cohort_drifted_features": {r.segment: r.drifted_features for r in by_cohort.reports},
                    "cohort_rows": {r.segment: r.n_current for r in by_cohort.reports},
                    "prediction_drifted": bool(drift.prediction and drift.prediction.drifted),
                    "excluded_would_flag": would_flag.drifted_features,
                    "mean_probability": float(rows["probability"].mean()),
                    "mean_candidate_probability": float(rows["candidate_probability"].mean()) if candidate else None,
                }
            )
            if settings.retrain and candidate is None and fired["all_rules"]:
                version, summary = refresh_on_alert(
                    crm.tables, known_by, ctx.work / "registry", NAME, ctx.work / kind, settings.warm_epochs,
                    TRAIN_OVERRIDES,
                )  # fmt: skip
                candidate = serve_candidate(ctx.server, ctx.repository, version, ctx.serving, summary)
                retrain = {"triggered_by": fired["all_rules"][0], "refresh": summary, "scored_from_week": week + 1}
    finally:
        if candidate is not None:
            retire_candidate(candidate)
    final = _with_truth(pd.concat(traffic, ignore_index=True), crm, latent, created, cal)
    for record, realised in zip(weeks, _weekly_realised(final, config), strict=True):
        record.update(realised)
    if retrain:
        after = final[(final["week"] >= retrain["scored_from_week"]) & final["post_onset"]]
        retrain["accuracy"] = recovered_accuracy(after)
    return {
        "scenario": kind,
        "seed": ctx.seed,
        "onset": str(cal.onset),
        "reference_rows": len(reference),
        "weeks": weeks,
        "fired": fired,
        "retrain": retrain or None,
        "cbpe": _cbpe_summary(weeks, settings.onset_week),
        "true_win_rate_shift": _true_shift(crm, created, cal.onset),
    }


def _with_truth(
    traffic: pd.DataFrame, crm: SimulatedCRM, latent: pd.DataFrame, created: pd.Series, cal: SimCalendar
) -> pd.DataFrame:
    """Every request with its final outcome (`label`), the simulator's true win probability at creation, the
    oracle's (the Bayes posterior given that truth and the stage then: the ceiling) and whether the deal was
    created after the onset."""
    final, _ = join_outcomes(traffic, outcomes_known_by(crm.tables, crm.tables.extracted_at))
    truth = latent["true_win_probability"].reindex(final["entity_id"]).to_numpy()
    final["true_probability"] = truth
    final["oracle_probability"] = oracle_win_probability(truth, final["stage"].map(OPEN_STAGES.index).to_numpy())
    final["post_onset"] = (created.reindex(final["entity_id"]) >= cal.onset).to_numpy()
    return final


def _weekly_realised(final: pd.DataFrame, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Per week, once every outcome is in: CBPE's estimate (made without labels) vs the realised metrics, and
    the oracle's mean probability (the week's true expected win rate)."""
    out = []
    for _, rows in final.groupby("week", sort=True):
        window = performance(rows, config)[0]
        realised = window.realised or {}
        out.append(
            {
                "cbpe_auc": window.estimated["auc"],
                "realised_auc": realised.get("auc"),
                "realised_win_rate": realised.get("win_rate"),
                "realised_ece": realised.get("ece"),
                "labelled_final": window.n_labelled,
                "mean_oracle_probability": float(rows["oracle_probability"].mean()),
            }
        )
    return out


def _cbpe_summary(weeks: list[dict[str, Any]], onset_week: int) -> dict[str, Any]:
    """CBPE's AUC error (realised - estimated) over the weeks before and after the onset."""

    def errors(after_onset: bool) -> list[float]:
        return [
            w["realised_auc"] - w["cbpe_auc"]
            for w in weeks
            if (w["week"] >= onset_week) == after_onset and w["realised_auc"] is not None
        ]

    before, after = errors(False), errors(True)

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "mean_abs_auc_error_before_onset": mean([abs(e) for e in before]),
        "mean_abs_auc_error_after_onset": mean([abs(e) for e in after]),
        "mean_auc_error_before_onset": mean(before),  # < 0: CBPE was optimistic
        "mean_auc_error_after_onset": mean(after),
    }


def _true_shift(crm: SimulatedCRM, created: pd.Series, onset: pd.Timestamp) -> float:
    """The simulator's true win-probability change: deals created after the onset minus those before."""
    after = (created.reindex(crm.latent["opportunity_id"]) >= onset).to_numpy()
    p = crm.latent["true_win_probability"].to_numpy()
    return float(p[after].mean() - p[~after].mean())
