"""Every tabular CRM task goes through the same train -> run dir -> export -> registry path.

Tiny data, six epochs: these check wiring and artifacts (metrics per kind, calibration inside the graph,
`prediction` output for regression, parity), not model quality (see the benchmark in the report)."""

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from fulqrun_ml.export.onnx_export import PREDICTION_OUTPUT, onnx_outputs
from fulqrun_ml.export.package import export_run
from fulqrun_ml.training.train import train

FAST = ["trainer.max_epochs=6", "trainer.enable_progress_bar=false", "logger=none", "model=mlp"]
BINARY_KEYS = {"auc", "log_loss", "brier", "ece", "accuracy", "n"}
REGRESSION_KEYS = {"mae", "rmse", "r2", "concordance", "n"}


@pytest.fixture(scope="module")
def lead_run(tmp_path_factory, compose_train) -> dict:
    root = tmp_path_factory.mktemp("lead")
    cfg = compose_train(
        root / "run", "task=lead_conversion", "task.calibration=isotonic", f"paths.root_dir={root}", *FAST
    )
    return train(cfg)


@pytest.fixture(scope="module")
def close_timing_run(tmp_path_factory, compose_train) -> dict:
    root = tmp_path_factory.mktemp("close")
    return train(compose_train(root / "run", "task=close_timing", f"paths.root_dir={root}", *FAST))


def test_lead_conversion_run_has_binary_metrics_isotonic_calibration_and_lightgbm(lead_run):
    run_dir = Path(lead_run["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"model", "model_uncalibrated", "oracle", "lightgbm"}
    for who in ("model", "model_uncalibrated", "oracle"):
        assert set(metrics[who]) >= BINARY_KEYS and metrics[who]["n"] == lead_run["sizes"]["test_rows"]
    assert metrics["oracle"]["auc"] > 0.65 and metrics["model"]["auc"] > 0.55 and metrics["lightgbm"]["auc"] > 0.55
    calibration = json.loads((run_dir / "calibration.json").read_text())
    assert calibration["method"] == "isotonic" and calibration["fitted_on"]["split"] == "val"
    assert (run_dir / "open_leads.parquet").is_file() and (run_dir / "plots" / "calibration.png").is_file()
    assert lead_run["kind"] == "binary" and lead_run["extra"]["leakage_audit"]["violations"] == 0


def test_lead_conversion_exports_isotonic_probability_graph(lead_run, tmp_path):
    version, parity = export_run(Path(lead_run["run_dir"]), tmp_path / "models", "lead_conversion")
    assert parity < 1e-3  # per-row tolerance: strict except on near-vertical isotonic steps
    graph = onnx.load(str(version.path / "model.onnx"))
    assert [o.name for o in graph.graph.output] == ["probability"]
    assert json.loads((version.path / "calibration.json").read_text())["method"] == "isotonic"
    assert version.metadata["target_kind"] == "binary" and "holdout_auc" in version.metadata


def test_close_timing_run_is_a_regression_against_stage_medians(close_timing_run):
    run_dir = Path(close_timing_run["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"model", "stage_median", "lightgbm"}
    for report in metrics.values():
        assert set(report) >= REGRESSION_KEYS and report["rmse"] >= report["mae"] > 0
    assert (run_dir / "target.json").is_file() and not (run_dir / "calibration.json").exists()
    assert close_timing_run["kind"] == "regression"
    assert metrics["model"]["concordance"] > 0.55  # it ranks deals by time to close better than chance


def test_close_timing_exports_a_prediction_in_days_matching_pytorch(close_timing_run, tmp_path):
    run_dir = Path(close_timing_run["run_dir"])
    version, parity = export_run(run_dir, tmp_path / "models", "close_timing")
    graph = onnx.load(str(version.path / "model.onnx"))
    assert [o.name for o in graph.graph.output] == [PREDICTION_OUTPUT]
    assert version.metadata["outputs"] == [{"name": "prediction", "dtype": "float32"}]
    assert version.metadata["target_kind"] == "regression" and version.metadata["holdout_mae"] > 0
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    from fulqrun_ml.features.spec import FittedFeatureSpec

    days = onnx_outputs(version.path / "model.onnx", FittedFeatureSpec.load(version.path / "feature_spec.json"),
                        holdout, PREDICTION_OUTPUT)  # fmt: skip
    assert parity < 1e-2 and np.all(days > -1) and 1 < np.median(days) < 180
