"""The sequence-fusion pipeline: tabular features + each deal's activity sequence, and its tabular-only ablation.

`fulqrun-ml train task=deal_win_sequence model=sequence_fusion`. Two arms train by the same loop: the fused
model, and (unless `task.sequence.ablation=false`) the exact tabular-only ablation (`use_sequence=false`, same
seed, recipe and calibration) in `tabular_only/`. metrics.json scores both on the same holdout rows, with the
rep's probability, the oracle and `sequence_gain` (fused minus tabular-only).

Own run files: feature_spec.json, sequence_vocab.json (token vocabularies fitted on the training split),
holdout.parquet + holdout_sequences.npz (row order shared), open_deals.parquet + open_deals_sequences.npz,
tabular_only/net_state.pt + net_config.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fulqrun_ml.data.snapshot_files import write_snapshot, write_snapshot_arrays
from fulqrun_ml.data.snapshots import WEIGHT_COLUMN
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.sequence.datamodule import DealWinSequenceDataModule
from fulqrun_ml.sequence.export import export_sequence_run
from fulqrun_ml.sequence.pretrain import apply_pretrained, load_pretrained_encoder
from fulqrun_ml.sequence.task import predict_sequence_logits, predict_sequence_probabilities
from fulqrun_ml.tasks.calibration import CALIBRATION_METHODS, fit_calibration
from fulqrun_ml.tasks.metrics import binary_report
from fulqrun_ml.training.pipeline import Arm, Capabilities, Evaluation, FittedArm, Pipeline

ABLATION_DIR = "tabular_only"
DATAMODULE = f"{DealWinSequenceDataModule.__module__}.{DealWinSequenceDataModule.__qualname__}"


class SequenceFusionPipeline(Pipeline):
    families: ClassVar[tuple[str, ...]] = ("sequence",)

    def capabilities(self, kind: str) -> Capabilities:
        return Capabilities(calibration=CALIBRATION_METHODS, default_calibration="temperature")

    def build_datamodule(self, cfg: DictConfig) -> DealWinSequenceDataModule:
        """`cfg.data` as a sequence datamodule: any deal-win data config (simulator, Parquet, PostgreSQL) keeps
        its source and split settings; the sequence length comes from `task.sequence.max_len`."""
        data = OmegaConf.to_container(cfg.data, resolve=True)
        data["_target_"] = DATAMODULE
        data["max_len"] = int(cfg.task.sequence.max_len)
        return instantiate(OmegaConf.create(data))

    def target_kind(self, cfg: DictConfig, datamodule: DealWinSequenceDataModule) -> str:
        return "binary"

    def arms(self, cfg: DictConfig, datamodule: DealWinSequenceDataModule, kind: str) -> list[Arm]:
        def builder(use_sequence: bool) -> Any:
            def build() -> tuple[nn.Module, dict[str, Any]]:
                net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
                net_config.update(datamodule.vocabulary.sizes, max_len=datamodule.max_len, use_sequence=use_sequence)
                spec = datamodule.spec
                net = instantiate(
                    net_config, n_continuous=len(spec.spec.numeric), cardinalities=spec.cardinalities, _convert_="all"
                )
                pretrained = cfg.task.sequence.get("init_from")
                if use_sequence and pretrained:  # a CoLES encoder from the registry (sequence/pretrain.py)
                    state, _, lineage = load_pretrained_encoder(cfg.paths.models_dir, pretrained, datamodule.vocabulary)
                    freeze = bool(cfg.task.sequence.get("freeze", False))
                    apply_pretrained(net.sequence, state, freeze)
                    self.pretrained_encoder = {**lineage, "freeze": freeze}
                return net, net_config

            return build

        use_sequence = bool(cfg.model.net.get("use_sequence", True))
        arms = [Arm("model", int(cfg.seed), "", builder(use_sequence))]
        if cfg.task.sequence.get("ablation", True) and use_sequence:
            # Same seed: the same tabular initialisation as the fused arm, so the difference is the sequence.
            arms.append(Arm(ABLATION_DIR, int(cfg.seed), ABLATION_DIR, builder(False)))
        return arms

    def warm_start(self, net: nn.Module, net_config: dict[str, Any], arm: Arm, parent: Any, init_from: str) -> None:
        """The fused model starts from the parent's; the ablation starts fresh, as in any run, because a published
        version holds only the fused network and the ablation measures what the sequence adds from the same start."""
        if arm.name == "model":
            super().warm_start(net, net_config, arm, parent, init_from)

    def build_module(self, cfg: DictConfig, net: nn.Module, datamodule: DealWinSequenceDataModule, kind: str) -> Any:
        return instantiate(cfg.task.module, net=net)

    def evaluate(
        self,
        cfg: DictConfig,
        datamodule: DealWinSequenceDataModule,
        fitted: list[FittedArm],
        kind: str,
        calibration: str | None,
    ) -> Evaluation:
        holdout = datamodule.frames["test"]
        labels = holdout["label"].to_numpy()
        record, probs, raw = calibrated_holdout(fitted[0].net, datamodule, calibration)
        metrics: dict[str, Any] = {
            "model": binary_report(probs, labels),
            "model_uncalibrated": binary_report(raw, labels),
        }
        scores = {"model": probs}
        artifacts: dict[str, Any] = {}
        extra: dict[str, Any] = {
            "sequence": {
                "max_len": datamodule.max_len,
                "vocabulary": datamodule.vocabulary.sizes,
                "pretrained_encoder": getattr(self, "pretrained_encoder", None),
            },
            "leakage_audit": datamodule.leakage_audit,
        }
        if len(fitted) > 1:
            ablation = fitted[1]
            _, tab_probs, _ = calibrated_holdout(ablation.net, datamodule, calibration)
            metrics["tabular_only"] = binary_report(tab_probs, labels)
            scores["tabular_only"] = tab_probs
            artifacts["ablation"] = {"net": ablation.net, "net_config": ablation.net_config}
        for who, column in datamodule.baseline_columns.items():
            metrics[who] = binary_report(holdout[column].to_numpy(), labels)
            scores[who] = holdout[column].to_numpy()
        if "tabular_only" in metrics:
            metrics["sequence_gain"] = {
                k: metrics["model"][k] - metrics["tabular_only"][k] for k in ("auc", "log_loss", "ece", "brier")
            }
        return Evaluation(metrics, fitted[0].net, fitted[0].net_config, record, scores, extra, artifacts)

    def write_artifacts(self, out: Path, datamodule: DealWinSequenceDataModule, evaluation: Evaluation) -> None:
        datamodule.spec.save(out / "feature_spec.json")
        datamodule.vocabulary.save(out / "sequence_vocab.json")
        write_snapshot(datamodule.frames["test"].drop(columns=["split"]), out / "holdout.parquet")
        write_snapshot_arrays(datamodule.sequences["test"], out / "holdout_sequences.npz")
        write_snapshot(datamodule.open_deals, out / "open_deals.parquet")
        write_snapshot_arrays(datamodule.open_deal_sequences, out / "open_deals_sequences.npz")
        ablation = evaluation.artifacts.get("ablation")
        if ablation is not None:
            (out / ABLATION_DIR).mkdir(exist_ok=True)
            torch.save(ablation["net"].state_dict(), out / ABLATION_DIR / "net_state.pt")
            (out / ABLATION_DIR / "net_config.json").write_text(json.dumps(ablation["net_config"], indent=2))

    def export(
        self, run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
    ) -> tuple[ModelVersion, float]:
        return export_sequence_run(Path(run_dir), Path(models_dir), name, **options)

    def headline(self, metrics: dict[str, Any]) -> str:
        tabular = metrics.get("tabular_only")
        ablation = f", tabular-only {tabular['auc']:.4f}" if tabular else ""
        return f"AUC {metrics['model']['auc']:.4f}{ablation}"

    def objective(self, metrics: dict[str, Any]) -> float:
        return float(metrics["model"]["auc"])


def calibrated_holdout(
    net: nn.Module, datamodule: DealWinSequenceDataModule, method: str | None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """The configured calibration fitted on the (censoring-weighted) validation split, and the calibrated and
    uncalibrated holdout probabilities."""
    spec = datamodule.spec
    val = datamodule.frames["val"]
    weights = val[WEIGHT_COLUMN].to_numpy() if WEIGHT_COLUMN in val else None
    val_logits = predict_sequence_logits(net, {**spec.encode(val), **datamodule.sequences["val"]})
    record = fit_calibration(method or "temperature", val_logits, val["label"].to_numpy(), split="val", weights=weights)
    test = {**spec.encode(datamodule.frames["test"]), **datamodule.sequences["test"]}
    return record, predict_sequence_probabilities(net, test, record), predict_sequence_probabilities(net, test)
