"""How often the drift tests cry wolf, and how often they catch a 10% shift, at the configured thresholds.

Synthetic CRM-like windows (a heavy-tailed deal value, a count, a bounded score, an industry mix, a region,
and a win probability) are drawn again and again from the reference's own distribution (the false-alarm
rate: any feature or the prediction flagged in a no-drift window) and from planted 10% shifts:

- `value_x1.10`: every deal value 10% higher (a price increase): a location shift of log(1.1) = 0.095
  standard deviations of log value, the hardest case;
- `score_mean_plus_10pct`: a normal feature's mean up 10% (5 units on a mean of 50, sd 10: 0.5 sd);
- `industry_mix_10pt`: ten points of the industry mix move from the largest industry to the smallest;
- `win_rate_minus_10pct`: every predicted probability 10% lower (a downturn the model reflects).

Detection is the share of windows where the shifted feature is flagged. `monitor drift-check` writes it to
reports/monitoring_drift_check.json; tests/unit/test_monitoring_drift.py runs a small version of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.monitoring.drift import DriftThresholds, drift_report

INDUSTRIES = ("technology", "finance", "retail", "healthcare", "energy")
INDUSTRY_MIX = (0.30, 0.25, 0.20, 0.15, 0.10)
NUMERIC = ("value", "activities", "score")
CATEGORICAL = ("industry", "region")


def synthetic_window(n: int, rng: np.random.Generator, shift: str | None = None) -> pd.DataFrame:
    """One window of traffic, optionally with one planted shift (see the module docstring)."""
    mix = np.array(INDUSTRY_MIX)
    if shift == "industry_mix_10pt":
        mix = mix + np.array([-0.10, 0.0, 0.0, 0.0, 0.10])
    frame = pd.DataFrame(
        {
            "value": rng.lognormal(10.0, 1.0, n),
            "activities": rng.poisson(5.0, n),
            "score": rng.normal(50.0, 10.0, n),
            "industry": rng.choice(INDUSTRIES, n, p=mix),
            "region": rng.choice(("na", "emea", "apac"), n, p=(0.5, 0.3, 0.2)),
            "probability": rng.beta(2.0, 3.0, n),
        }
    )
    if shift == "value_x1.10":
        frame["value"] *= 1.10
    elif shift == "score_mean_plus_10pct":
        frame["score"] += 5.0
    elif shift == "win_rate_minus_10pct":
        frame["probability"] *= 0.90
    return frame


SHIFTED_FEATURE = {
    "value_x1.10": "value",
    "score_mean_plus_10pct": "score",
    "industry_mix_10pt": "industry",
    "win_rate_minus_10pct": "probability",
}


def _rate(repeats: int, flagged: Callable[[], bool]) -> float:
    return float(np.mean([flagged() for _ in range(repeats)]))


def error_rates(
    repeats: int = 200,
    n_reference: int = 5000,
    n_current: int = 500,
    seed: int = 0,
    thresholds: DriftThresholds | None = None,
    shifts: tuple[str, ...] = tuple(SHIFTED_FEATURE),
) -> dict[str, Any]:
    """False-alarm rate (no drift) and detection rate per planted shift over `repeats` windows each."""
    thresholds = thresholds or DriftThresholds()
    rng = np.random.default_rng(seed)
    reference = synthetic_window(n_reference, rng)

    def report(shift: str | None):
        window = synthetic_window(n_current, rng, shift)
        return drift_report(reference, window, NUMERIC, CATEGORICAL, "probability", thresholds)

    def any_flag() -> bool:
        r = report(None)
        return bool(r.drifted_features) or bool(r.prediction and r.prediction.drifted)

    def feature_flag(shift: str) -> bool:
        r = report(shift)
        if SHIFTED_FEATURE[shift] == "probability":
            return bool(r.prediction and r.prediction.drifted)
        return SHIFTED_FEATURE[shift] in r.drifted_features

    return {
        "repeats": repeats,
        "n_reference": n_reference,
        "n_current": n_current,
        "false_alarm_rate": _rate(repeats, any_flag),
        "detection_rate": {shift: _rate(repeats, lambda s=shift: feature_flag(s)) for shift in shifts},
    }
