"""`train task=lifecycle_stage` and `train task=csat` through the one tabular spine, then export and publish.

Broken once on purpose: a graph without the softmax (raw logits) fails the sums-to-one check; a temperature left
out of the graph fails export parity.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from fulqrun_ml.export.multiclass_export import CLASS_PROBABILITY
from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.export.package import export_run
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.training.pipeline import PipelineConfigError
from fulqrun_ml.training.train import train

FAST = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none"]


def test_lifecycle_stage_trains_exports_and_publishes(tmp_path: Path, compose_train) -> None:
    cfg = compose_train(tmp_path / "run", "task=lifecycle_stage", *FAST, f"paths.root_dir={tmp_path}")
    result = train(cfg)
    run_dir = Path(result["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"model", "empirical", "persistence", "oracle"} <= set(metrics)
    for who in ("model", "empirical", "oracle"):
        assert set(metrics[who]["ece_by_class"]) == {"onboarding", "adoption", "expansion", "at_risk", "churned"}
    # The story's truth beats the Markov-chain estimate, which beats "nothing changes" on log loss.
    assert metrics["oracle"]["log_loss"] < metrics["empirical"]["log_loss"] < metrics["persistence"]["log_loss"]
    audit = json.loads((run_dir / "run_info.json").read_text())["extra"]["leakage_audit"]
    assert audit["violations"] == 0 and audit["recomputed_rows"] > 0 and not audit["recompute_mismatches"]

    version, parity = export_run(run_dir, tmp_path / "models")
    assert parity < 1e-5 and version.name == "lifecycle_stage"
    assert version.metadata["target_kind"] == "multiclass"
    assert version.metadata["classes"] == json.loads((version.path / "classes.json").read_text())
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run([CLASS_PROBABILITY], raw_feeds(spec, holdout))[0]
    assert probabilities.shape == (len(holdout), 5)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (version.path / "MODEL_CARD.md").is_file()


def test_csat_trains_as_a_regression_on_the_same_spine(tmp_path: Path, compose_train) -> None:
    cfg = compose_train(tmp_path / "run", "task=csat", *FAST, f"paths.root_dir={tmp_path}")
    run_dir = Path(train(cfg)["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"model", "last_score", "train_mean", "oracle", "lightgbm"} <= set(metrics)
    assert metrics["oracle"]["mae"] < metrics["train_mean"]["mae"]  # the truth explains the scores
    version, _ = export_run(run_dir, tmp_path / "models")
    assert version.metadata["target_kind"] == "regression"


def test_a_single_output_backbone_is_refused_for_multiclass(tmp_path: Path, compose_train) -> None:
    from fulqrun_ml.pipelines.tabular import TabularPipeline

    cfg = compose_train(tmp_path / "run", "task=lifecycle_stage", *FAST)
    cfg.model.net._target_ = "fulqrun_ml.models.mlp.MLP"
    TabularPipeline().check(cfg)  # the MLP has one output per class
    with pytest.raises(PipelineConfigError, match="one per class"):
        cfg.task.kind = "multiclass"
        cfg.model.net._target_ = "tests.unit.test_lifecycle_train.SingleOutput"
        TabularPipeline().check(cfg)


class SingleOutput:
    FAMILY, MULTI_OUTPUT = "tabular", False
