"""The MEDDPICC leaderboard ablation: what the qualification history and the notes add to deal win.

Four arms, one model family at a time, on the same rows of each seed's simulated CRM (`meddpicc_data.py`):

- tabular: the deal-win features every model uses today (`DEAL_WIN_FEATURES`);
- + MEDDPICC history: completeness, scores and trajectory read point-in-time (`MEDDPICC_HISTORY_FEATURES`);
- + text: the notes as keyword cues (`DEAL_NOTE_FEATURES`) and as sentence embeddings (`meddpicc_text.py`);
- + both.

Each arm is scored on the seed's time-split holdout by AUC, AUC / oracle AUC (the simulator's Bayes posterior
on the same rows), ECE (uncalibrated, next to the ECE a perfectly calibrated model with the same probabilities
would show on that many rows: its noise floor), ECE after temperature scaling fitted on the validation rows (the
task's default calibration), and log loss. Seeds give the spread: the summary is the mean
and a 95% t-interval over seeds. The simple baseline is the tabular arm itself, measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fulqrun_ml.benchmarks.meddpicc_data import KEYS, ORACLE, AblationData
from fulqrun_ml.benchmarks.meddpicc_text import NOTE_EMBEDDING_FEATURES, make_encoder, note_embedding_features
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS, fit_lightgbm
from fulqrun_ml.evaluation.logistic_baseline import fit_logistic
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.meddpicc_features import MEDDPICC_HISTORY_FEATURES
from fulqrun_ml.features.meddpicc_notes import DEAL_NOTE_FEATURES
from fulqrun_ml.features.spec import FeatureSpec, FittedFeatureSpec
from fulqrun_ml.tasks.calibration import fit_temperature
from fulqrun_ml.tasks.metrics import binary_report, ece_noise_floor

TARGET_RATIO = 0.96  # issue 18: deal-win AUC >= 0.96 x oracle with MEDDPICC history and text


def combine(*specs: FeatureSpec) -> FeatureSpec:
    """One spec holding every feature of `specs`, in order (the categoricals are the tabular ones)."""
    return FeatureSpec(
        numeric=tuple(f for s in specs for f in s.numeric), categorical=tuple(f for s in specs for f in s.categorical)
    )


TEXT_FEATURES = combine(DEAL_NOTE_FEATURES, NOTE_EMBEDDING_FEATURES)
ARMS: dict[str, FeatureSpec] = {
    "tabular": DEAL_WIN_FEATURES,
    "tabular+meddpicc_history": combine(DEAL_WIN_FEATURES, MEDDPICC_HISTORY_FEATURES),
    "tabular+text": combine(DEAL_WIN_FEATURES, TEXT_FEATURES),
    "tabular+both": combine(DEAL_WIN_FEATURES, MEDDPICC_HISTORY_FEATURES, TEXT_FEATURES),
}
MODELS = ("logistic", "lightgbm_tuned")


def with_embeddings(data: AblationData, cache_dir: str | Path | None) -> pd.DataFrame:
    """The seed's frame with the note-embedding columns joined on (deal, as_of)."""
    encoder = make_encoder(data.tables, cache_dir)
    embedded = note_embedding_features(data.tables, data.frame[KEYS], data.val_start, encoder)
    return data.frame.merge(embedded, on=KEYS)


