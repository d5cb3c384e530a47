"""The event-table pipeline: any user event history, its derived aggregates and their fusion (`task=events`).

`fulqrun-ml train task=events data.events_path=E.csv data.labels_path=L.csv data.entity_col=... ...`. Three
arms train by the same loop, seed and recipe: the model (`model.net.mode`, fusion by default) and, unless
`task.ablation=false`, the aggregates-only network and the sequence-only network (in `aggregates_only/` and
`sequence_only/`). metrics.json scores all three on the same holdout rows next to LightGBM on the same
aggregates and split (`task.compare_lightgbm`), with `fusion_minus_lightgbm`.

Own run files: feature_spec.json (the aggregates), sequence_vocab.json (the fitted `EventEncoder`),
column_types.json (how each event column was used), holdout.parquet + holdout_sequences.npz (row order shared),
target.json (regression), and each ablation's net_state.pt + net_config.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from fulqrun_ml.data.snapshot_files import write_snapshot, write_snapshot_arrays
from fulqrun_ml.evaluation.lightgbm_baseline import lightgbm_holdout_report
from fulqrun_ml.models.event_fusion import EventFusion
from fulqrun_ml.pipelines.tabular import task_module_config
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.event_datamodule import EventTableDataModule
from fulqrun_ml.sequence.event_export import export_event_run
from fulqrun_ml.sequence.pretrain import apply_pretrained, load_pretrained_encoder
from fulqrun_ml.tasks.binary import predict_logits, predict_probabilities
from fulqrun_ml.tasks.calibration import CALIBRATION_METHODS, fit_calibration
from fulqrun_ml.tasks.metrics import binary_report, regression_report
from fulqrun_ml.training.pipeline import Arm, Capabilities, Evaluation, FittedArm, Pipeline

log = logging.getLogger(__name__)
EVENT_BACKBONE = f"{EventFusion.__module__}.{EventFusion.__qualname__}"
ABLATIONS = {"aggregates_only": "aggregates", "sequence_only": "sequence"}
SPLITS = ("train", "val", "test")


class EventPipeline(Pipeline):
    families: ClassVar[tuple[str, ...]] = ("sequence",)

    def check(self, cfg: DictConfig) -> None:
        """task=events trains the event backbone; a tabular model group (the train default, mlp) is replaced by
        configs/model/event_fusion.yaml, logged, because Hydra cannot let the task config override it."""
        if cfg.model.net.get("_target_") != EVENT_BACKBONE:
            log.warning("task=events trains model=event_fusion; model=%s is replaced", cfg.model.get("name"))
            with open_dict(cfg):
                cfg.model = OmegaConf.load(CONFIG_DIR / "model" / "event_fusion.yaml")
        super().check(cfg)

    def capabilities(self, kind: str) -> Capabilities:
        if kind == "binary":
            return Capabilities(calibration=CALIBRATION_METHODS, default_calibration="temperature")
        return Capabilities()

    def build_datamodule(self, cfg: DictConfig) -> EventTableDataModule:
        return instantiate(cfg.data, _convert_="all")

    def target_kind(self, cfg: DictConfig, datamodule: EventTableDataModule) -> str:
        task_module_config(cfg.task, datamodule.target_kind)
        return datamodule.target_kind

    def arms(self, cfg: DictConfig, datamodule: EventTableDataModule, kind: str) -> list[Arm]:
        def builder(mode: str) -> Any:
            def build() -> tuple[nn.Module, dict[str, Any]]:
                net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
                encoder = datamodule.encoder
                net_config.update(
                    mode=mode,
                    token_sizes=encoder.token_sizes,
                    value_fields=list(encoder.value_fields),
                    max_len=encoder.max_len,
                )
                spec = datamodule.spec
                net = instantiate(
                    net_config, n_continuous=len(spec.spec.numeric), cardinalities=spec.cardinalities, _convert_="all"
                )
                self._apply_pretrained(cfg, net, datamodule)
                return net, net_config

            return build

        mode = str(cfg.model.net.get("mode", "fusion"))
        arms = [Arm("model", int(cfg.seed), "", builder(mode))]
        if cfg.task.get("ablation", True):
            arms += [Arm(name, int(cfg.seed), name, builder(m)) for name, m in ABLATIONS.items() if m != mode]
        return arms

    def _apply_pretrained(self, cfg: DictConfig, net: nn.Module, datamodule: EventTableDataModule) -> None:
        """`task.sequence.init_from`: a CoLES encoder (sequence/event_pretrain.py) into every arm that has one."""
        sequence = cfg.task.get("sequence") or {}
        ref = sequence.get("init_from")
        if not ref or not hasattr(net, "sequence"):
            return
        state, _, lineage = load_pretrained_encoder(cfg.paths.models_dir, ref, datamodule.encoder)
        freeze = bool(sequence.get("freeze", False))
        apply_pretrained(net.sequence, state, freeze)
        self.pretrained_encoder = {**lineage, "freeze": freeze}

    def build_module(self, cfg: DictConfig, net: nn.Module, datamodule: EventTableDataModule, kind: str) -> Any:
        return instantiate(task_module_config(cfg.task, kind), net=net)

    def evaluate(
        self,
        cfg: DictConfig,
        datamodule: EventTableDataModule,
        fitted: list[FittedArm],
        kind: str,
        calibration: str | None,
    ) -> Evaluation:
        arrays = {s: {**datamodule.spec.encode(datamodule.frames[s]), **datamodule.sequences[s]} for s in SPLITS}
        labels = datamodule.frames["test"]["label"].to_numpy(dtype=np.float64)
        metrics: dict[str, Any] = {}
        scores: dict[str, np.ndarray] = {}
        record = None
        for i, arm in enumerate(fitted):
            who = "model" if i == 0 else arm.arm.name
            if kind == "binary":
                logits = predict_logits(arm.net, arrays["val"])
                val_labels = datamodule.frames["val"]["label"].to_numpy()
                fitted_record = fit_calibration(calibration or "temperature", logits, val_labels, split="val")
                probs = predict_probabilities(arm.net, arrays["test"], fitted_record)
                metrics[who] = binary_report(probs, labels)
                scores[who] = probs
                if i == 0:
                    record = fitted_record
                    metrics["model_uncalibrated"] = binary_report(
                        predict_probabilities(arm.net, arrays["test"]), labels
                    )
            else:
                values = datamodule.target_scaling.decode(predict_logits(arm.net, arrays["test"]))
                metrics[who] = regression_report(values, labels)
        setting = cfg.task.get("compare_lightgbm")
        if setting:
            lgb_arrays = {
                s: {**datamodule.spec.encode(datamodule.frames[s]), "target": datamodule.target(s)} for s in SPLITS
            }
            scaling = datamodule.target_scaling
            metrics["lightgbm"] = lightgbm_holdout_report(
                lgb_arrays, labels, setting, int(cfg.seed), kind, decode=scaling.decode if scaling else None
            )
            key = "auc" if kind == "binary" else "rmse"
            metrics["model_minus_lightgbm"] = {key: metrics["model"][key] - metrics["lightgbm"][key]}
        extra = {
            "model_mode": fitted[0].net_config.get("mode"),
            "split": datamodule.split_used,
            "event_columns": datamodule.column_types,
            "sequence_fields": list(datamodule.encoder.sequence_fields),
            "leakage_audit": datamodule.leakage_audit,
            "lightgbm_setting": setting,
            "pretrained_encoder": getattr(self, "pretrained_encoder", None),
        }
        artifacts = {"ablations": {f.arm.name: f for f in fitted[1:]}}
        return Evaluation(
            metrics,
            fitted[0].net,
            fitted[0].net_config,
            record,
            scores if kind == "binary" else None,
            extra,
            artifacts,
        )

    def write_artifacts(self, out: Path, datamodule: EventTableDataModule, evaluation: Evaluation) -> None:
        datamodule.spec.save(out / "feature_spec.json")
        datamodule.encoder.save(out / "sequence_vocab.json")
        (out / "column_types.json").write_text(json.dumps(datamodule.column_types, indent=2))
        if datamodule.target_scaling is not None:
            datamodule.target_scaling.save(out / "target.json")
        write_snapshot(datamodule.frames["test"].drop(columns=["split"]), out / "holdout.parquet")
        write_snapshot_arrays(datamodule.sequences["test"], out / "holdout_sequences.npz")
        for name, arm in evaluation.artifacts.get("ablations", {}).items():
            (out / name).mkdir(exist_ok=True)
            torch.save(arm.net.state_dict(), out / name / "net_state.pt")
            (out / name / "net_config.json").write_text(json.dumps(arm.net_config, indent=2))

    def export(
        self, run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
    ) -> tuple[ModelVersion, float]:
        return export_event_run(Path(run_dir), Path(models_dir), name, **options)

    def headline(self, metrics: dict[str, Any]) -> str:
        key = "auc" if "auc" in metrics["model"] else "rmse"
        parts = [f"{key.upper()} {metrics['model'][key]:.4f}"]
        for who in ("aggregates_only", "sequence_only", "lightgbm"):
            if who in metrics:
                parts.append(f"{who} {metrics[who][key]:.4f}")
        return ", ".join(parts)

    def objective(self, metrics: dict[str, Any]) -> float:
        model = metrics["model"]
        return float(model["auc"]) if "auc" in model else -float(model["rmse"])
