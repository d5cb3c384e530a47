"""The next-best-action pipeline plugin: `fulqrun-ml train task=nba_uplift` trains the DR-learner's effect network
through the same train() spine as every model (Hydra config, W&B offline run, run record), and `fulqrun-ml export`
publishes it to the registry as one ONNX graph: raw deal-state columns -> `uplift` and `uplift_sd` per arm.

What the spine holds as is: the arms are the ensemble members (each a tabular backbone with one output per
non-reference arm, `model=...` chooses it), the LightningModule is `UpliftTask` (MSE on DR pseudo-outcomes with
Poisson bootstrap weights), early stopping on validation loss. The one adaptation: the nuisance models (scikit-learn
logistic regressions) are fitted inside the datamodule's setup, not by Lightning, because they are not networks.
Evaluation judges the policies on the simulator's true counterfactuals (recommend/study.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fulqrun_ml.data.snapshot_files import read_snapshot, write_snapshot
from fulqrun_ml.errors import ExportParityError
from fulqrun_ml.export.onnx_export import merge_with_preprocessing, raw_feeds, torch_to_onnx
from fulqrun_ml.export.package import finished_run, publish_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.recommend.actions import effect_outputs
from fulqrun_ml.recommend.datamodule import UpliftDataModule
from fulqrun_ml.recommend.effect_model import UPLIFT, UPLIFT_SD, EnsembleUplift, predict_uplift
from fulqrun_ml.recommend.study import OURS, compare_learners
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.training.pipeline import Arm, Capabilities, Evaluation, FittedArm, Pipeline

PROPENSITY_FILE, HOLDOUT_FILE, SPEC_FILE = "propensity.json", "holdout.parquet", "feature_spec.json"
PARITY_ATOL = 1e-4


class UpliftPipeline(Pipeline):
    families: ClassVar[tuple[str, ...]] = ("tabular",)

    def capabilities(self, kind: str) -> Capabilities:
        return Capabilities(resume=False, warm_start=False, ddp=False)

    def build_datamodule(self, cfg: DictConfig) -> UpliftDataModule:
        return instantiate(cfg.task.datamodule, _convert_="all")

    def target_kind(self, cfg: DictConfig, datamodule: UpliftDataModule) -> str:
        # The run record knows binary | regression | survival | forecast; the effect network is a (multi-output)
        # regression on DR pseudo-outcomes, which is what it records. The task name says it is an uplift model.
        return "regression"

    def default_monitor(self, kind: str) -> tuple[str, str]:
        return ("val/loss", "min")

    def arms(self, cfg: DictConfig, datamodule: UpliftDataModule, kind: str) -> list[Arm]:
        def builder(seed: int) -> Any:
            def build() -> tuple[nn.Module, dict[str, Any]]:
                net_config = OmegaConf.to_container(cfg.model.net, resolve=True)
                net_config |= {
                    "n_continuous": len(datamodule.spec.spec.numeric),
                    "cardinalities": datamodule.spec.cardinalities,
                    "n_outputs": datamodule.n_outputs,
                }
                self._bootstrap_seed = seed  # the arm being built; build_module follows at once (train.fit_arm)
                return instantiate(net_config, _convert_="all"), net_config

            return build

        members = int(cfg.task.members)
        return [
            Arm(
                "model" if m == 0 else f"member_{m}",
                int(cfg.seed) + m,
                "" if m == 0 else f"member_{m}",
                builder(int(cfg.seed) + m),
            )
            for m in range(members)
        ]

    def build_module(self, cfg: DictConfig, net: nn.Module, datamodule: UpliftDataModule, kind: str) -> Any:
        return instantiate(
            cfg.task.module, net=net, bootstrap_seed=self._bootstrap_seed, n_rows=datamodule.sizes["train"]
        )

    def evaluate(
        self, cfg: DictConfig, datamodule: UpliftDataModule, fitted: list[FittedArm], kind: str, calibration: str | None
    ) -> Evaluation:
        ensemble = EnsembleUplift([f.net for f in fitted]).eval()
        metrics = compare_learners(datamodule, ensemble, int(cfg.seed))
        net_config = {"members": [f.net_config for f in fitted], "outputs": [list(o) for o in effect_outputs()]}
        propensity = {c: [asdict(m) for m in models] for c, models in datamodule.nuisance.propensity_models.items()}
        return Evaluation(metrics, ensemble, net_config, artifacts={"propensity": propensity})

    def write_artifacts(self, out: Path, datamodule: UpliftDataModule, evaluation: Evaluation) -> None:
        datamodule.spec.save(out / SPEC_FILE)
        (out / PROPENSITY_FILE).write_text(json.dumps(evaluation.artifacts["propensity"]))
        write_snapshot(datamodule.frames["test"], out / HOLDOUT_FILE)

    def data_window(self, datamodule: UpliftDataModule) -> dict[str, dict[str, Any]]:
        return {
            s: {"rows": len(f), "from": str(f["as_of"].min().date()), "to": str(f["as_of"].max().date())}
            for s, f in datamodule.frames.items()
        }

    def export(
        self, run_dir: Path, models_dir: Path, name: str | None = None, **options: Any
    ) -> tuple[ModelVersion, float]:
        run_dir = Path(run_dir)
        record = finished_run(
            run_dir, ("net_state.pt", SPEC_FILE, PROPENSITY_FILE, HOLDOUT_FILE), options, "uplift run"
        )
        spec = FittedFeatureSpec.load(run_dir / SPEC_FILE)
        ensemble = load_ensemble(record.net_config, run_dir / "net_state.pt")
        graph = export_uplift_onnx(ensemble, spec)
        parity = uplift_parity(graph, ensemble, spec, read_snapshot(run_dir / HOLDOUT_FILE))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        metrics["export_parity_max_abs_diff"] = parity
        k = len(record.net_config["outputs"])
        metadata = {
            "inputs": [{"name": f.name, "dtype": "float32", "shape": [-1, 1]} for f in spec.spec.numeric]
            + [{"name": f.name, "dtype": "string", "shape": [-1, 1]} for f in spec.spec.categorical],
            "outputs": [{"name": o, "dtype": "float32", "shape": [-1, k]} for o in (UPLIFT, UPLIFT_SD)],
            "effect_outputs": record.net_config["outputs"],
            "learner": OURS,
            "parity_max_abs_diff": parity,
        }
        copies = ("net_state.pt", SPEC_FILE, PROPENSITY_FILE)
        return publish_run(models_dir, name, run_dir, record, graph, copies, metrics, metadata), parity

    def headline(self, metrics: dict[str, Any]) -> str:
        fractions = metrics["lift_fraction_of_oracle"]
        return "lift fraction of oracle " + ", ".join(f"{n} {v:.3f}" for n, v in fractions.items())

    def objective(self, metrics: dict[str, Any]) -> float:
        return float(metrics["lift_fraction_of_oracle"][OURS])


def load_ensemble(net_config: dict[str, Any], state_path: Path) -> EnsembleUplift:
    """The trained members rebuilt from their recorded constructor configs and the saved weights."""
    ensemble = EnsembleUplift([instantiate(c, _convert_="all") for c in net_config["members"]])
    ensemble.load_state_dict(torch.load(state_path, weights_only=True))
    return ensemble.eval()


def export_uplift_onnx(ensemble: EnsembleUplift, spec: FittedFeatureSpec) -> Any:
    """Preprocessing + the ensemble as one graph: raw columns -> `uplift`, `uplift_sd` [N, K]."""
    example = (
        torch.zeros(2, len(spec.spec.numeric), dtype=torch.float32),
        torch.zeros(2, len(spec.spec.categorical), dtype=torch.int64),
    )
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    network = torch_to_onnx(
        ensemble, example, ["continuous", "categorical"], [UPLIFT, UPLIFT_SD], ({0: batch}, {0: batch})
    )
    return merge_with_preprocessing(network, spec, public_names=(UPLIFT, UPLIFT_SD), graph_name="fulqrun_nba_uplift")


def uplift_parity(graph: Any, ensemble: EnsembleUplift, spec: FittedFeatureSpec, holdout: pd.DataFrame) -> float:
    """Max |ONNX - torch| of `uplift` on the holdout rows; above PARITY_ATOL is an error."""
    import onnxruntime as ort

    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_uplift = session.run([UPLIFT], raw_feeds(spec, holdout))[0]
    torch_uplift, _ = predict_uplift(ensemble, spec, holdout)
    gap = float(np.abs(onnx_uplift - torch_uplift).max())
    if gap > PARITY_ATOL:
        raise ExportParityError(f"uplift graph differs from torch by {gap:.2e} (> {PARITY_ATOL})")
    return gap
