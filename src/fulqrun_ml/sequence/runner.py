"""`fulqrun-ml train task=deal_win_sequence model=sequence_fusion`: the fused model and its tabular-only ablation.

Reached through `training.train.train`, which dispatches to `run` because the task config names it as its
runner. It leaves the same kind of run directory as the deal-win runner (see train.py), plus:
  sequence_vocab.json                 the token vocabularies fitted on the training split
  holdout_sequences.npz               model-ready sequence arrays of the holdout rows (row order = holdout.parquet)
  open_deals_sequences.npz            the same for the deals open at extraction time
  tabular_only/net_state.pt           the ablation's weights (+ tabular_only/net_config.json)
and metrics.json scores, on the same holdout rows: the fused model (calibrated and not), the tabular-only
ablation (`use_sequence=false`, same seed, recipe and calibration), the rep's probability and the oracle,
plus `sequence_gain` (fused minus tabular-only). The ablation is skipped with `task.sequence.ablation=false`.
`ckpt_path` resumes the fused arm (checkpoints/); the ablation (tabular_only/checkpoints/) retrains from its
start, which is cheap. `init_from` warm starts are refused with an error naming the key.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from fulqrun_ml.data.snapshots import WEIGHT_COLUMN
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import git_commit
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule
from fulqrun_ml.sequence.task import predict_sequence_logits, predict_sequence_probabilities
from fulqrun_ml.tasks.calibration import fit_temperature
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.checkpointing import RNGStateCheckpoint, resolve_ckpt_path
from fulqrun_ml.training.holdout_plots import save_holdout_plots
from fulqrun_ml.training.train import data_window
from fulqrun_ml.training.wandb_logging import experiment_name, log_artifacts, log_holdout_report, tag_run

log = logging.getLogger(__name__)
DATAMODULE = f"{DealWinSequenceDataModule.__module__}.{DealWinSequenceDataModule.__qualname__}"
ABLATION_DIR = "tabular_only"


class SequenceRunConfigError(FulqrunMLError, ValueError):
    """The composed config cannot run the sequence task (wrong model, unsupported option); names the key."""


def run(cfg: DictConfig, extra_callbacks: list[pl.Callback] | None = None) -> dict[str, Any]:
    """Build the sequence datamodule from `cfg.data` and train; returns the run summary (+ metrics)."""
    _check_config(cfg)
    return run_with_datamodule(cfg, build_datamodule(cfg), extra_callbacks)


def _check_config(cfg: DictConfig) -> None:
    target = cfg.model.net.get("_target_", "")
    if "use_sequence" not in inspect.signature(get_class(target)).parameters:
        raise SequenceRunConfigError(
            f"model.net._target_={target!r} takes no sequences; task={cfg.task.name} needs model=sequence_fusion"
        )
    if cfg.get("init_from"):
        raise SequenceRunConfigError("init_from: warm starts are not supported by the sequence task yet")


def build_datamodule(cfg: DictConfig) -> DealWinSequenceDataModule:
    """`cfg.data` as a DealWinSequenceDataModule: any deal-win data config (simulator, Parquet, PostgreSQL)
    keeps its source and split settings; the sequence length comes from `task.sequence.max_len`."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    data["_target_"] = DATAMODULE
    data["max_len"] = int(cfg.task.sequence.max_len)
    return instantiate(OmegaConf.create(data))


