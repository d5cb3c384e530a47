"""`fulqrun-ml train`: the one training path every task takes, whatever its pipeline.

`train(cfg)` instantiates the task's pipeline plugin (`task.pipeline._target_`, see pipeline.py) and owns what
every pipeline shares: seeding, callbacks (pointed at the kind's validation metric when the config leaves the
monitor unset), loggers and W&B, resume (`ckpt_path`), warm start (`init_from`), DDP ranks, calibration
dispatch (`task.calibration`, checked against what the pipeline supports) and the run record. The pipeline
supplies its datamodule, its networks ("arms"), its LightningModule, its evaluation and its own files.

The run directory (cfg.paths.output_dir) always holds:
  checkpoints/            Lightning checkpoints of the model (best by the monitored metric, last)
  <arm>/checkpoints/      the same for other arms (ensemble members, ablations) and <arm>/arm_done.json
  net_state.pt            the trained network's weights (plain state_dict)
  net_config.json         its constructor config (what export and `init_from` rebuild it from)
  metrics.json            holdout metrics of the model next to its baselines
  calibration.json        the calibration record where the kind has one (method, parameters, fitted_on)
  plots/                  binary: reliability diagram and lift on the holdout
  run_info.json           the run record (registry/run_record.py), written last: its presence marks a finished run
plus the pipeline's own files (feature spec, holdout rows, conformal offsets, sequence vocabulary, ...).

Resume: `ckpt_path=last` (in the interrupted run's output_dir) or a checkpoint/run path continues the model's
training; other arms resume from their own last.ckpt, and arms that had finished are loaded, not retrained, so a
resumed run is bit-identical to an uninterrupted one. Warm start: `init_from=<model>@<version>`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from fulqrun_ml.data.contract_versions import check_compatible
from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.privacy.dp_sgd import DPSGD, write_accounting
from fulqrun_ml.privacy.settings import PrivacyConfigError, privacy_settings, trainer_kwargs
from fulqrun_ml.project import git_commit
from fulqrun_ml.registry.run_record import RunRecord
from fulqrun_ml.training.checkpointing import LAST_CHECKPOINT, RNGStateCheckpoint, resolve_ckpt_path
from fulqrun_ml.training.config_checks import check_run_config
from fulqrun_ml.training.holdout_plots import save_holdout_plots
from fulqrun_ml.training.pipeline import Arm, Capabilities, FittedArm, Pipeline, PipelineConfigError
from fulqrun_ml.training.wandb_logging import experiment_name, log_artifacts, log_holdout_report, tag_run
from fulqrun_ml.training.warm_start import check_feature_compatibility, load_parent

log = logging.getLogger(__name__)
ARM_DONE_FILE = "arm_done.json"
# What Hydra writes into a run directory before `train` starts: the job log (`<job>.log`) and the config copy.
HYDRA_START_FILES = frozenset({".hydra", "cli.log", "train.log"})


def build_pipeline(cfg: DictConfig) -> Pipeline:
    """The task's pipeline plugin; a task config without one is an error naming the key."""
    if cfg.task.get("pipeline") is None:
        raise PipelineConfigError(f"task '{cfg.task.name}' names no pipeline (task.pipeline._target_)")
    return instantiate(cfg.task.pipeline, _convert_="all")


