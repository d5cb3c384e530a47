"""Crediting a detection to the drift: a feature-drift alert counts only if a feature the story moves drifted in
the alert's own segment (the whole window, or a drift cohort), and never from a rule the control also raised."""

from __future__ import annotations

from fulqrun_ml.monitoring.simulate_report import credit_against_control


def _week(week: int, whole: list[str], cohort: list[str]) -> dict:
    return {"week": week, "drifted_features": whole, "cohort_drifted_features": {"new_deals": cohort}}


def _run(scenario: str, alerts: list[dict], weeks: list[dict]) -> dict:
    scored = {"alerts": alerts}
    return {"scenario": scenario, "seed": 0, "onset": "2025-07-07 00:00:00+00:00", "weeks": weeks,
            "all_rules": scored, "outcome_rules_only": {"alerts": []}}  # fmt: skip


def test_a_cohort_alert_is_credited_by_the_cohort_features():
    weeks = [_week(1, [], []), _week(2, [], []), _week(3, ["country"], ["value"])]
    alerts = [
        {"week": 3, "rule": "feature_drift", "segment": "all", "at": "2025-07-13", "value": 1.0},
        {"week": 3, "rule": "feature_drift", "segment": "new_deals", "at": "2025-07-13", "value": 1.0},
    ]
    drift = _run("price_increase", alerts, weeks)
    credit_against_control([_run("control", [], weeks), drift])
    scored = drift["all_rules"]
    # The whole window drifted on a feature the story does not move; the new deals drifted on `value`.
    assert scored["credited_first_alert"]["segment"] == "new_deals"
    assert scored["credited_drifted_features"] == ["value"] and scored["credited_delay_days"] == 7
    # The same alerts, but the control raised feature_drift too: nothing is credited.
    again = _run("price_increase", alerts, weeks)
    control = _run("control", [{**alerts[1], "week": 1, "at": "2025-06-29"}], weeks)
    credit_against_control([control, again])
    assert again["all_rules"]["credited_first_alert"] is None
