"""Scoring and summarising `fulqrun-ml monitor simulate` against the simulator's known onset, and its figure.

Why the delay is counted from the onset to the end of the window that alerted (+1 day): a weekly monitor
can only raise an alert once its window has closed, so a drift caught in its first week has a delay of 7
days, and the goal "within 2 simulated weeks" is a delay <= 14. Alerts in windows that end before the onset
are false; in the control every alert is.

Why a second, "credited" delay: the first alert after the onset is what an operator sees, but it may have
nothing to do with the drift (a holiday week moves the predictions in the control too). A detection is
credited only from a rule that raised no alert in the same seed's control (in any segment), and a
feature-drift alert only when a feature the scenario's story moves is among the ones drifted in the alert's
segment, the whole window or a drift cohort (`STORY_FEATURES`, the truth the simulator knows). An analysis
device: a live monitor has no control run and no story to compare with.

Intervals over seeds are Student-t 95% intervals of the mean (wide with few seeds; they say how much the
seed matters, not the monitor's asymptotic accuracy); delays get median, min and max, and the misses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

MONITORS = ("all_rules", "outcome_rules_only")
# The model inputs each scenario's story moves (data/simulator_drift.py). Every scenario that changes outcomes
# or deal values also changes the shape of the open pipeline (fewer deals progress when fewer are won; bigger
# deals move through stages more slowly), so the stage-timing features count for all of them.
PIPELINE_SHAPE = ("stage", "stage_changes", "days_in_stage", "deal_age_days")
STORY_FEATURES = {
    "downturn": PIPELINE_SHAPE,
    "industry_mix": ("industry", *PIPELINE_SHAPE),
    "price_increase": ("value", *PIPELINE_SHAPE),
    "new_product": ("value", *PIPELINE_SHAPE),
}


def score_alerts(alerts: list[dict[str, Any]], onset: pd.Timestamp, kind: str) -> dict[str, Any]:
    """False alerts, detection delay and first detection of one monitor in one scenario run."""

    before = [a for a in alerts if _raised(a) <= onset]
    after = [a for a in alerts if _raised(a) > onset]
    first = after[0] if after and kind != "control" else None
    return {
        "alerts": alerts,
        "false_alerts": len(alerts) if kind == "control" else len(before),
        "false_alerts_before_onset": len(before),
        "detection_delay_days": int((_raised(first) - onset).days) if first else None,
        "first_alert": first,
    }


def _raised(alert: dict[str, Any]) -> pd.Timestamp:
    """When an alert could be raised: the day after its window's end date (the window has closed)."""
    return pd.Timestamp(alert["at"], tz="UTC") + pd.Timedelta(days=1)


def credit_against_control(runs: list[dict[str, Any]]) -> None:
    """Add, per drift run and monitor, the detection credited to the drift (module docstring), in place."""
    control = {r["seed"]: r for r in runs if r["scenario"] == "control"}
    for run in runs:
        for monitor in MONITORS:
            scored, base = run[monitor], control.get(run["seed"])
            if run["scenario"] == "control" or base is None:
                scored["rules_also_in_control"] = scored["credited_first_alert"] = None
                scored["credited_delay_days"] = scored["credited_drifted_features"] = None
                continue
            in_control = sorted({a["rule"] for a in base[monitor]["alerts"]})
            story = set(STORY_FEATURES.get(run["scenario"], ()))
            onset = pd.Timestamp(run["onset"])
            first = next((a for a in scored["alerts"] if _credited(a, run, in_control, story, onset)), None)
            scored["rules_also_in_control"] = in_control
            scored["credited_first_alert"] = first
            scored["credited_delay_days"] = int((_raised(first) - onset).days) if first else None
            feature_credit = first is not None and first["rule"] == "feature_drift"
            scored["credited_drifted_features"] = _drifted(run, first) if feature_credit else None


def _credited(
    alert: dict[str, Any], run: dict[str, Any], in_control: list[str], story: set[str], onset: pd.Timestamp
) -> bool:
    if alert["rule"] in in_control or _raised(alert) <= onset:
        return False
    return alert["rule"] != "feature_drift" or bool(story & set(_drifted(run, alert)))


def _drifted(run: dict[str, Any], alert: dict[str, Any]) -> list[str]:
    """The features that drifted in the alert's week and segment (the whole window, or a drift cohort's rows)."""
    week = run["weeks"][alert["week"] - 1]
    segment = alert.get("segment", "all")
    return week["drifted_features"] if segment == "all" else week["cohort_drifted_features"].get(segment, [])