def build_net(
    cfg: DictConfig, datamodule: DealWinSequenceDataModule, use_sequence: bool
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The configured backbone with the fitted vocabulary sizes; returns it and its full constructor config
    (what `export.package.load_trained_net` rebuilds it from)."""
    net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
    net_config.update(datamodule.vocabulary.sizes, max_len=datamodule.max_len, use_sequence=use_sequence)
    spec = datamodule.spec
    net = instantiate(
        net_config, n_continuous=len(spec.spec.numeric), cardinalities=spec.cardinalities, _convert_="all"
    )
    return net, net_config


def fit_arm(
    cfg: DictConfig,
    datamodule: DealWinSequenceDataModule,
    net: torch.nn.Module,
    out: Path,
    loggers: list[Any],
    extra_callbacks: list[pl.Callback],
    ckpt_path: str | None = None,
) -> tuple[pl.LightningModule, pl.Trainer, str]:
    """Train one arm with the configured task, trainer and callbacks (checkpoints under `out`), test the
    best checkpoint; returns the task (holding the best weights), the trainer and the best path."""
    task = instantiate(cfg.task.module, net=net)
    callbacks = []
    for c in (cfg.get("callbacks") or {}).values():
        callbacks.append(instantiate(c, dirpath=str(out / "checkpoints")) if "dirpath" in c else instantiate(c))
    callbacks += [*extra_callbacks, RNGStateCheckpoint()]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, default_root_dir=str(out), logger=loggers or False, callbacks=callbacks
    )
    checkpoint_dir = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
    resumed = resolve_ckpt_path(ckpt_path, checkpoint_dir)
    trainer.fit(task, datamodule=datamodule, ckpt_path=resumed, weights_only=False if resumed else None)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(task, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    return task, trainer, best


def holdout_scores(net: torch.nn.Module, datamodule: DealWinSequenceDataModule) -> tuple[float, np.ndarray, np.ndarray]:
    """Temperature fitted on validation (later than training, earlier than the holdout); returns it with the
    calibrated and uncalibrated holdout probabilities."""
    spec = datamodule.spec
    val = {**spec.encode(datamodule.frames["val"]), **datamodule.sequences["val"]}
    frame = datamodule.frames["val"]
    weights = frame[WEIGHT_COLUMN].to_numpy() if WEIGHT_COLUMN in frame else None  # the embargo's censoring
    temperature = fit_temperature(predict_sequence_logits(net, val), frame["label"].to_numpy(), weights=weights)
    test = {**spec.encode(datamodule.frames["test"]), **datamodule.sequences["test"]}
    return (
        temperature,
        predict_sequence_probabilities(net, test, temperature),
        predict_sequence_probabilities(net, test),
    )


def run_with_datamodule(
    cfg: DictConfig,
    datamodule: DealWinSequenceDataModule,
    extra_callbacks: list[pl.Callback] | None = None,
) -> dict[str, Any]:
    """Train the fused model (and the tabular-only ablation) on an already configured datamodule; the
    benchmark shares one datamodule across seeds this way."""
    t_start = time.perf_counter()
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    datamodule.setup("fit")
    spec, holdout = datamodule.spec, datamodule.frames["test"]
    labels = holdout["label"].to_numpy()
    t_data = time.perf_counter()

    net, net_config = build_net(cfg, datamodule, use_sequence=bool(cfg.model.net.get("use_sequence", True)))
    loggers = [instantiate(c) for c in cfg.get("logger", {}).values()] if cfg.get("logger") else []
    config = OmegaConf.to_container(cfg, resolve=True)
    experiment = experiment_name()
    try:
        wandb_run = next((lg.experiment for lg in loggers if isinstance(lg, WandbLogger)), None)
        if wandb_run is not None:
            tag_run(wandb_run, cfg.task.name, cfg.model.name, experiment)
        for lg in loggers:
            lg.log_hyperparams({"config": config, "data_hash": datamodule.data_hash, "sizes": datamodule.sizes})
        task, trainer, best = fit_arm(cfg, datamodule, net, out, loggers, extra_callbacks or [], cfg.get("ckpt_path"))
        t_fit = time.perf_counter()
        temperature, probs, raw_probs = holdout_scores(task.net, datamodule)
        metrics: dict[str, Any] = {
            "model": binary_report(probs, labels),
            "model_uncalibrated": binary_report(raw_probs, labels),
        }
        scores = {"model": probs}
        if cfg.task.sequence.get("ablation", True) and net_config["use_sequence"]:
            pl.seed_everything(cfg.seed, workers=True)  # same seed: same tabular initialisation as the fused arm
            tabular, tabular_config = build_net(cfg, datamodule, use_sequence=False)
            tab_task, _, _ = fit_arm(cfg, datamodule, tabular, out / ABLATION_DIR, [], [])
            _, tab_probs, _ = holdout_scores(tab_task.net, datamodule)
            metrics["tabular_only"] = binary_report(tab_probs, labels)
            scores["tabular_only"] = tab_probs
            torch.save(tab_task.net.state_dict(), out / ABLATION_DIR / "net_state.pt")
            (out / ABLATION_DIR / "net_config.json").write_text(json.dumps(tabular_config, indent=2))
        metrics["rep"] = binary_report(holdout["rep_probability"], labels)
        scores["rep"] = holdout["rep_probability"].to_numpy()
        if "oracle_probability" in holdout:
            metrics["oracle"] = binary_report(holdout["oracle_probability"], labels)
            scores["oracle"] = holdout["oracle_probability"].to_numpy()
        if "tabular_only" in metrics:
            metrics["sequence_gain"] = {
                k: metrics["model"][k] - metrics["tabular_only"][k] for k in ("auc", "log_loss", "ece", "brier")
            }
        for lg in loggers:
            lg.log_metrics({f"holdout/{who}/{k}": v for who, m in metrics.items() for k, v in m.items() if k != "n"})

        run_id = next((lg.experiment.id for lg in loggers if hasattr(lg.experiment, "id")), None)
        summary = {
            "run_dir": str(out),
            "task": cfg.task.name,
            "model": cfg.model.name,
            "net_config": net_config,
            "config": config,
            "data_hash": datamodule.data_hash,
            "git_commit": git_commit(),
            "wandb_run_id": run_id,
            "best_checkpoint": best,
            "epochs": trainer.current_epoch,
            "sizes": datamodule.sizes,
            "experiment": experiment,
            "data_window": data_window(datamodule.frames),
            "parent": None,
            "init_from": None,
            "resumed_from": cfg.get("ckpt_path"),
            "sequence": {"max_len": datamodule.max_len, "vocabulary": datamodule.vocabulary.sizes},
        }
        torch.save(task.net.state_dict(), out / "net_state.pt")
        spec.save(out / "feature_spec.json")
        datamodule.vocabulary.save(out / "sequence_vocab.json")
        calibration = {
            "method": "temperature",
            "temperature": temperature,
            "fitted_on": "val",
            "rows": len(datamodule.frames["val"]),
        }
        (out / "calibration.json").write_text(json.dumps(calibration, indent=2))
        holdout.drop(columns=["split"]).to_parquet(out / "holdout.parquet", index=False)
        np.savez_compressed(out / "holdout_sequences.npz", **datamodule.sequences["test"])
        datamodule.open_deals.to_parquet(out / "open_deals.parquet", index=False)
        np.savez_compressed(out / "open_deals_sequences.npz", **datamodule.open_deal_sequences)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        (out / "net_config.json").write_text(json.dumps(net_config, indent=2))
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
        log.info(
            "holdout AUC fused=%.4f tabular-only=%s rep=%.4f",
            metrics["model"]["auc"],
            f"{metrics['tabular_only']['auc']:.4f}" if "tabular_only" in metrics else "-",
            metrics["rep"]["auc"],
        )
        return {**summary, "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()
