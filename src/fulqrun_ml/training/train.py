"""`fulqrun-ml train`: compose a Hydra config, train a LightningModule, evaluate, leave a complete run dir.

Every tabular task takes this one path: deal win, close timing, lead conversion, account churn/expansion
(CRM snapshots, `data/datamodule.py`) and any user table (`data=table`, `data/table_datamodule.py`). The
datamodule says whether the target is binary, a regression or a survival target; the task config supplies the
LightningModule for that kind (`task.module`, or `task.modules.<kind>` for `kind: auto`). A survival task
(`tasks/survival.py`) also names its datamodule (`task.datamodule`, which hands over (event, duration)) and its
time bins (`task.bin_edges`: the backbone gets one hazard logit per bin).

The run directory (cfg.paths.output_dir) is what export reads; it holds:
  checkpoints/            Lightning checkpoints (best by the monitored validation metric, last)
  net_state.pt            the best backbone's weights (plain state_dict, no Lightning needed to load)
  feature_spec.json       the fitted FeatureSpec (encoders)
  calibration.json        binary: post-hoc calibration fitted on validation (`task.calibration`)
  target.json             regression: the target scaling the network learnt in
  survival.json           survival: bin edges, the hazard temperature fitted on validation, the training split's
                          Kaplan-Meier curves (per stage, pooled) that the baselines in metrics.json use
  holdout.parquet         the test split: raw features, label, baseline columns (and oracle on simulated data)
  open_deals.parquet      the rows serving would score today (per task: open_leads, customers, ...)
  column_types.json       user tables: the inferred kind of every column, and why
  metrics.json            holdout metrics of the model next to its baselines (rep, oracle, LightGBM, ...):
                          binary -> auc, log_loss, brier, ece, accuracy; regression -> mae, rmse, r2, concordance;
                          survival -> concordance, integrated_brier, nll, ece_30d, ece_horizon, mae_median_days, ...
  net_config.json         the backbone's constructor config (what `init_from` warm starts need)
  plots/                  binary: calibration.png (reliability diagram) and lift.png on the holdout
  run_info.json           lineage: resolved config, net config, data hash and window, git commit, W&B run id
                          and artifacts, parent version (init_from), resumed checkpoint, sizes, timings;
                          written last, so its presence marks a finished run

Resume: `ckpt_path=last` (in the interrupted run's output_dir) or a checkpoint/run path continues
training from it (see checkpointing.py). Incremental: `init_from=<model>@<version>` warm-starts the
backbone from a registry version (see warm_start.py). W&B extras: see wandb_logging.py.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from fulqrun_ml.data.datamodule import SPLITS, TabularDataModuleBase
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.evaluation.lightgbm_baseline import lightgbm_holdout_report
from fulqrun_ml.project import git_commit
from fulqrun_ml.tasks.holdout import HoldoutEvaluation, evaluate_binary, evaluate_regression
from fulqrun_ml.tasks.regression import MONITORED as REGRESSION_MONITORED
from fulqrun_ml.tasks.survival import MONITORED as SURVIVAL_MONITORED
from fulqrun_ml.tasks.survival_grid import validate_bin_edges
from fulqrun_ml.tasks.survival_holdout import SURVIVAL_FILE, evaluate_survival
from fulqrun_ml.training.checkpointing import RNGStateCheckpoint, resolve_ckpt_path
from fulqrun_ml.training.holdout_plots import save_holdout_plots
from fulqrun_ml.training.wandb_logging import experiment_name, log_artifacts, log_holdout_report, tag_run
from fulqrun_ml.training.warm_start import check_feature_compatibility, load_parent, warm_start

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Train and evaluate one model; returns the run summary also written to run_info.json.

    A task config may name its own `runner` (a dotted path to `run(cfg, extra_callbacks) -> summary`) when
    its data or outputs do not fit the tabular path below (forecasting, sequence models); every
    runner leaves the same kind of run directory and is reached through the same `fulqrun-ml train`."""
    runner = cfg.task.get("runner")
    if runner:
        return get_method(runner)(cfg, extra_callbacks)
    t_start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    edges = survival_edges(cfg.task)  # checked before any data is built: a bad grid fails in milliseconds
    datamodule: TabularDataModuleBase = instantiate(cfg.data, **datamodule_override(cfg.task))
    datamodule.setup("fit")
    spec = datamodule.spec
    kind = datamodule.target_kind
    if (kind == "survival") != (edges is not None):
        raise FulqrunMLError(f"task '{cfg.task.name}' (kind {cfg.task.get('kind', 'binary')}) got {kind} data")
    t_data = time.perf_counter()
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    if edges is not None:  # one hazard logit per time bin; recorded so export rebuilds the same backbone
        net_config["n_outputs"] = len(edges) - 1
    net = instantiate(
        net_config,
        n_continuous=len(spec.spec.numeric),
        cardinalities=spec.cardinalities,
        _convert_="all",
    )
    parent = None
    if cfg.get("init_from"):
        parent = load_parent(Path(cfg.paths.models_dir), cfg.init_from)
        check_feature_compatibility(parent.spec, spec, cfg.init_from)
        warm_start(net, parent, net_config, cfg.init_from)
    task = instantiate(task_module_config(cfg.task, kind), net=net)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] if cfg.get("logger") else []
    callbacks = (
        [instantiate(monitored(c, kind)) for c in cfg.get("callbacks", {}).values()] if cfg.get("callbacks") else []
    )
    callbacks += extra_callbacks or []  # e.g. a sweep's pruning callback
    callbacks.append(RNGStateCheckpoint())  # exact resume: Lightning does not checkpoint the RNGs
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    config = OmegaConf.to_container(cfg, resolve=True)
    experiment = experiment_name()
    try:
        checkpoint_dir = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), checkpoint_dir)
        wandb_run = next((lg.experiment for lg in loggers if isinstance(lg, WandbLogger)), None)
        if wandb_run is not None:
            tag_run(wandb_run, cfg.task.name, cfg.model.name, experiment)
        for lg in loggers:
            lg.log_hyperparams({"config": config, "data_hash": datamodule.data_hash, "sizes": datamodule.sizes})
        # Our own checkpoints hold the hyperparameters (Hydra partials), which need full unpickling.
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=False if ckpt_path else None)
        t_fit = time.perf_counter()
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
        if trainer.world_size > 1:  # DDP: the rest (offline evaluation, files) is rank 0's alone
            end_distributed(trainer)
            if not trainer.is_global_zero:
                return {"run_dir": str(out), "global_rank": trainer.global_rank}

        survival_record = None
        if edges is not None:
            evaluation, survival_record = evaluate_survival(task.net, spec, datamodule.frames, edges)
        else:
            evaluation = evaluate_holdout(task.net, datamodule, cfg.task.get("calibration", "temperature"))
        metrics = dict(evaluation.metrics)
        lightgbm_setting = cfg.task.get("compare_lightgbm")
        if lightgbm_setting:
            metrics["lightgbm"] = lightgbm_comparison(datamodule, lightgbm_setting, cfg.seed)
        for lg in loggers:
            lg.log_metrics({f"holdout/{who}/{k}": v for who, m in metrics.items() for k, v in m.items()})

        holdout = datamodule.frames["test"]
        run_id = next((lg.experiment.id for lg in loggers if hasattr(lg.experiment, "id")), None)
        summary = {
            "run_dir": str(out),
            "world_size": trainer.world_size,
            "task": cfg.task.name,
            "target_kind": kind,
            "model": cfg.model.name,
            "net_config": net_config,
            "config": config,
            "data_hash": datamodule.data_hash,
            "git_commit": git_commit(),
            "wandb_run_id": run_id,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "sizes": datamodule.sizes,
            "leakage_audit": datamodule.leakage_audit,
            "lightgbm_setting": lightgbm_setting,
            "experiment": experiment,
            "data_window": data_window(datamodule.frames),
            "parent": parent.lineage if parent else None,
            "init_from": cfg.get("init_from"),
            "resumed_from": ckpt_path,
        }
        torch.save(task.net.state_dict(), out / "net_state.pt")
        spec.save(out / "feature_spec.json")
        if survival_record is not None:  # the hazard temperature lives here, with the grid it applies to
            (out / SURVIVAL_FILE).write_text(json.dumps(survival_record, indent=2))
        elif evaluation.calibration is not None:
            (out / "calibration.json").write_text(json.dumps(evaluation.calibration, indent=2))
        if datamodule.target_scaling is not None:
            datamodule.target_scaling.save(out / "target.json")
        holdout.drop(columns=["split"], errors="ignore").to_parquet(out / "holdout.parquet", index=False)
        if datamodule.scoring_rows is not None and datamodule.scoring_file:
            datamodule.scoring_rows.to_parquet(out / datamodule.scoring_file, index=False)
        column_types = getattr(datamodule, "column_types", None)
        if column_types is not None:
            (out / "column_types.json").write_text(json.dumps(column_types, indent=2))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "net_config.json").write_text(json.dumps(net_config, indent=2))
        summary["wandb_artifacts"] = None
        if kind == "binary":
            labels = holdout["label"].to_numpy()
            plots = save_holdout_plots(evaluation.scores, labels, out / "plots")
            if wandb_run is not None:
                log_holdout_report(wandb_run, holdout, evaluation.scores, plots)
        if wandb_run is not None:
            summary["wandb_artifacts"] = log_artifacts(wandb_run, out, summary, metrics)
        summary["seconds"] = {
            "data": round(t_data - t_start, 3),
            "fit": round(t_fit - t_data, 3),
            "total": round(time.perf_counter() - t_start, 3),
        }
        (out / "run_info.json").write_text(json.dumps(summary, indent=2, default=str))
        log.info("holdout %s", {who: headline(m, kind) for who, m in metrics.items()})
        return {**summary, "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()


def survival_edges(task_cfg: DictConfig) -> np.ndarray | None:
    """A survival task's validated bin edges (None for other kinds)."""
    if task_cfg.get("kind") != "survival":
        return None
    if task_cfg.get("bin_edges") is None or task_cfg.get("horizon_days") is None:
        raise FulqrunMLError(f"task '{task_cfg.name}' is a survival task: set task.bin_edges and task.horizon_days")
    return validate_bin_edges(list(task_cfg.bin_edges), float(task_cfg.horizon_days))


def datamodule_override(task_cfg: DictConfig) -> dict[str, str]:
    """A task that needs its own datamodule class (survival: a two-column target) names it in
    `task.datamodule`; it replaces `data._target_` so any data config (synthetic, parquet, postgres) works."""
    target = task_cfg.get("datamodule")
    return {"_target_": target} if target else {}


def task_module_config(task_cfg: DictConfig, kind: str) -> DictConfig:
    """The LightningModule config for the datamodule's target kind.

    A task with a fixed kind (`kind: binary`, the default, or `regression`) has one `module` and refuses data
    of the other kind; a task with `kind: auto` (user tables) has `modules.binary` and `modules.regression`."""
    declared = task_cfg.get("kind", "binary")
    if declared == "auto":
        if kind not in task_cfg.modules:
            raise FulqrunMLError(f"task '{task_cfg.name}' has no module for a {kind} target")
        return task_cfg.modules[kind]
    if declared != kind:
        raise FulqrunMLError(
            f"task '{task_cfg.name}' trains a {declared} model but the data's target is {kind}; "
            f"choose a matching task (e.g. task=table for data=table)"
        )
    return task_cfg.module


def monitored(callback_cfg: DictConfig, kind: str) -> DictConfig:
    """Checkpoint/early-stopping configs watch `val/auc` by default, which a regression or a survival model never
    logs: for a regression run such a callback watches `val/rmse` (lower is better) instead, for a survival run
    `val/loss` (the logistic-hazard NLL). Metrics the kind logs (regression: `val/rmse`, `val/mae`, `val/loss`;
    survival: `val/loss`, `val/concordance`) chosen by an experiment are kept."""
    monitor = callback_cfg.get("monitor") if isinstance(callback_cfg, DictConfig) else None
    fallback = {"regression": ("val/rmse", REGRESSION_MONITORED), "survival": ("val/loss", SURVIVAL_MONITORED)}
    if kind not in fallback or monitor is None or monitor in fallback[kind][1]:
        return callback_cfg
    adjusted = callback_cfg.copy()
    adjusted.monitor, adjusted.mode = fallback[kind][0], "min"
    return adjusted


def evaluate_holdout(net: torch.nn.Module, datamodule: TabularDataModuleBase, calibration: str) -> HoldoutEvaluation:
    """Calibrate on validation (binary) and score the model and every baseline column on the test split."""
    if datamodule.target_kind == "regression":
        return evaluate_regression(
            net, datamodule.spec, datamodule.target_scaling, datamodule.frames, datamodule.baseline_columns
        )
    return evaluate_binary(net, datamodule.spec, datamodule.frames, datamodule.baseline_columns, calibration)


def lightgbm_comparison(datamodule: TabularDataModuleBase, setting: str, seed: int) -> dict[str, float]:
    """LightGBM on exactly this run's encoded splits: the reference the networks are expected to match."""
    arrays = {s: {**datamodule.spec.encode(datamodule.frames[s]), "target": datamodule.target(s)} for s in SPLITS}
    scaling = datamodule.target_scaling
    return lightgbm_holdout_report(
        arrays,
        datamodule.frames["test"]["label"].to_numpy(dtype=float),
        setting,
        seed,
        datamodule.target_kind,
        decode=scaling.decode if scaling is not None else None,
    )


def headline(metrics: dict[str, float], kind: str) -> str:
    if kind == "survival":
        return (
            f"C {metrics['concordance']:.4f} IBS {metrics['integrated_brier']:.4f} "
            f"MAE(median) {metrics['mae_median_days']:.4g}"
        )
    return f"AUC {metrics['auc']:.4f}" if kind == "binary" else f"RMSE {metrics['rmse']:.4g} MAE {metrics['mae']:.4g}"


def end_distributed(trainer: pl.Trainer) -> None:
    """Leave the process group once every process has finished testing, so the offline holdout evaluation
    on rank 0 (torchmetrics) computes locally instead of waiting for peers that have already exited."""
    trainer.strategy.barrier("fit and test done")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def data_window(frames: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The as_of range and row count of each split, recorded in lineage and on the model card (user tables
    without a time column record row counts only)."""
    window = {}
    for split, frame in frames.items():
        if len(frame):
            window[split] = {"rows": len(frame)}
            if "as_of" in frame:
                window[split] = {
                    "from": str(frame["as_of"].min().date()),
                    "to": str(frame["as_of"].max().date()),
                    "rows": len(frame),
                }
    return window
