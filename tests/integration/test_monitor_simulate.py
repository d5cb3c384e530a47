"""`fulqrun-ml monitor simulate` end to end on a small configuration: real training, registry, Triton (production
and the alert-triggered candidate in the same server) and the monitor, scored against the known onset.

8,000 deals give ~550 requests a week, enough for the drift tests' 200-row minimum; the industry-mix drift
(half of the new deals from retail) must be caught after its onset and never before, and the control must
stay free of feature-drift alerts (the exclusions are what keeps it so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fulqrun_ml.monitoring.simulate import run
from fulqrun_ml.monitoring.simulate_report import plot
from fulqrun_ml.monitoring.simulate_scenario import NAME, SimulationSettings
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.audit import read_audit

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = SimulationSettings(
    opportunities=8000,
    companies=1600,
    reps=24,
    weeks=6,
    onset_week=3,
    seeds=(0,),
    scenarios=("control", "industry_mix"),
    train_epochs=3,
    warm_epochs=1,
)
ONSET = SETTINGS.onset_week


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> tuple[dict[str, Any], Path]:
    work = tmp_path_factory.mktemp("monitor-sim")
    report = run(SETTINGS, work=work)
    report["figure"] = str(plot(report, work / "bench_monitoring.png"))
    return report, work


def _run(report: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [r for r in report["runs"] if r["scenario"] == kind]
    return found


def test_report_has_the_fields(simulated):
    report, _ = simulated
    assert {"benchmark", "machine", "settings", "exclude_from_drift", "summary", "runs", "seconds"} <= set(report)
    assert set(report["summary"]) == {"control", "industry_mix"}
    assert {"rep_win_rate", "region", "days_since_last_activity"} <= set(report["exclude_from_drift"])
    assert all(reason for reason in report["exclude_from_drift"].values())
    drift = report["summary"]["industry_mix"]["all_rules"]
    assert {"detection_delay_days", "credited_delay_days", "false_alerts", "within_goal"} <= set(drift)
    assert "false_alerts" in report["summary"]["control"]["outcome_rules_only"]
    for run_ in report["runs"]:
        assert [w["week"] for w in run_["weeks"]] == list(range(1, SETTINGS.weeks + 1))
        assert all(w["rows"] >= 200 for w in run_["weeks"])


def test_scenarios_share_the_calendar_and_differ_only_after_the_onset(simulated):
    report, _ = simulated
    control, drift = _run(report, "control"), _run(report, "industry_mix")
    for week_c, week_d in zip(control["weeks"], drift["weeks"], strict=True):
        assert week_c["window"] == week_d["window"]
        if week_c["week"] < ONSET:  # the same deals are open before the onset in both worlds
            assert week_c["post_onset_share"] == week_d["post_onset_share"] == 0.0
            assert week_c["rows"] == week_d["rows"]
        else:
            assert week_d["post_onset_share"] > 0.0
    # Retail is the hardest industry: the drifted deals' true win probability falls, the control's does not.
    assert drift["true_win_rate_shift"] < control["true_win_rate_shift"] - 0.005


def test_industry_mix_is_detected_after_its_onset_and_not_before(simulated):
    report, _ = simulated
    drift = _run(report, "industry_mix")
    flagged = [w["week"] for w in drift["weeks"] if "industry" in w["drifted_features"]]
    assert flagged and min(flagged) >= ONSET
    first = drift["all_rules"]["first_alert"]
    assert first is not None and first["week"] >= ONSET
    assert drift["all_rules"]["detection_delay_days"] == 7 * (first["week"] - ONSET + 1)
    assert drift["all_rules"]["false_alerts_before_onset"] == 0
    assert drift["all_rules"]["credited_delay_days"] is not None
    assert drift["all_rules"]["credited_first_alert"]["rule"] == "feature_drift"
    assert "industry" in drift["all_rules"]["credited_drifted_features"]


def test_control_raises_no_feature_drift_and_counts_every_alert_as_false(simulated):
    report, _ = simulated
    control = _run(report, "control")
    assert not any(w["drifted_features"] for w in control["weeks"])
    for monitor in ("all_rules", "outcome_rules_only"):
        scored = control[monitor]
        assert scored["detection_delay_days"] is None
        assert scored["false_alerts"] == len(scored["alerts"])
        assert not any(a["rule"] == "feature_drift" for a in scored["alerts"])
    # The excluded features still move, which is why they are excluded (and reported).
    assert any(w["excluded_would_flag"] for w in control["weeks"])


def test_first_alert_triggers_a_warm_started_candidate_scored_in_shadow(simulated):
    report, work = simulated
    drift = _run(report, "industry_mix")
    retrain = drift["retrain"]
    first = drift["all_rules"]["first_alert"]
    assert retrain["triggered_by"] == first and retrain["scored_from_week"] == first["week"] + 1
    assert retrain["refresh"]["warm_start"].startswith(f"init_from={NAME}@")
    assert retrain["refresh"]["candidate_version"] == 2
    for week in drift["weeks"]:
        shadow = week["mean_candidate_probability"]
        assert (shadow is None) == (week["week"] < retrain["scored_from_week"])
    audit = read_audit(work / "seed0" / "industry_mix" / "registry", NAME)
    assert any(r["action"] == "promote" and r["alias"] == "candidate" and r["to_version"] == 2 for r in audit)
    seed_state = read_alias_state(work / "seed0" / "registry", NAME)  # a scenario's refresh stays in its copy
    assert seed_state.production == 1 and seed_state.production_history == (1,)
    accuracy = retrain["accuracy"]
    if retrain["scored_from_week"] <= SETTINGS.weeks:
        assert accuracy["rows"] > 0
        for who in ("production", "candidate", "oracle"):
            assert 0.5 < accuracy[who]["auc"] < 1.0
        assert accuracy["oracle"]["auc"] > accuracy["production"]["auc"]
        assert accuracy["auc_recovered"] == pytest.approx(accuracy["candidate"]["auc"] - accuracy["production"]["auc"])


def test_figure_is_a_png(simulated):
    report, _ = simulated
    assert Path(report["figure"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