def interval(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean with a Student-t 95% interval over seeds (None values are left out and counted)."""
    x = np.array([v for v in values if v is not None], dtype=np.float64)
    out: dict[str, Any] = {"n": int(x.size), "missing": len(values) - int(x.size)}
    if x.size == 0:
        return {**out, "mean": None, "ci95": None}
    mean = float(x.mean())
    if x.size < 2:
        return {**out, "mean": mean, "ci95": None}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {**out, "mean": mean, "ci95": [mean - half, mean + half]}


def _delays(values: list[int | None]) -> dict[str, Any]:
    seen = [v for v in values if v is not None]
    return {
        "per_seed": values,
        "median": float(np.median(seen)) if seen else None,
        "min": min(seen) if seen else None,
        "max": max(seen) if seen else None,
        "missed": len(values) - len(seen),
    }


def _by_rule(alerts: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert["rule"]] = counts.get(alert["rule"], 0) + 1
    return counts


def summarise(runs: list[dict[str, Any]], goal_days: int = 14) -> dict[str, Any]:
    """Per scenario over seeds: delays (median, misses), false alerts, CBPE error, accuracy recovered."""
    out: dict[str, Any] = {}
    for kind in dict.fromkeys(r["scenario"] for r in runs):
        mine = [r for r in runs if r["scenario"] == kind]
        row: dict[str, Any] = {"seeds": [r["seed"] for r in mine]}
        for monitor in MONITORS:
            delays = [r[monitor]["detection_delay_days"] for r in mine]
            row[monitor] = {
                "false_alerts": sum(r[monitor]["false_alerts"] for r in mine),
                "false_alerts_before_onset": sum(r[monitor]["false_alerts_before_onset"] for r in mine),
            }
            if kind != "control":
                credited = [r[monitor]["credited_delay_days"] for r in mine]
                row[monitor]["detection_delay_days"] = _delays(delays)
                row[monitor]["within_goal"] = sum(d is not None and d <= goal_days for d in delays)
                row[monitor]["first_alert_rules"] = [(r[monitor]["first_alert"] or {}).get("rule") for r in mine]
                row[monitor]["credited_delay_days"] = _delays(credited)
                row[monitor]["credited_within_goal"] = sum(d is not None and d <= goal_days for d in credited)
                row[monitor]["credited_rules"] = [(r[monitor]["credited_first_alert"] or {}).get("rule") for r in mine]
                row[monitor]["credited_drifted_features"] = [r[monitor]["credited_drifted_features"] for r in mine]
            else:
                row[monitor]["alerts_by_rule"] = _by_rule(a for r in mine for a in r[monitor]["alerts"])
        row["cbpe_auc_abs_error"] = {
            phase: interval([r["cbpe"][f"mean_abs_auc_error_{phase}"] for r in mine])
            for phase in ("before_onset", "after_onset")
        }
        row["cbpe_auc_error_after_onset"] = interval([r["cbpe"]["mean_auc_error_after_onset"] for r in mine])
        accuracy = [(r.get("retrain") or {}).get("accuracy") or {} for r in mine]
        row["retrained"] = sum(bool((r.get("retrain") or {}).get("refresh")) for r in mine)
        row["accuracy_recovered_auc"] = interval([a.get("auc_recovered") for a in accuracy])
        row["accuracy_recovered_log_loss"] = interval([a.get("log_loss_recovered") for a in accuracy])
        for who in ("production", "candidate", "oracle"):
            row[f"{who}_auc_after_refresh"] = interval([(a.get(who) or {}).get("auc") for a in accuracy])
        row["true_win_rate_shift"] = interval([r["true_win_rate_shift"] for r in mine])
        out[kind] = row
    return out


def goals(summary: dict[str, Any], goal_days: int = 14) -> dict[str, Any]:
    """The issue's goals against what was measured: detection within `goal_days` of the onset per drift
    scenario (seeds credited / seeds), and alerts in the no-drift control (goal: none)."""
    out: dict[str, Any] = {"detection_within_days": goal_days, "detected": {}}
    for kind, row in summary.items():
        if kind == "control":
            out["control_alerts"] = {"goal": 0, "measured": row["all_rules"]["false_alerts"],
                                     "by_rule": row["all_rules"]["alerts_by_rule"]}  # fmt: skip
            continue
        seeds = len(row["seeds"])
        out["detected"][kind] = {
            "credited_within_goal": f"{row['all_rules']['credited_within_goal']}/{seeds}",
            "any_alert_within_goal": f"{row['all_rules']['within_goal']}/{seeds}",
            "credited_median_delay_days": row["all_rules"]["credited_delay_days"]["median"],
            "outcome_rules_only_within_goal": f"{row['outcome_rules_only']['within_goal']}/{seeds}",
        }
    return out


def production_model(runs: list[dict[str, Any]], onset_week: int) -> dict[str, Any]:
    """How well calibrated the served model was before anything drifted: its own test holdout (calibrated and
    not) and the control's pre-onset weeks (realised ECE, mean probability minus realised win rate). The
    calibration rule and CBPE both assume a calibrated model; this says how far from it production starts."""
    trained = {r["seed"]: r["production_training"]["holdout_metrics"] for r in runs}
    control = [r for r in runs if r["scenario"] == "control"]
    early = [w for r in control for w in r["weeks"] if w["week"] < onset_week and w["realised_ece"] is not None]
    return {
        "holdout_auc": interval([m["model"]["auc"] for m in trained.values()]),
        "holdout_ece": interval([m["model"]["ece"] for m in trained.values()]),
        "holdout_ece_uncalibrated": interval([m["model_uncalibrated"]["ece"] for m in trained.values()]),
        "control_realised_ece_before_onset": interval([w["realised_ece"] for w in early]),
        "control_mean_p_minus_win_rate_before_onset": interval(
            [w["mean_probability"] - w["realised_win_rate"] for w in early]
        ),
        "control_cbpe_auc_error_before_onset": interval([r["cbpe"]["mean_auc_error_before_onset"] for r in control]),
    }


def plot(report: dict[str, Any], path: Path) -> Path:
    """Per scenario: weekly mean predicted vs oracle win probability per seed, the onset, alerts, and the share
    of seeds whose watched features drifted that week; last panel: AUC on post-onset deals scored after the
    alert-triggered refresh, production vs candidate vs the oracle (the ceiling), per seed."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, nothing to show

    runs = report["runs"]
    kinds = list(dict.fromkeys(r["scenario"] for r in runs))
    cols = 3
    rows = int(np.ceil((len(kinds) + 1) / cols))
    fig = Figure(figsize=(5.4 * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink")
    for ax, kind in zip(axes, kinds, strict=False):
        mine = [r for r in runs if r["scenario"] == kind]
        for i, run in enumerate(mine):
            color = colors[i % len(colors)]
            weeks = [w["week"] for w in run["weeks"]]
            ax.plot(weeks, [w["mean_probability"] for w in run["weeks"]], color=color, label=f"seed {run['seed']}")
            ax.plot(weeks, [w["mean_oracle_probability"] for w in run["weeks"]], color=color, ls=":", lw=1)
            first = run["all_rules"]["first_alert"]
            for alert in run["all_rules"]["alerts"]:
                y = run["weeks"][alert["week"] - 1]["mean_probability"]
                ax.scatter([alert["week"]], [y], marker="v" if alert == first else "x", s=50, color=color)
        share = ax.twinx()
        weeks = [w["week"] for w in mine[0]["weeks"]]
        drifted = [np.mean([bool(r["weeks"][k]["drifted_features"]) for r in mine]) for k in range(len(weeks))]
        share.bar(weeks, drifted, color="grey", alpha=0.15, width=0.8)
        share.set_ylim(0, 4)
        share.set_yticks([])
        ax.axvline(report["settings"]["onset_week"] - 0.5, color="grey", ls="--", lw=1)
        ax.set_title(f"{kind}: mean p (solid) vs oracle p (dotted)", fontsize=9)
        ax.set_xlabel("week (onset dashed; first alert v, other alerts x;\ngrey bar: share of seeds with a drifted "
                      "feature)", fontsize=7)  # fmt: skip
        ax.legend(fontsize=6, ncol=2)
    ax = axes[len(kinds)]
    styles = {"production": ("o", "tab:blue"), "candidate": ("^", "tab:orange"), "oracle": ("*", "tab:green")}
    for i, kind in enumerate(kinds):
        found = [((r.get("retrain") or {}).get("accuracy") or {}) for r in runs if r["scenario"] == kind]
        for j, (who, (marker, color)) in enumerate(styles.items()):
            values = [a[who]["auc"] for a in found if a and a[who]["auc"] is not None]
            ax.scatter([i + 0.15 * (j - 1)] * len(values), values, marker=marker, color=color, s=25,
                       label=who if i == 0 else None)  # fmt: skip
    ax.set_xticks(range(len(kinds)), kinds, rotation=20, fontsize=8)
    ax.set_ylabel("AUC", fontsize=8)
    ax.set_title("post-onset deals scored after the alert-triggered refresh", fontsize=9)
    ax.legend(fontsize=7)
    for extra in axes[len(kinds) + 1 :]:
        extra.set_visible(False)
    fig.savefig(path, dpi=110)
    return path