def train(
    cfg: DictConfig,
    extra_callbacks: list[pl.Callback] | None = None,
    datamodule: pl.LightningDataModule | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; returns the run record as a dict plus `metrics`.

    `datamodule` lets a study share one built dataset across runs (seeds, settings); otherwise the pipeline
    builds it from `cfg.data`. `extra_callbacks` reach the model's arm (a sweep's pruning callback).

    A run that fails before writing anything of its own leaves no directory behind (see `remove_empty_run_dir`)."""
    out = Path(cfg.paths.output_dir)
    try:
        return _train(cfg, extra_callbacks, datamodule)
    except BaseException:
        if remove_empty_run_dir(out):
            _prune_empty_parents(out, Path(cfg.paths.log_dir))
        raise


def remove_empty_run_dir(out: Path) -> bool:
    """Delete `out` when it holds nothing but what Hydra writes at start (its job log and `.hydra/` config copy):
    such a directory is a failed run that looks like a run to `runs` listings and to whoever browses logs/.
    A directory with anything else (checkpoints to resume from, W&B files) is kept for the post-mortem."""
    if not out.is_dir() or any(p.name not in HYDRA_START_FILES for p in out.iterdir()):
        return False
    _detach_file_logs(out)
    shutil.rmtree(out, ignore_errors=True)
    log.info("removed %s: the run failed before writing anything", out)
    return True


def _detach_file_logs(out: Path) -> None:
    """Close and remove the logging handlers that write into `out` (Hydra's job log): left on the root logger, a
    later record in the same process (another command, py4j's shutdown message) would try to reopen a file in
    the deleted directory and print a logging traceback."""
    inside = out.resolve()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, logging.FileHandler) and inside in Path(handler.baseFilename).resolve().parents:
                logger.removeHandler(handler)
                handler.close()


def _prune_empty_parents(out: Path, log_dir: Path) -> None:
    """Remove the now-empty `<log_dir>/<task>/runs/` levels Hydra made for the removed run (never `log_dir` itself,
    never a directory outside it), so a failed first run leaves the tree as it was (tests/unit/test_fuzz_cli.py)."""
    parent, root = out.resolve().parent, log_dir.resolve()
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()  # only succeeds when empty
        except OSError:
            return
        parent = parent.parent


def check_target_varies(cfg: DictConfig, datamodule: pl.LightningDataModule) -> None:
    """Refuse a constant training target. Without this a constant numeric column trains as a 'regression' that
    predicts the constant and exits 0, which looks like success; a constant binary label has no AUC either."""
    frames = getattr(datamodule, "frames", None)
    train_rows = frames.get("train") if isinstance(frames, dict) else None
    if train_rows is None or "label" not in getattr(train_rows, "columns", ()):
        return  # pipelines without a tabular label (forecast series) check their own targets
    labels = train_rows["label"].dropna()
    if len(labels) and labels.nunique() < 2:
        target = str((cfg.get("data") or {}).get("target") or "label")
        raise FieldValidationError(
            target,
            f"the target is constant ({labels.iloc[0]!r} in all {len(labels)} training rows): there is nothing to "
            "learn; check the target column and the data window",
        )


def _train(
    cfg: DictConfig,
    extra_callbacks: list[pl.Callback] | None,
    datamodule: pl.LightningDataModule | None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    check_run_config(cfg)  # a bad trainer knob or seed: one line now, not a Lightning assert after the data is built
    pipeline = build_pipeline(cfg)
    pipeline.check(cfg)
    if privacy_settings(cfg.trainer) is not None and cfg.get("ckpt_path"):
        raise PrivacyConfigError("ckpt_path: a DP-SGD run cannot resume (its privacy accounting would restart)")
    pl.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if datamodule is None:
        datamodule = pipeline.build_datamodule(cfg)
    datamodule.setup("fit")
    check_target_varies(cfg, datamodule)
    kind = pipeline.target_kind(cfg, datamodule)
    capabilities = pipeline.capabilities(kind)
    calibration = dispatch_calibration(cfg, capabilities, kind)
    check_capabilities(cfg, capabilities, kind)
    t_data = time.perf_counter()

    parent = None
    if cfg.get("init_from"):
        parent = load_parent(Path(cfg.paths.models_dir), cfg.init_from)
        check_compatible(parent.version.metadata.get("contract"), f"init_from={cfg.init_from}")
        spec = pipeline.compatibility_spec(datamodule)
        if spec is not None:
            check_feature_compatibility(parent.spec, spec, cfg.init_from)
    loggers = [instantiate(c) for c in cfg.logger.values()] if cfg.get("logger") else []
    config = OmegaConf.to_container(cfg, resolve=True)
    experiment = experiment_name()
    try:
        wandb_run = next((lg.experiment for lg in loggers if isinstance(lg, WandbLogger)), None)
        if wandb_run is not None:
            tag_run(wandb_run, cfg.task.name, cfg.model.name, experiment)
        for lg in loggers:
            lg.log_hyperparams({"config": config, "data_hash": datamodule.data_hash, "sizes": datamodule.sizes})
        fitted, trainer, resumed = [], None, None
        for i, arm in enumerate(pipeline.arms(cfg, datamodule, kind)):
            main = i == 0
            result, arm_trainer, arm_resumed = fit_arm(
                cfg,
                pipeline,
                datamodule,
                kind,
                arm,
                out,
                loggers if main else [],
                extra_callbacks if main else [],
                parent,
                trainer_overrides(cfg, capabilities),
            )
            fitted.append(result)
            if main:
                trainer, resumed = arm_trainer, arm_resumed
        t_fit = time.perf_counter()
        world_size = trainer.world_size if trainer is not None else 1
        if world_size > 1:  # DDP: the rest (offline evaluation, files) is rank 0's alone
            end_distributed(trainer)
            if not trainer.is_global_zero:
                return {"run_dir": str(out), "global_rank": trainer.global_rank}

        evaluation = pipeline.evaluate(cfg, datamodule, fitted, kind, calibration)
        metrics = evaluation.metrics
        accounting = next((c.accounting for c in getattr(trainer, "callbacks", []) if isinstance(c, DPSGD)), None)
        if accounting is not None:  # ε and δ go to the run record (-> lineage, model card) and W&B
            evaluation = dataclasses.replace(evaluation, extra={**evaluation.extra, "privacy": accounting})
            write_accounting(out, accounting)
        for lg in loggers:
            lg.log_metrics(flat_metrics(metrics))
            if accounting is not None:
                lg.log_metrics({"privacy/epsilon": accounting["epsilon"], "privacy/delta": accounting["delta"]})
        torch.save(evaluation.net.state_dict(), out / "net_state.pt")
        (out / "net_config.json").write_text(json.dumps(evaluation.net_config, indent=2))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if evaluation.calibration is not None:
            (out / "calibration.json").write_text(json.dumps(evaluation.calibration, indent=2))
        pipeline.write_artifacts(out, datamodule, evaluation)
        if evaluation.scores is not None:
            holdout = datamodule.frames["test"]
            plots = save_holdout_plots(evaluation.scores, holdout["label"].to_numpy(), out / "plots")
            if wandb_run is not None:
                log_holdout_report(wandb_run, holdout, evaluation.scores, plots)
        model_arm = fitted[0]
        record = RunRecord(
            pipeline=pipeline.path,
            task=cfg.task.name,
            kind=kind,
            model=cfg.model.name,
            run_dir=str(out),
            net_config=evaluation.net_config,
            config=config,
            data_hash=datamodule.data_hash,
            git_commit=git_commit(),
            seed=int(cfg.seed),
            epochs=model_arm.epochs,
            best_checkpoint=model_arm.best_checkpoint,
            sizes=datamodule.sizes,
            data_window=pipeline.data_window(datamodule),
            seconds={},
            world_size=world_size,
            experiment=experiment,
            wandb_run_id=next((lg.experiment.id for lg in loggers if hasattr(lg.experiment, "id")), None),
            parent=parent.lineage if parent else None,
            init_from=cfg.get("init_from"),
            resumed_from=resumed,
            calibration=evaluation.calibration,
            arms={f.arm.name: {"epochs": f.epochs, "best_checkpoint": f.best_checkpoint} for f in fitted[1:]},
            extra=evaluation.extra,
        )
        artifacts = log_artifacts(wandb_run, out, record.to_dict(), metrics) if wandb_run is not None else None
        seconds = {
            "data": round(t_data - t_start, 3),
            "fit": round(t_fit - t_data, 3),
            "total": round(time.perf_counter() - t_start, 3),
        }
        record = dataclasses.replace(record, wandb_artifacts=artifacts, seconds=seconds)
        record.save(out)
        log.info("holdout %s", pipeline.headline(metrics))
        return {**record.to_dict(), "metrics": metrics}
    finally:
        # Always close W&B runs, also on failure, so offline files are complete and syncable.
        if wandb.run is not None:
            wandb.finish()


def dispatch_calibration(cfg: DictConfig, capabilities: Capabilities, kind: str) -> str | None:
    """The calibration method this run applies: `task.calibration` when the pipeline supports it for this kind,
    else the pipeline's default; a method the kind cannot apply is an error naming the key."""
    method = cfg.task.get("calibration")
    if not capabilities.calibration:
        if method not in (None, "none"):
            raise PipelineConfigError(f"task.calibration={method}: a {kind} model of task '{cfg.task.name}' has none")
        return None
    if method is None:
        return capabilities.default_calibration
    if method not in capabilities.calibration:
        raise PipelineConfigError(
            f"task.calibration={method}: a {kind} model of task '{cfg.task.name}' supports "
            f"{', '.join(capabilities.calibration)}"
        )
    return str(method)


def check_capabilities(cfg: DictConfig, capabilities: Capabilities, kind: str) -> None:
    """Refuse, by key, what this pipeline cannot do for this kind (resume, warm start, DDP)."""
    who = f"task '{cfg.task.name}' ({kind})"
    if cfg.get("ckpt_path") and not capabilities.resume:
        raise PipelineConfigError(f"ckpt_path: {who} cannot resume from a checkpoint")
    if cfg.get("init_from") and not capabilities.warm_start:
        raise PipelineConfigError(f"init_from: {who} cannot warm-start")
    if "ddp" in str(cfg.trainer.get("strategy", "")) and not capabilities.ddp:
        raise PipelineConfigError(f"trainer=ddp: {who} does not support data-parallel training")


def trainer_overrides(cfg: DictConfig, capabilities: Capabilities) -> dict[str, Any]:
    """What the pipeline needs changed in the configured trainer (DDP's unused-parameter search)."""
    if cfg.trainer.get("strategy") == "ddp" and capabilities.ddp_unused_parameters:
        return {"strategy": "ddp_find_unused_parameters_true"}
    return {}


def build_callbacks(
    cfg: DictConfig, pipeline: Pipeline, kind: str, checkpoint_dir: Path, extra: list[pl.Callback]
) -> list[pl.Callback]:
    """The configured callbacks, one way for every pipeline and arm: checkpoints go to the arm's directory and a
    callback whose config leaves `monitor` unset watches the kind's validation metric."""
    callbacks = []
    for c in (cfg.get("callbacks") or {}).values():
        overrides: dict[str, Any] = {}
        if "dirpath" in c:
            overrides["dirpath"] = str(checkpoint_dir)
        if "monitor" in c and c.get("monitor") is None:
            overrides["monitor"], overrides["mode"] = pipeline.default_monitor(kind)
        callbacks.append(instantiate(c, **overrides))
    return [*callbacks, *extra, RNGStateCheckpoint()]  # exact resume: Lightning does not checkpoint the RNGs


def fit_arm(
    cfg: DictConfig,
    pipeline: Pipeline,
    datamodule: pl.LightningDataModule,
    kind: str,
    arm: Arm,
    out: Path,
    loggers: list[Any],
    extra_callbacks: list[pl.Callback] | None,
    parent: Any,
    overrides: dict[str, Any] | None = None,
) -> tuple[FittedArm, pl.Trainer, str | None]:
    """Train one arm (or load it, when a resumed run had finished it) and test its best checkpoint."""
    pl.seed_everything(arm.seed, workers=True)
    net, net_config = arm.build()
    if parent is not None:
        pipeline.warm_start(net, net_config, arm, parent, cfg.init_from)
    module = pipeline.build_module(cfg, net, datamodule, kind)
    arm_dir = out / arm.subdir if arm.subdir else out
    callbacks = build_callbacks(cfg, pipeline, kind, arm_dir / "checkpoints", list(extra_callbacks or []))
    privacy = privacy_settings(cfg.trainer)
    if privacy is not None:
        callbacks.append(DPSGD(privacy, int(cfg.trainer.max_epochs), arm.seed))
    trainer: pl.Trainer = instantiate(
        trainer_kwargs(cfg.trainer),
        default_root_dir=str(arm_dir),
        logger=loggers or False,
        callbacks=callbacks,
        **(overrides or {}),
    )
    done = arm_dir / ARM_DONE_FILE
    resumed = arm_checkpoint(cfg.get("ckpt_path"), arm, trainer)
    if resumed and done.is_file():  # finished before the interruption: load its best weights, do not retrain
        state = json.loads(done.read_text())
        best = state["best_checkpoint"]
        module.load_state_dict(torch.load(best, weights_only=False)["state_dict"])
        return FittedArm(arm, module.net.eval(), net_config, state["epochs"], best), trainer, resumed
    # Our own checkpoints hold the hyperparameters (Hydra partials), which need full unpickling.
    trainer.fit(module, datamodule=datamodule, ckpt_path=resumed, weights_only=False if resumed else None)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    trainer.test(module, datamodule=datamodule, ckpt_path=best or None, weights_only=False, verbose=False)
    if trainer.is_global_zero:
        arm_dir.mkdir(parents=True, exist_ok=True)
        done.write_text(json.dumps({"epochs": trainer.current_epoch, "best_checkpoint": best}))
    return FittedArm(arm, module.net.eval(), net_config, trainer.current_epoch, best), trainer, resumed


def arm_checkpoint(ckpt_path: str | None, arm: Arm, trainer: pl.Trainer) -> str | None:
    """Where this arm resumes from. The model's arm follows `ckpt_path` strictly (an error when it names
    nothing); with `ckpt_path=last` another arm resumes from its own last.ckpt, or starts fresh when the
    interruption came before it began."""
    checkpoint_dir = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
    if not arm.subdir:
        return resolve_ckpt_path(ckpt_path, checkpoint_dir)
    if ckpt_path != "last" or checkpoint_dir is None:
        return None
    candidate = Path(checkpoint_dir) / LAST_CHECKPOINT
    return str(candidate) if candidate.is_file() else None


def flat_metrics(metrics: dict[str, Any], prefix: str = "holdout") -> dict[str, float]:
    """Nested metrics as `holdout/<who>/<metric>` scalars for the loggers (booleans and strings skipped)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flat_metrics(value, name))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def end_distributed(trainer: pl.Trainer) -> None:
    """Leave the process group once every process has finished testing, so the offline holdout evaluation
    on rank 0 (torchmetrics) computes locally instead of waiting for peers that have already exited."""
    trainer.strategy.barrier("fit and test done")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
