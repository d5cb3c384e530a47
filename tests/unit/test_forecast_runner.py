"""`fulqrun-ml train task=revenue_forecast` end to end on tiny data: Lightning + W&B offline, conformal
calibration, rolling-origin backtest, run dir; then ONNX export with parity and an atomic registry publish."""

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.forecasting.export import export_forecast_run, onnx_quantiles
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.store import get_version
from fulqrun_ml.training.train import train

FORECASTERS = {"model", "model_raw", "seasonal_naive", "ses", "holt_winters"}


@pytest.fixture(scope="module")
def forecast_run(tmp_path_factory, compose_train) -> dict:
    root = tmp_path_factory.mktemp("forecast")
    cfg = compose_train(
        root / "run",
        "task=revenue_forecast",
        "model=nbeats",
        "data.level=[organization,region]",
        "model.ensemble=2",
        "trainer.max_epochs=3",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={root}",
    )
    return train(cfg)


def test_task_picks_series_data_and_a_tabular_model_is_refused(tmp_path):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["task=revenue_forecast", f"paths.output_dir={tmp_path}", "logger=none"])
    assert cfg.task.pipeline._target_ == "fulqrun_ml.pipelines.forecast.ForecastPipeline"
    assert cfg.data._target_.endswith("RevenueForecastDataModule")
    cfg.data.source.n_opportunities = 600
    cfg.data.level = "organization"
    with pytest.raises(FulqrunMLError, match="model=mlp"):
        train(cfg)


def test_run_dir_holds_backtest_calibration_and_lineage(forecast_run):
    run_dir = Path(forecast_run["run_dir"])
    for name in ("net_state.pt", "net_config.json", "conformal.json", "series_index.json", "backtest.npz"):
        assert (run_dir / name).is_file(), name
    by_level = json.loads((run_dir / "metrics.json").read_text())
    assert set(by_level) == {"organization", "region"}  # one global model, scored per level
    for metrics in by_level.values():
        assert set(metrics) >= FORECASTERS
        for who in FORECASTERS:
            m = metrics[who]
            assert np.isfinite([m["wape"], m["mase"], m["pinball"]]).all() and 0.0 <= m["coverage"] <= 1.0
            assert m["cells"] == metrics["model"]["cells"] > 0  # every forecaster scored on the same cells
        check = metrics["target_check"]
        assert 0 < check["noise_floor_wape"] < metrics["seasonal_naive"]["wape"]
        assert check["wape_reduction_vs_seasonal_naive"] == pytest.approx(
            1 - metrics["model"]["wape"] / metrics["seasonal_naive"]["wape"]
        )
    with np.load(run_dir / "backtest.npz") as data:  # the levels partition the backtest's cells
        assert sum(m["model"]["cells"] for m in by_level.values()) == np.isfinite(data["target"]).sum()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["task"] == "revenue_forecast" and info["model"] == "nbeats" and info["data_hash"]
    assert info["net_config"]["ensemble"] == 2 and len(info["extra"]["member_epochs"]) == 2
    assert info["kind"] == "forecast" and info["pipeline"] == "fulqrun_ml.pipelines.forecast.ForecastPipeline"
    assert (run_dir / "member_1" / "checkpoints").is_dir()  # members do not overwrite each other's checkpoints
    assert info["wandb_run_id"] and any((run_dir / "wandb").glob("offline-run-*"))
    assert info["wandb_artifacts"]["model"] == f"revenue_forecast-nbeats:run-{info['wandb_run_id']}"
    windows = info["data_window"]
    assert windows["train"]["last_target"] < windows["val"]["first_target"]
    assert windows["calibration"]["last_target"] < windows["test"]["first_target"]
    conformal = json.loads((run_dir / "conformal.json").read_text())
    groups = json.loads((run_dir / "series_index.json").read_text())["groups"]
    table = np.array(conformal["series_offsets"])
    assert table.shape == (len(groups) + 1, info["net_config"]["horizon"], 5)
    for row, group in enumerate(groups, start=1):  # each series gets its own level's offsets
        np.testing.assert_array_equal(table[row], conformal["offsets_by_level"][group.split(":")[0]])


def test_export_matches_pytorch_and_publishes(forecast_run, tmp_path):
    run_dir = Path(forecast_run["run_dir"])
    version, parity = export_forecast_run(run_dir, tmp_path / "models")
    assert parity <= 1e-5
    published = get_version(tmp_path / "models", "revenue_forecast")
    assert published.version == version.version == 1
    assert {"model.onnx", "conformal.json", "series_index.json", "metadata.json"} <= {
        p.name for p in published.path.iterdir()
    }
    assert [i["name"] for i in published.metadata["inputs"]] == ["history", "calendar", "series"]
    # The served graph reproduces the backtest's calibrated forecasts (conformal offsets are inside it).
    import onnx

    with np.load(run_dir / "backtest.npz") as data:
        windows = {k: data[k] for k in data.files}
    got = onnx_quantiles(onnx.load(published.path / "model.onnx"), windows)
    scale = np.maximum(np.abs(windows["history"]).mean(axis=1), 1.0)[:, None, None]
    assert np.max(np.abs(got - windows["forecast"]) / scale) <= 1e-5
    assert got.shape[1:] == (forecast_run["net_config"]["horizon"], 5)


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(FulqrunMLError, match="not a finished training run"):
        export_forecast_run(tmp_path, tmp_path / "models")


def test_leaderboard_times_the_graph_and_renders_rows(forecast_run):
    from fulqrun_ml.benchmarks.forecast_study import onnx_microseconds_per_row, render_forecast_markdown
    from fulqrun_ml.forecasting.export import export_forecaster_onnx, load_calibrated_forecaster

    run_dir = Path(forecast_run["run_dir"])
    graph = export_forecaster_onnx(load_calibrated_forecaster(run_dir)).SerializeToString()
    with np.load(run_dir / "backtest.npz") as data:
        latency = onnx_microseconds_per_row(graph, {k: data[k] for k in data.files})
    assert set(latency) == {"batch_1", "batch_1024"} and 0 < latency["batch_1024"] < latency["batch_1"]
    m = forecast_run["metrics"]["region"]
    board = {
        "holdout": "backtest",
        "targets": {"wape_reduction_vs_seasonal_naive": 0.35, "coverage_80": [0.77, 0.83]},
        "settings": [{"name": "W-tiny", "freq": "W", "experiment": "x", "data": "tiny"}],
        "rows": [
            {
                "level": "region",
                "freq": "W",
                "setting": "W-tiny",
                "model": "nbeats",
                **m["model"],
                "onnx_us_per_row": latency,
            },
            {
                "level": "region",
                "freq": "W",
                "setting": "W-tiny",
                "model": "ses",
                **m["ses"],
                "fit_forecast_us_per_row": 5.0,
            },
        ],
        "target_checks": [{"freq": "W", "level": "region", **m["target_check"]}],
        "machine": {"cpu_model": "cpu", "cpu_count": 2, "load_average_1m_5m_15m": [0, 0, 0]},
    }
    text = render_forecast_markdown(board)
    assert f"| region | nbeats | {m['model']['wape']:.3f} |" in text and "(fit+forecast)" in text
