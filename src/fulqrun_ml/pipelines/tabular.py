"""The tabular pipeline: one backbone over a FeatureSpec, for binary, regression and survival targets.

Every CRM snapshot task (deal win, lead conversion, account churn/expansion, close timing as regression or as
discrete-time survival) and any user table (`data=table`) takes this pipeline. The datamodule says what the
target is; the task config supplies the LightningModule for that kind (`task.module`, or `task.modules.<kind>`
for `kind: auto`). A survival task names its datamodule (`task.datamodule`, which hands over (event, duration))
and its time bins (`task.bin_edges`: the backbone gets one hazard logit per bin).

Own run files: feature_spec.json, holdout.parquet (the test split: raw features, label, baselines, oracle on
simulated data), the scoring rows (open_deals.parquet, open_leads.parquet, ...), target.json (regression
scaling), survival.json (bin edges, hazard temperature, the training split's Kaplan-Meier curves),
column_types.json (user tables), fairness.json (binary: fairness by group on the holdout, evaluation/fairness.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fulqrun_ml.data.snapshot_files import write_snapshot
from fulqrun_ml.datamodules.eval_sample import sample_record
from fulqrun_ml.datamodules.tabular import SPLITS, TabularDataModuleBase
from fulqrun_ml.evaluation.fairness import FAIRNESS_FILE, holdout_fairness
from fulqrun_ml.evaluation.lightgbm_baseline import lightgbm_holdout_report
from fulqrun_ml.export.package import export_run
from fulqrun_ml.models import backbone_family
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.tasks.calibration import CALIBRATION_METHODS
from fulqrun_ml.tasks.holdout import evaluate_binary, evaluate_regression
from fulqrun_ml.tasks.multiclass import CLASSES_FILE
from fulqrun_ml.tasks.multiclass_metrics import evaluate_multiclass
from fulqrun_ml.tasks.survival_grid import validate_bin_edges
from fulqrun_ml.tasks.survival_holdout import SURVIVAL_FILE, evaluate_survival
from fulqrun_ml.training.pipeline import Arm, Capabilities, Evaluation, FittedArm, Pipeline, PipelineConfigError


class TabularPipeline(Pipeline):
    families: ClassVar[tuple[str, ...]] = ("tabular",)

    def check(self, cfg: DictConfig) -> None:
        super().check(cfg)
        if cfg.task.get("kind") in ("survival", "multiclass"):
            _, multi_output = backbone_family(cfg.model.net._target_)
            if not multi_output:
                raise PipelineConfigError(
                    f"model={cfg.model.name} gives one output; a {cfg.task.kind} task needs one per "
                    + ("time bin" if cfg.task.kind == "survival" else "class")
                )
        if cfg.task.get("kind") == "survival":
            survival_edges(cfg.task)  # a bad grid fails in milliseconds, before any data is built

    def capabilities(self, kind: str) -> Capabilities:
        if kind == "binary":
            return Capabilities(calibration=CALIBRATION_METHODS, default_calibration="temperature")
        if kind in ("survival", "multiclass"):  # one temperature on the logits, fitted on the validation NLL
            return Capabilities(calibration=("temperature",), default_calibration="temperature")
        return Capabilities()

    def build_datamodule(self, cfg: DictConfig) -> TabularDataModuleBase:
        # A task that needs its own datamodule class (survival: a two-column target) names it in
        # `task.datamodule`; it replaces `data._target_` so any data config (synthetic, parquet, postgres) works.
        target = cfg.task.get("datamodule")
        return instantiate(cfg.data, **({"_target_": target} if target else {}))

    def target_kind(self, cfg: DictConfig, datamodule: TabularDataModuleBase) -> str:
        kind = datamodule.target_kind
        task_module_config(cfg.task, kind)  # refuses data of another kind than the task trains
        return kind

    def arms(self, cfg: DictConfig, datamodule: TabularDataModuleBase, kind: str) -> list[Arm]:
        def build() -> tuple[nn.Module, dict[str, Any]]:
            net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
            if kind == "survival":  # recorded, so export rebuilds the same backbone
                net_config["n_outputs"] = len(survival_edges(cfg.task)) - 1
            if kind == "multiclass":  # one logit per class
                net_config["n_outputs"] = len(datamodule.classes)
            return build_tabular_net(net_config, datamodule), net_config

        return [Arm("model", int(cfg.seed), "", build)]

    def build_module(self, cfg: DictConfig, net: nn.Module, datamodule: TabularDataModuleBase, kind: str) -> Any:
        classes = {"num_classes": len(datamodule.classes)} if kind == "multiclass" else {}
        return instantiate(task_module_config(cfg.task, kind), net=net, **classes)

    def evaluate(
        self,
        cfg: DictConfig,
        datamodule: TabularDataModuleBase,
        fitted: list[FittedArm],
        kind: str,
        calibration: str | None,
    ) -> Evaluation:
        net, net_config = fitted[0].net, fitted[0].net_config
        extra: dict[str, Any] = {"leakage_audit": datamodule.leakage_audit}
        artifacts: dict[str, Any] = {}
        if kind == "survival":
            evaluation, record = evaluate_survival(net, datamodule.spec, datamodule.frames, survival_edges(cfg.task))
            artifacts["survival"] = record
        elif kind == "multiclass":
            evaluation = evaluate_multiclass(
                net, datamodule.spec, datamodule.frames, datamodule.baseline_columns, datamodule.classes
            )
            artifacts["classes"] = list(datamodule.classes)
        elif kind == "regression":
            evaluation = evaluate_regression(
                net, datamodule.spec, datamodule.target_scaling, datamodule.frames, datamodule.baseline_columns
            )
        else:
            evaluation = evaluate_binary(
                net, datamodule.spec, datamodule.frames, datamodule.baseline_columns, calibration
            )
            # Fairness by group on the holdout (fairness.json; its gap summary goes into the version's metadata).
            artifacts["fairness"] = holdout_fairness(net, datamodule.spec, datamodule.frames, evaluation.calibration)
        metrics = dict(evaluation.metrics)
        if getattr(datamodule, "eval_samples", None):  # evaluated on samples of val / test: the record says so
            extra["eval_sample"] = sample_record(datamodule.eval_samples, metrics)
        setting = cfg.task.get("compare_lightgbm")
        if setting and kind not in ("survival", "multiclass"):
            metrics["lightgbm"] = lightgbm_comparison(datamodule, setting, int(cfg.seed), kind)
            extra["lightgbm_setting"] = setting
        return Evaluation(
            metrics=metrics,
            net=net,
            net_config=net_config,
            calibration=evaluation.calibration,
            scores=evaluation.scores if kind == "binary" else None,
            extra=extra,
            artifacts=artifacts,
        )

    def write_artifacts(self, out: Path, datamodule: TabularDataModuleBase, evaluation: Evaluation) -> None:
        datamodule.spec.save(out / "feature_spec.json")
        if "survival" in evaluation.artifacts:  # the hazard temperature lives here, with the grid it applies to
            (out / SURVIVAL_FILE).write_text(json.dumps(evaluation.artifacts["survival"], indent=2))
        if datamodule.target_scaling is not None:
            datamodule.target_scaling.save(out / "target.json")
        if "classes" in evaluation.artifacts:  # multiclass: output column k is this class
            (out / CLASSES_FILE).write_text(json.dumps(evaluation.artifacts["classes"]))
        if "fairness" in evaluation.artifacts:
            (out / FAIRNESS_FILE).write_text(json.dumps(evaluation.artifacts["fairness"], indent=2))
        write_snapshot(datamodule.frames["test"].drop(columns=["split"], errors="ignore"), out / "holdout.parquet")
        if datamodule.scoring_rows is not None and datamodule.scoring_file:
            write_snapshot(datamodule.scoring_rows, out / datamodule.scoring_file)
        column_types = getattr(datamodule, "column_types", None)  # user tables: the inferred kind of each column
        if column_types is not None:
            (out / "column_types.json").write_text(json.dumps(column_types, indent=2))

    def export(
        self, run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
    ) -> tuple[ModelVersion, float]:
        return export_run(Path(run_dir), Path(models_dir), name, **options)

    def headline(self, metrics: dict[str, Any]) -> str:
        model = metrics["model"]
        if "integrated_brier" in model:
            return (
                f"C {model['concordance']:.4f}, integrated Brier {model['integrated_brier']:.4f}, "
                f"MAE(median) {model['mae_median_days']:.4f} days"
            )
        if "auc" in model:
            return f"AUC {model['auc']:.4f}"
        if "macro_f1" in model:
            return f"log loss {model['log_loss']:.4f}, macro-F1 {model['macro_f1']:.4f}"
        return f"RMSE {model['rmse']:.4f}, MAE {model['mae']:.4f}"

    def objective(self, metrics: dict[str, Any]) -> float:
        model = metrics["model"]
        if "integrated_brier" in model:  # survival: higher concordance is better
            return float(model["concordance"])
        if "macro_f1" in model:  # multiclass: lower log loss is better
            return -float(model["log_loss"])
        return float(model["auc"]) if "auc" in model else -float(model["rmse"])


def build_tabular_net(net_config: dict[str, Any], datamodule: TabularDataModuleBase) -> nn.Module:
    """The configured backbone sized by the fitted FeatureSpec."""
    spec = datamodule.spec
    return instantiate(
        net_config, n_continuous=len(spec.spec.numeric), cardinalities=spec.cardinalities, _convert_="all"
    )


def survival_edges(task_cfg: DictConfig) -> np.ndarray:
    """A survival task's validated bin edges."""
    if task_cfg.get("bin_edges") is None or task_cfg.get("horizon_days") is None:
        raise PipelineConfigError(
            f"task '{task_cfg.name}' is a survival task: set task.bin_edges and task.horizon_days"
        )
    return validate_bin_edges(list(task_cfg.bin_edges), float(task_cfg.horizon_days))


