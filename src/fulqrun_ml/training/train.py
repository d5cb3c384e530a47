"""`fulqrun-ml train`: compose a Hydra config, train a LightningModule, evaluate, leave a complete run dir.

The run directory (cfg.paths.output_dir) is what export reads; it holds:
  checkpoints/            Lightning checkpoints (best by val/auc, last)
  net_state.pt            the best backbone's weights (plain state_dict, no Lightning needed to load)
  feature_spec.json       the fitted FeatureSpec (encoders)
  holdout.parquet         the test split: raw features, label, rep probability (and oracle on simulated data)
  open_deals.parquet      deals open at extraction time, the rows serving would score today
  metrics.json            holdout metrics of the model next to the rep's probability and the oracle
  run_info.json           lineage: resolved config, net config, data hash, git commit, W&B run id, sizes
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.data.datamodule import DealWinDataModule
from fulqrun_ml.project import git_commit
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import fit_temperature
from fulqrun_ml.tasks.metrics import binary_report

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train and evaluate one model; returns the run summary also written to run_info.json."""
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    datamodule: DealWinDataModule = instantiate(cfg.data)
    datamodule.setup("fit")
    spec = datamodule.spec
    net = instantiate(
        cfg.model.net,
        n_continuous=len(spec.spec.numeric),
        cardinalities=spec.cardinalities,
        _convert_="all",
    )
    task = instantiate(cfg.task.module, net=net)
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] if cfg.get("logger") else []
    callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values()] if cfg.get("callbacks") else []
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        for lg in loggers:
            lg.log_hyperparams({"config": config, "data_hash": datamodule.data_hash, "sizes": datamodule.sizes})
        trainer.fit(task, datamodule=datamodule)
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
        }
        torch.save(task.net.state_dict(), out / "net_state.pt")
        spec.save(out / "feature_spec.json")
        calibration = {"method": "temperature", "temperature": temperature, "fitted_on": "val", "rows": len(val)}
        (out / "calibration.json").write_text(json.dumps(calibration, indent=2))
        holdout.drop(columns=["split"]).to_parquet(out / "holdout.parquet", index=False)
        datamodule.open_deals.to_parquet(out / "open_deals.parquet", index=False)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "run_info.json").write_text(json.dumps(summary, indent=2, default=str))
        log.info("holdout AUC model=%.4f rep=%.4f", metrics["model"]["auc"], metrics["rep"]["auc"])
        return {**summary, "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()
