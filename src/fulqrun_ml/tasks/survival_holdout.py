"""Holdout evaluation of a close-timing survival model next to its Kaplan-Meier baselines.

Calibration: one temperature T on the hazard logits (h = sigmoid(logit / T)), fitted on the validation split's
logistic-hazard NLL and exported inside the graph. One scalar cannot reorder rows, so concordance is unchanged,
and it cannot break monotonicity of the curve; it only sharpens or flattens every bin's hazard, which is where
an over-confident network is usually off.

`evaluate_survival_run` scores a finished run's network on any frame of holdout rows with everything else it
needs read from the run (survival.json: edges, temperature, the training split's KM curves), so the leaderboard
can call it without the training data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.optimize import minimize_scalar
from torch import nn

from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.calibration import rows_hash
from fulqrun_ml.tasks.holdout import HoldoutEvaluation
from fulqrun_ml.tasks.kaplan_meier import StageKaplanMeier
from fulqrun_ml.tasks.survival import logistic_hazard_nll, predict_curves, predict_hazard_logits
from fulqrun_ml.tasks.survival_grid import bin_index, validate_bin_edges
from fulqrun_ml.tasks.survival_metrics import survival_report

SURVIVAL_FILE = "survival.json"
LOG_T_BOUNDS = (-3.0, 3.0)  # T in [0.05, 20]: beyond that the network, not its calibration, is broken


def fit_hazard_temperature(logits: np.ndarray, durations: np.ndarray, events: np.ndarray, edges: np.ndarray) -> float:
    """The T minimising the validation NLL of sigmoid(logit / T) (a bounded 1-D search on log T)."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    bins = torch.as_tensor(bin_index(durations, edges))
    ev = torch.as_tensor(np.asarray(events, dtype=np.float64))
    if z.shape[0] == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(logistic_hazard_nll(z / float(np.exp(log_t)), bins, ev))

    result = minimize_scalar(nll, bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x)) if result.success and result.fun <= nll(0.0) else 1.0


def _truth(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    for column in ("duration_days", "label"):
        if column not in frame:
            raise KeyError(f"survival holdout frame lacks column '{column}'")
    return frame["duration_days"].to_numpy(dtype=np.float64), frame["label"].to_numpy() > 0.5


def score_curves(
    model_cdf: np.ndarray, km: StageKaplanMeier, holdout: pd.DataFrame, edges: np.ndarray
) -> dict[str, dict[str, Any]]:
    """The model's curves and both KM baselines scored by the same `survival_report`."""
    d, ev = _truth(holdout)
    return {
        "model": survival_report(model_cdf, d, ev, edges),
        "km_stage": survival_report(km.predict(holdout), d, ev, edges),
        "km_pooled": survival_report(km.predict_pooled(len(holdout)), d, ev, edges),
    }


def evaluate_survival(
    net: nn.Module, spec: FittedFeatureSpec, frames: dict[str, pd.DataFrame], edges: np.ndarray
) -> tuple[HoldoutEvaluation, dict[str, Any]]:
    """Temperature on validation, KM on training, everything scored on test. Returns the evaluation and the
    survival.json record (edges, temperature, KM curves) that export and `evaluate_survival_run` read."""
    val, holdout = frames["val"], frames["test"]
    d_val, ev_val = _truth(val)
    temperature = fit_hazard_temperature(predict_hazard_logits(net, spec.encode(val)), d_val, ev_val, edges)
    km = StageKaplanMeier.fit(frames["train"], edges)
    encoded = spec.encode(holdout)
    cdf, expected = predict_curves(net, encoded, edges, temperature)
    metrics = score_curves(cdf, km, holdout, edges)
    d, ev = _truth(holdout)
    metrics["model_uncalibrated"] = survival_report(predict_curves(net, encoded, edges)[0], d, ev, edges)
    record = {
        "bin_edges": [float(e) for e in edges],
        "horizon_days": float(edges[-1]),
        "calibration": {
            "method": "temperature",
            "temperature": temperature,
            # What the fit saw: the validation rows' (duration, event) pairs, hashed like every calibrator's rows.
            "fitted_on": {"split": "val", "rows": len(val), "hash": rows_hash(np.column_stack([d_val, ev_val]))},
        },
        "kaplan_meier": km.to_record(),
        "outputs": {"close_probability": "P(closed by the end of bin k), [N, K]", "expected_days": "[N]"},
    }
    return HoldoutEvaluation(metrics, {"model": expected}, record["calibration"]), record


def load_survival_record(run_dir: Path) -> dict[str, Any]:
    """survival.json of a run or model version, with its edges validated."""
    record = json.loads((Path(run_dir) / SURVIVAL_FILE).read_text())
    validate_bin_edges(record["bin_edges"], record["horizon_days"], field=f"{SURVIVAL_FILE}: bin_edges")
    return record


def evaluate_survival_curves(record: dict[str, Any], cdf: np.ndarray, holdout: pd.DataFrame) -> dict[str, dict]:
    """Curves a run's network gave on `holdout` rows (raw features + label + duration_days + stage_index), scored
    next to both KM baselines fitted on that run's training split (read from its survival.json `record`)."""
    edges = np.asarray(record["bin_edges"], dtype=np.float64)
    return score_curves(cdf, StageKaplanMeier.from_record(record["kaplan_meier"], edges), holdout, edges)


def evaluate_survival_run(
    run_dir: Path, holdout: pd.DataFrame, net: nn.Module, spec: FittedFeatureSpec
) -> dict[str, dict[str, Any]]:
    """The metric dict of a finished survival run's network (loaded by the caller, e.g. with export's
    `load_trained_net`) on `holdout` rows: model (calibrated as exported) and both KM baselines."""
    record = load_survival_record(Path(run_dir))
    cdf, _ = predict_curves(net, spec.encode(holdout), record["bin_edges"], record["calibration"]["temperature"])
    return evaluate_survival_curves(record, cdf, holdout)