def task_module_config(task_cfg: DictConfig, kind: str) -> DictConfig:
    """The LightningModule config for the datamodule's target kind.

    A task with a fixed kind (`kind: binary`, the default, `regression` or `survival`) has one `module` and refuses
    data of another kind; a task with `kind: auto` (user tables) has `modules.binary` and `modules.regression`."""
    declared = task_cfg.get("kind", "binary")
    if declared == "auto":
        if kind not in task_cfg.modules:
            raise PipelineConfigError(f"task '{task_cfg.name}' has no module for a {kind} target")
        return task_cfg.modules[kind]
    if declared != kind:
        raise PipelineConfigError(
            f"task '{task_cfg.name}' trains a {declared} model but the data's target is {kind}; "
            f"choose a matching task (e.g. task=table for data=table)"
        )
    return task_cfg.module


def lightgbm_comparison(datamodule: TabularDataModuleBase, setting: str, seed: int, kind: str) -> dict[str, float]:
    """LightGBM on exactly this run's encoded splits: the reference the networks are expected to match."""
    arrays = {s: {**datamodule.spec.encode(datamodule.frames[s]), "target": datamodule.target(s)} for s in SPLITS}
    scaling = datamodule.target_scaling
    return lightgbm_holdout_report(
        arrays,
        datamodule.frames["test"]["label"].to_numpy(dtype=float),
        setting,
        seed,
        kind,
        decode=scaling.decode if scaling is not None else None,
    )
