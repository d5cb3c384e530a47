"""Hyperparameter sweeps (AutoML) with Optuna: search model family and hyperparameters, prune, register.

`fulqrun-ml train -m hparams_search=deal_win_optuna` runs here. Why Optuna directly and not Hydra's
Optuna sweeper plugin: the plugin pins Optuna 2.x and never hands the trial to the training loop, so
it cannot prune; here each trial is a normal composed `train` config, reported epoch by epoch to a
MedianPruner, and the study optimises the *validation* metric (the holdout stays untouched until the
best trial is retrained, evaluated and registered as a `candidate`).

The search space is a config (`configs/hparams_search/<name>.yaml`):
    params:
      model: {type: categorical, choices: [mlp, tabm]}          # a config group
      task.module.optimizer.lr: {type: float, low: 3e-4, high: 1e-2, log: true}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.training.sweep_storage import open_study, study_place, trials_left, wait_for_other_workers

log = logging.getLogger(__name__)


class OptunaPruning(pl.Callback):
    """Reports the monitored validation metric after each epoch and stops pruned trials.

    Hand-written (10 lines) because optuna-integration's callback targets the `lightning` namespace,
    not `pytorch_lightning`, which this project uses."""

    def __init__(self, trial: optuna.Trial, monitor: str, direction: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.best: float | None = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if self.best is None or self.sign * value > self.sign * self.best:
            self.best = value
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {trainer.current_epoch} with {self.monitor}={value:.4f}")


def format_value(value: Any) -> str:
    """A Hydra override value: lists without spaces, everything else as text."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def suggest(trial: optuna.Trial, name: str, spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "float":
        return trial.suggest_float(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "int":
        return trial.suggest_int(name, spec["low"], spec["high"], log=spec.get("log", False))
    if kind == "categorical":
        choices = [format_value(c) for c in spec["choices"]]
        return trial.suggest_categorical(name, choices)
    raise ValueError(f"search parameter '{name}': unknown type '{kind}' (float, int or categorical)")


def run_sweep(
    search: DictConfig,
    compose_train: Callable[[list[str]], DictConfig],
    train_fn: Callable[..., dict[str, Any]],
    output_dir: Path,
    base_overrides: list[str],
) -> dict[str, Any]:
    """Run the study; returns the summary (also written to output_dir/sweep.json and sweep.md)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    params = OmegaConf.to_container(search.params, resolve=True)
    place = study_place(search)
    study = open_study(search, place)

    def objective(trial: optuna.Trial) -> float:
        overrides = [f"{name}={suggest(trial, name, spec)}" for name, spec in params.items()]
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("worker", place.worker)
        cfg = compose_train([*base_overrides, *overrides, f"paths.output_dir={output_dir}/trial_{trial.number}"])
        pruning = OptunaPruning(trial, search.metric, search.direction)
        train_fn(cfg, extra_callbacks=[pruning])
        if pruning.best is None:
            raise RuntimeError(f"trial {trial.number} never reported {search.metric}")
        return pruning.best

    # Several workers share `n_trials`: each stops once the study holds that many trials (at most one extra
    # per worker can start in the same instant; Optuna's MaxTrialsCallback documents the same overshoot).
    if trials_left(study, search.n_trials):
        stop_at_total = optuna.study.MaxTrialsCallback(search.n_trials, states=None)
        study.optimize(objective, n_trials=search.n_trials, catch=(RuntimeError,), callbacks=[stop_at_total])
    if place.role == "leader" and place.shared:
        wait_for_other_workers(study, timeout_s=search.get("wait_timeout_s", 3600))
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "params": t.params,
            "epochs_reported": len(t.intermediate_values),
            "worker": t.user_attrs.get("worker", 0),
        }
        for t in study.trials
    ]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError("no sweep trial completed")
    summary = {
        "study": search.name,
        "metric": search.metric,
        "direction": search.direction,
        "best_trial": study.best_trial.number,
        "best_value": study.best_value,
        "best_overrides": study.best_trial.user_attrs["overrides"],
        "n_complete": len(complete),
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "storage": place.describe(),
        "workers": sorted({t["worker"] for t in trials}),
        "trials": trials,
    }
    (output_dir / "sweep.json").write_text(json.dumps(summary, indent=2, default=str))
    (output_dir / "sweep.md").write_text(sweep_table(summary))
    plot_sweep(summary, output_dir / "sweep.png")
    return summary


def sweep_table(summary: dict[str, Any]) -> str:
    names = sorted({k for t in summary["trials"] for k in t["params"]})
    lines = [
        f"# Sweep `{summary['study']}`: {summary['direction']} {summary['metric']}",
        "",
        f"Best trial {summary['best_trial']}: {summary['best_value']:.4f} "
        f"({summary['n_complete']} complete, {summary['n_pruned']} pruned)",
        "",
        "| trial | state | " + " | ".join(names) + f" | {summary['metric']} |",
        "|---" * (len(names) + 3) + "|",
    ]
    for t in summary["trials"]:
        value = "" if t["value"] is None else f"{t['value']:.4f}"
        cells = [str(t["params"].get(n, "")) for n in names]
        lines.append(f"| {t['number']} | {t['state']} | " + " | ".join(cells) + f" | {value} |")
    return "\n".join(lines) + "\n"


def plot_sweep(summary: dict[str, Any], path: Path) -> None:
    """Metric per trial (pruned trials marked) and the running best."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    done = [t for t in summary["trials"] if t["value"] is not None]
    ax.scatter([t["number"] for t in done], [t["value"] for t in done], label="complete")
    best, running = [], None
    better = max if summary["direction"] == "maximize" else min
    for t in done:
        running = t["value"] if running is None else better(running, t["value"])
        best.append(running)
    ax.plot([t["number"] for t in done], best, color="black", label="best so far")
    pruned = [t["number"] for t in summary["trials"] if t["state"] == "PRUNED"]
    for number in pruned:
        ax.axvline(number, color="grey", alpha=0.3)
    ax.set_xlabel("trial (grey lines: pruned)")
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"sweep {summary['study']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
