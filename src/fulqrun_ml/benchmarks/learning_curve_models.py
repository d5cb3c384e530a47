"""The learning curve's models: logistic regression, LightGBM (tuned), the default MLP, and the ceilings.

Logistic regression and LightGBM are fits (`evaluation/*_baseline.py`). The MLP is trained by `train()` itself,
the path `fulqrun-ml train task=deal_win model=mlp` takes (pipeline, callbacks, recipe, evaluation): the curve's
rows reach it through `FramesDataModule`, and only the study's caps (epochs, patience, time, optimizer) are
overrides. All arms share the FeatureSpec fitted on the size's training rows and are scored uncalibrated on the
one holdout, so the curve compares models, not calibrators.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from pytorch_lightning.callbacks import EarlyStopping

from fulqrun_ml.datamodules.frames import FramesDataModule
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS, fit_lightgbm
from fulqrun_ml.evaluation.logistic_baseline import fit_logistic
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.spec import CategoricalFeature, FeatureSpec, FittedFeatureSpec, NumericFeature
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.train import train

MODELS = ("logistic", "lightgbm_tuned", "mlp")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class MLPSettings:
    """The study's caps on the default deal-win MLP (`task=deal_win model=mlp`, everything else as configured):
    AdamW lr and weight decay, batch size, early-stopping patience, and `max_epochs` / `max_seconds` so the whole
    benchmark fits its time budget."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    max_epochs: int = 25
    patience: int = 5
    max_seconds: float = 120.0


def arrays(spec: FittedFeatureSpec, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A frame encoded by the fitted spec, with its 0/1 label as `target` (what the baseline fits read)."""
    encoded = spec.encode(frame)
    encoded["target"] = frame["label"].to_numpy(dtype=np.float32)
    return encoded


def score_report(report: dict[str, float], oracle_auc: float) -> dict[str, float]:
    """The curve's numbers from a `binary_report`: AUC, its ratio to the oracle's, log loss and Brier."""
    return {
        "auc": round(report["auc"], 5),
        "ratio_to_oracle": round(report["auc"] / oracle_auc, 5),
        "log_loss": round(report["log_loss"], 5),
        "brier": round(report["brier"], 5),
    }


def score(probs: np.ndarray, labels: np.ndarray, oracle_auc: float) -> dict[str, float]:
    return score_report(binary_report(probs, labels), oracle_auc)


class FitRecorder(pl.Callback):
    """What one MLP fit did, in the curve's terms: epochs run, the best epoch by the checkpoint's own monitored
    metric, why training stopped (early stopping, max_epochs, or the time cap) and validation AUC at that epoch."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.result: dict[str, Any] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.history.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")})

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        monitor, mode = (checkpoint.monitor, checkpoint.mode) if checkpoint is not None else ("val/auc", "max")
        values = [h[monitor] for h in self.history]
        best = int(np.argmax(values) if mode == "max" else np.argmin(values)) if values else -1
        stopped = any(isinstance(c, EarlyStopping) and c.stopped_epoch > 0 for c in trainer.callbacks)
        epochs = len(self.history)
        self.result = {
            "epochs": epochs,
            "best_epoch": best + 1,
            "monitor": monitor,
            "stopped_by": "early_stopping" if stopped else "max_epochs" if epochs >= trainer.max_epochs else "time_cap",
            "val_auc": round(self.history[best]["val/auc"], 5) if values else float("nan"),
        }