def _arrays(spec: FittedFeatureSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    encoded = spec.encode(frame)
    encoded["target"] = frame["label"].to_numpy(dtype=np.float32)
    return encoded


def score_arm(frame: pd.DataFrame, spec: FeatureSpec, model: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Holdout probabilities of `model` fitted on the train rows (LightGBM early-stopped on val) with `spec`: raw,
    and temperature-calibrated on the validation rows (the deal-win task's default calibration, unweighted here)."""
    parts = {s: frame[frame["split"] == s] for s in ("train", "val", "test")}
    fitted = spec.fit(parts["train"])
    encoded = {s: _arrays(fitted, part) for s, part in parts.items()}
    fits: dict[str, Callable[[], Any]] = {
        "logistic": lambda: fit_logistic(encoded["train"]),
        "lightgbm_tuned": lambda: fit_lightgbm(
            encoded["train"], encoded["val"], LIGHTGBM_SETTINGS["lightgbm_tuned"], seed
        ),
    }
    fit = fits[model]()
    probs = {s: np.clip(fit.predict(encoded[s]), 1e-6, 1 - 1e-6) for s in ("val", "test")}
    logit = {s: np.log(p / (1.0 - p)) for s, p in probs.items()}
    temperature = fit_temperature(logit["val"], encoded["val"]["target"])
    return probs["test"], 1.0 / (1.0 + np.exp(-logit["test"] / temperature))


def run_seed(
    frame: pd.DataFrame, seed: int, arms: dict[str, FeatureSpec] = ARMS, oracle_column: str = ORACLE
) -> dict[str, Any]:
    """Every arm x model on one seed's frame (with embeddings): metrics against the oracle on the same rows."""
    test = frame[frame["split"] == "test"]
    labels = test["label"].to_numpy()
    oracle = binary_report(test[oracle_column].to_numpy(), labels)
    out: dict[str, Any] = {
        "seed": seed,
        "rows": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test")},
        "holdout_positive_rate": round(float(labels.mean()), 4),
        "oracle": {"auc": round(oracle["auc"], 5), "ece": round(oracle["ece"], 5)},
        "arms": {},
    }
    for arm, spec in arms.items():
        for model in MODELS:
            t0 = time.perf_counter()
            probs, calibrated = score_arm(frame, spec, model, seed)
            report = binary_report(probs, labels)
            floor = ece_noise_floor(probs, draws=200, seed=seed)
            calibrated_floor = ece_noise_floor(calibrated, draws=200, seed=seed)
            out["arms"].setdefault(arm, {})[model] = {
                "auc": round(report["auc"], 5),
                "ratio_to_oracle": round(report["auc"] / oracle["auc"], 5),
                "ece": round(report["ece"], 5),
                "ece_noise_floor_p90": round(floor["p90"], 5),
                "ece_calibrated": round(binary_report(calibrated, labels)["ece"], 5),
                "ece_calibrated_noise_floor_p90": round(calibrated_floor["p90"], 5),
                "log_loss": round(report["log_loss"], 5),
                "seconds": round(time.perf_counter() - t0, 2),
            }
    return out


def interval(values: list[float]) -> dict[str, float]:
    """Mean and 95% t-interval over seeds (no interval from a single seed)."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": round(mean, 5), "low": float("nan"), "high": float("nan"), "n": int(x.size)}
    half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return {"mean": round(mean, 5), "low": round(mean - half, 5), "high": round(mean + half, 5), "n": int(x.size)}


def summarise(
    per_seed: list[dict[str, Any]],
    arms: tuple[str, ...] = tuple(ARMS),
    baseline: str = "tabular",
    goal_arm: str = "tabular+both",
) -> dict[str, Any]:
    """Per arm and model: AUC, ratio to the oracle, ECE and its noise floor, each as mean and interval over seeds;
    the lift of each arm over the baseline arm (paired by seed); whether the issue's target is met by `goal_arm`."""
    summary: dict[str, Any] = {}
    for arm in arms:
        for model in MODELS:
            runs = [s["arms"][arm][model] for s in per_seed]
            base = [s["arms"][baseline][model] for s in per_seed]
            entry = {
                m: interval([r[m] for r in runs])
                for m in ("auc", "ratio_to_oracle", "ece", "ece_noise_floor_p90", "ece_calibrated")
            }
            entry["ratio_lift_over_tabular"] = interval(
                [r["ratio_to_oracle"] - b["ratio_to_oracle"] for r, b in zip(runs, base, strict=True)]
            )
            entry["ece_within_noise_floor_seeds"] = sum(r["ece"] <= r["ece_noise_floor_p90"] for r in runs)
            entry["n_seeds"] = len(runs)
            entry["ece_calibrated_within_noise_floor_seeds"] = sum(
                r["ece_calibrated"] <= r["ece_calibrated_noise_floor_p90"] for r in runs
            )
            summary.setdefault(arm, {})[model] = entry
    best = max(
        ((arm, model) for arm in arms for model in MODELS), key=lambda k: summary[k[0]][k[1]]["ratio_to_oracle"]["mean"]
    )
    both = max(MODELS, key=lambda m: summary[goal_arm][m]["ratio_to_oracle"]["mean"])
    ratio = summary[goal_arm][both]["ratio_to_oracle"]
    return {
        "arms": summary,
        "oracle_auc": interval([s["oracle"]["auc"] for s in per_seed]),
        "best": {"arm": best[0], "model": best[1]},
        "target": {
            "ratio_to_oracle": TARGET_RATIO,
            "arm": goal_arm,
            "model": both,
            "measured": ratio,
            "met": bool(ratio["mean"] >= TARGET_RATIO),
            "gap": round(TARGET_RATIO - ratio["mean"], 5),
        },
    }
