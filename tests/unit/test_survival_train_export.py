"""A tiny close-timing survival model through the real CLI path: Hydra config -> train -> metrics.json with the
KM baselines -> export -> ONNX parity with PyTorch on both outputs; and a bad grid refused before any data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from fulqrun_ml.export.onnx_export import raw_feeds
from fulqrun_ml.export.package import export_run, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.tasks.survival import predict_curves
from fulqrun_ml.tasks.survival_grid import SurvivalConfigError
from fulqrun_ml.tasks.survival_holdout import evaluate_survival_run
from fulqrun_ml.training.train import train

FAST = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger=none"]


@pytest.fixture(scope="module")
def survival_run(compose_train, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("survival")
    cfg = compose_train(root / "run", "task=close_timing_survival", "model=mlp", *FAST, f"paths.root_dir={root}")
    return train(cfg)


def test_train_writes_model_and_km_metrics_and_the_grid(survival_run):
    run_dir = Path(survival_run["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"model", "model_uncalibrated", "km_stage", "km_pooled"}
    for who in metrics.values():
        assert 0.0 <= who["concordance"] <= 1.0 and 0.0 <= who["integrated_brier"] <= 1.0
        assert who["n"] == survival_run["sizes"]["test_rows"] and np.isfinite(who["nll"])
    assert metrics["km_pooled"]["concordance"] == 0.5  # one curve for everyone ranks nobody
    record = json.loads((run_dir / "survival.json").read_text())
    assert record["bin_edges"] == list(range(0, 92, 7)) and record["calibration"]["temperature"] > 0
    fitted_on = record["calibration"]["fitted_on"]  # the hazard temperature saw the validation rows only
    assert fitted_on["split"] == "val" and fitted_on["rows"] == survival_run["sizes"]["val_rows"]
    assert survival_run["calibration"] == record["calibration"]  # the run record says the same
    assert survival_run["net_config"]["n_outputs"] == 13
    # The leaderboard's entry point reproduces metrics.json from the run directory and the holdout alone.
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    again = evaluate_survival_run(run_dir, holdout, load_trained_net(run_dir, spec), spec)
    for who in ("model", "km_stage", "km_pooled"):
        assert again[who]["concordance"] == pytest.approx(metrics[who]["concordance"], abs=1e-9)
        assert again[who]["integrated_brier"] == pytest.approx(metrics[who]["integrated_brier"], rel=1e-5)


def test_export_parity_and_curve_shape(survival_run, tmp_path):
    run_dir = Path(survival_run["run_dir"])
    version, parity = export_run(run_dir, tmp_path / "models")
    assert version.name == "close_timing_survival" and parity <= 1e-5
    assert (version.path / "survival.json").is_file()
    metadata = json.loads((version.path / "metadata.json").read_text())
    assert metadata["target_kind"] == "survival" and len(metadata["bin_edges"]) == 14
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    holdout = pd.read_parquet(run_dir / "holdout.parquet").head(200)
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    cdf, expected = session.run(["close_probability", "expected_days"], raw_feeds(spec, holdout))
    assert cdf.shape == (len(holdout), 13) and expected.shape == (len(holdout),)
    assert np.all(np.diff(cdf, axis=1) >= 0) and np.all((cdf >= 0) & (cdf <= 1))
    assert np.all((expected >= 0) & (expected <= 91))
    temperature = metadata["calibration"]["temperature"]
    torch_cdf, torch_expected = predict_curves(
        load_trained_net(run_dir, spec), spec.encode(holdout), metadata["bin_edges"], temperature
    )
    assert np.abs(cdf - torch_cdf).max() <= 1e-5
    assert np.abs(expected - torch_expected).max() <= 1e-5 * 91


def test_bad_grid_is_refused_before_any_data_is_built(compose_train, tmp_path):
    cfg = compose_train(
        tmp_path / "run", "task=close_timing_survival", "model=mlp", *FAST, "task.bin_edges=[0,14,7,91]"
    )
    with pytest.raises(SurvivalConfigError, match=r"task.bin_edges: edges must be sorted ascending"):
        train(cfg)
    cfg = compose_train(tmp_path / "run", "task=close_timing_survival", "model=mlp", *FAST, "task.bin_edges=[0,7,100]")
    with pytest.raises(SurvivalConfigError, match=r"edge 100 lies beyond task.horizon_days=91"):
        train(cfg)


def test_a_callback_without_a_monitor_watches_the_validation_nll_of_a_survival_run(survival_run):
    from fulqrun_ml.pipelines.tabular import TabularPipeline

    assert TabularPipeline().default_monitor("survival") == ("val/loss", "min")
    config = survival_run["config"]
    assert config["task"]["monitor"] == config["callbacks"]["early_stopping"]["monitor"] == "val/loss"


def test_bulk_scoring_writes_one_column_per_bin_and_the_expected_days(survival_run, tmp_path):
    from fulqrun_ml.scoring.bulk import score_table

    run_dir = Path(survival_run["run_dir"])
    version, _ = export_run(run_dir, tmp_path / "models")
    spec = FittedFeatureSpec.load(version.path / "feature_spec.json")
    holdout = pd.read_parquet(run_dir / "holdout.parquet").head(300)
    source = tmp_path / "open_deals.parquet"
    holdout[["opportunity_id", *spec.spec.names]].to_parquet(source)
    result = score_table(version, source, tmp_path / "scores.parquet", chunk_rows=128)
    scored = pd.read_parquet(result.output)
    bins = [f"close_probability_{edge}d" for edge in range(7, 92, 7)]
    assert list(scored.columns) == ["opportunity_id", *bins, "expected_days"]
    session = ort.InferenceSession(str(version.path / "model.onnx"), providers=["CPUExecutionProvider"])
    cdf, expected = session.run(["close_probability", "expected_days"], raw_feeds(spec, holdout))
    np.testing.assert_allclose(scored[bins].to_numpy(), cdf, atol=1e-7)
    np.testing.assert_allclose(scored["expected_days"].to_numpy(), expected, atol=1e-5)
    assert scored["opportunity_id"].tolist() == holdout["opportunity_id"].tolist()