def trainer_duration(seconds: float) -> str:
    """Lightning's `max_time` as "DD:HH:MM:SS" (a dict would reach the Trainer as a DictConfig, which it
    does not read), rounded up to whole seconds."""
    minutes, secs = divmod(int(np.ceil(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days:02d}:{hours:02d}:{minutes:02d}:{secs:02d}"


def mlp_config(out: Path, settings: MLPSettings, seed: int) -> DictConfig:
    """`task=deal_win model=mlp` as `fulqrun-ml train` composes it, with the study's caps as overrides."""
    overrides = [
        "task=deal_win",
        "model=mlp",
        "logger=none",
        f"seed={seed}",
        f"paths.root_dir={out}",
        f"paths.output_dir={out / 'run'}",
        "trainer.enable_progress_bar=false",
        "++trainer.enable_model_summary=false",
        f"trainer.max_epochs={settings.max_epochs}",
        f"++trainer.max_time='{trainer_duration(settings.max_seconds)}'",
        f"callbacks.early_stopping.patience={settings.patience}",
        f"task.module.optimizer.lr={settings.lr}",
        f"task.module.optimizer.weight_decay={settings.weight_decay}",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def fit_mlp(
    frames: dict[str, pd.DataFrame], spec: FittedFeatureSpec, settings: MLPSettings, seed: int, oracle_auc: float
) -> dict[str, Any]:
    """The default MLP trained by `train()` on exactly these rows and encoders; the run directory is temporary
    (the curve keeps numbers, not models). Scores are the network's own probabilities, like the other arms'."""
    recorder = FitRecorder()
    datamodule = FramesDataModule(frames, spec, batch_size=settings.batch_size)
    with tempfile.TemporaryDirectory(prefix="fulqrun-learning-curve-") as tmp:
        summary = train(mlp_config(Path(tmp), settings, seed), extra_callbacks=[recorder], datamodule=datamodule)
    return {
        **score_report(summary["metrics"]["model_uncalibrated"], oracle_auc),
        "fit_seconds": summary["seconds"]["fit"],
        **recorder.result,
    }


def fit_models(
    frames: dict[str, pd.DataFrame],
    models: tuple[str, ...],
    seed: int,
    oracle_auc: float,
    mlp: MLPSettings,
    mlp_skipped: str | None = None,
) -> dict[str, dict[str, Any]]:
    """Every requested model fitted on (train, val) with the FeatureSpec fitted on this train subset, and scored on
    the test frame. `mlp_skipped` says why the MLP is not run at this size (recorded in its place)."""
    spec = DEAL_WIN_FEATURES.fit(frames["train"])
    encoded = {split: arrays(spec, frames[split]) for split in SPLITS}
    labels = encoded["test"]["target"]

    def logistic() -> dict[str, Any]:
        fit = fit_logistic(encoded["train"])
        return {**score(fit.predict(encoded["test"]), labels, oracle_auc), "fit_seconds": round(fit.fit_seconds, 3)}

    def lightgbm_tuned() -> dict[str, Any]:
        gbm = fit_lightgbm(encoded["train"], encoded["val"], LIGHTGBM_SETTINGS["lightgbm_tuned"], seed)
        return {
            **score(gbm.predict(encoded["test"]), labels, oracle_auc),
            "fit_seconds": round(gbm.fit_seconds, 3),
            "trees": int(gbm.model.best_iteration_ or gbm.model.n_estimators),
        }

    def mlp_arm() -> dict[str, Any]:
        return {"skipped": mlp_skipped} if mlp_skipped else fit_mlp(frames, spec, mlp, seed, oracle_auc)

    arms: dict[str, Callable[[], dict[str, Any]]] = {
        "logistic": logistic,
        "lightgbm_tuned": lightgbm_tuned,
        "mlp": mlp_arm,
    }
    return {model: arms[model]() for model in models}


# Ceiling models: logistic regressions given latent truth (see learning_curve.py's docstring).
_Z = NumericFeature("latent_quality", "the deal's latent quality z (simulator truth)")
_REST = NumericFeature("latent_rest_logit", "true win logit minus 1.3 z: rep skill + company + value (truth)")
CEILING_SPECS: dict[str, FeatureSpec] = {
    # Only the truth the oracle reads (z, the rest of the logit) and the stage: should reach the oracle.
    "latent_truth_logistic": FeatureSpec(numeric=(_Z, _REST), categorical=(CategoricalFeature("stage", "stage"),)),
    "observed_plus_z_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, _Z), categorical=DEAL_WIN_FEATURES.categorical
    ),
    "observed_plus_rest_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, _REST), categorical=DEAL_WIN_FEATURES.categorical
    ),
    # Recorded by the CRM but unusable without history (see attach_meddpicc): what would a history be worth?
    "observed_plus_meddpicc_logistic": FeatureSpec(
        numeric=(*DEAL_WIN_FEATURES.numeric, NumericFeature("meddpicc_score", "final MEDDPICC score")),
        categorical=DEAL_WIN_FEATURES.categorical,
    ),
}


def ceilings(frames: dict[str, pd.DataFrame], oracle_auc: float) -> dict[str, dict[str, Any]]:
    """Logistic regressions on the full training split given latent truth, scored on the holdout."""
    out = {}
    for name, spec in CEILING_SPECS.items():
        if any(column not in frames["train"].columns for column in spec.names):
            continue  # e.g. no MEDDPICC score in a frame not loaded by load_deal_win
        fitted = spec.fit(frames["train"])
        fit = fit_logistic(arrays(fitted, frames["train"]))
        probs = fit.predict(arrays(fitted, frames["test"]))
        out[name] = {
            **score(probs, frames["test"]["label"].to_numpy(), oracle_auc),
            "fit_seconds": round(fit.fit_seconds, 3),
            "features": spec.names,
        }
    return out
