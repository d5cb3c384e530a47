"""`fulqrun-ml train`: compose a Hydra config, train a LightningModule, evaluate, leave a complete run dir.

The run directory (cfg.paths.output_dir) is what export reads; it holds:
  checkpoints/            Lightning checkpoints (best by val/auc, last)
  net_state.pt            the best backbone's weights (plain state_dict, no Lightning needed to load)
  feature_spec.json       the fitted FeatureSpec (encoders)
  holdout.parquet         the test split: raw features, label, rep probability (and oracle on simulated data)
  open_deals.parquet      deals open at extraction time, the rows serving would score today
  metrics.json            holdout metrics of the model next to the rep's probability and the oracle
  net_config.json         the backbone's constructor config (what `init_from` warm starts need)
  plots/                  calibration.png and lift.png on the holdout (also logged to W&B)
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

import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from fulqrun_ml.data.datamodule import DealWinDataModule
from fulqrun_ml.project import git_commit
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import fit_temperature
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.checkpointing import RNGStateCheckpoint, resolve_ckpt_path
from fulqrun_ml.training.holdout_plots import save_holdout_plots
from fulqrun_ml.training.wandb_logging import experiment_name, log_artifacts, log_holdout_report, tag_run
from fulqrun_ml.training.warm_start import check_feature_compatibility, load_parent, warm_start

log = logging.getLogger(__name__)


def train(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Train and evaluate one model; returns the run summary also written to run_info.json.

    A task config may name its own `runner` (a dotted path to `run(cfg, extra_callbacks) -> summary`) when
    its data or outputs do not fit the tabular binary path below (forecasting, sequence models); every
    runner leaves the same kind of run directory and is reached through the same `fulqrun-ml train`."""
    runner = cfg.task.get("runner")
    if runner:
        return get_method(runner)(cfg, extra_callbacks)
    t_start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    datamodule: DealWinDataModule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec
    t_data = time.perf_counter()
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    net = instantiate(
        cfg.model.net,
        n_continuous=len(spec.spec.numeric),
        cardinalities=spec.cardinalities,
        _convert_="all",
    )
    parent = None
    if cfg.get("init_from"):
        parent = load_parent(Path(cfg.paths.models_dir), cfg.init_from)
        check_feature_compatibility(parent.spec, spec, cfg.init_from)
        warm_start(net, parent, net_config, cfg.init_from)
    task = instantiate(cfg.task.module, net=net)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] if cfg.get("logger") else []
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] if cfg.get("callbacks") else []
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

        # Post-hoc calibration on the validation split (later than training, earlier than the holdout).
        val = datamodule.frames["val"]
        temperature = fit_temperature(predict_logits(task.net, spec.encode(val)), val["label"].to_numpy())
        holdout = datamodule.frames["test"]
        encoded = spec.encode(holdout)
        labels = holdout["label"].to_numpy()
        metrics = {
            "model": binary_report(predict_probabilities(task.net, encoded, temperature), labels),
            "model_uncalibrated": binary_report(predict_probabilities(task.net, encoded), labels),
            "rep": binary_report(holdout["rep_probability"], labels),
        }
        if "oracle_probability" in holdout:
            metrics["oracle"] = binary_report(holdout["oracle_probability"], labels)
        for lg in loggers:
            lg.log_metrics({f"holdout/{who}/{k}": v for who, m in metrics.items() for k, v in m.items()})

        run_id = next((lg.experiment.id for lg in loggers if hasattr(lg.experiment, "id")), None)
        summary = {
            "run_dir": str(out),
            "task": cfg.task.name,
            "model": cfg.model.name,
            "net_config": OmegaConf.to_container(cfg.model.net, resolve=True),
            "config": config,
            "data_hash": datamodule.data_hash,
            "git_commit": git_commit(),
            "wandb_run_id": run_id,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "sizes": datamodule.sizes,
            "experiment": experiment,
            "data_window": data_window(datamodule.frames),
            "parent": parent.lineage if parent else None,
            "init_from": cfg.get("init_from"),
            "resumed_from": ckpt_path,
        }
        torch.save(task.net.state_dict(), out / "net_state.pt")
        spec.save(out / "feature_spec.json")
        calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "val", "rows": len(val)}
        (out / "calibration.json").write_text(json.dumps(calibration, indent=2))
        holdout.drop(columns=["split"]).to_parquet(out / "holdout.parquet", index=False)
        datamodule.open_deals.to_parquet(out / "open_deals.parquet", index=False)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "net_config.json").write_text(json.dumps(net_config, indent=2))
        scores = {"model": predict_probabilities(task.net, encoded, temperature), "rep": holdout["rep_probability"]}
        if "oracle_probability" in holdout:
            scores["oracle"] = holdout["oracle_probability"]
        plots = save_holdout_plots(scores, labels, out / "plots")
        summary["wandb_artifacts"] = None
        if wandb_run is not None:
            log_holdout_report(wandb_run, holdout, scores, plots)
            summary["wandb_artifacts"] = log_artifacts(wandb_run, out, summary, metrics)
        summary["seconds"] = {
            "data": round(t_data - t_start, 3),
            "fit": round(t_fit - t_data, 3),
            "total": round(time.perf_counter() - t_start, 3),
        }
        (out / "run_info.json").write_text(json.dumps(summary, indent=2, default=str))
        log.info("holdout AUC model=%.4f rep=%.4f", metrics["model"]["auc"], metrics["rep"]["auc"])
        return {**summary, "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()


def data_window(frames: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The as_of range and row count of each split, recorded in lineage and on the model card."""
    window = {}
    for split, frame in frames.items():
        if len(frame):
            window[split] = {
                "from": str(frame["as_of"].min().date()),
                "to": str(frame["as_of"].max().date()),
                "rows": len(frame),
            }
    return window
