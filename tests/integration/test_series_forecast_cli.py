"""Any series table end to end: train (task=forecast data=series, hierarchy, covariates) -> metrics with the
statistical anchors and reconciliation -> ONNX export with parity -> future quantiles per series; and a bad
table through `fulqrun-ml train` exits 2 with the field named, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fulqrun_ml.cli import main as cli_main
from fulqrun_ml.data.series_fixture import make_series_fixture
from fulqrun_ml.forecasting.export import export_forecast_run
from fulqrun_ml.forecasting.series_predict import main as predict_main
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train

DATA = [
    "data.id_cols=[region,store]",
    "data.time_col=week",
    "data.target=sales",
    "data.known_future_cols=[holiday,promo]",
    "data.static_cols=[store_type]",
    "data.hierarchy=[region,store]",
    "data.lookback=12",
    "data.val_periods=6",
    "data.calibration_periods=8",
    "data.test_periods=6",
    "data.season=4",  # the fixture is yearly-seasonal; a short season keeps Holt-Winters and the anchors fast here
]


@pytest.fixture(scope="module")
def series_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("series")
    table = root / "sales.csv"
    make_series_fixture(n_regions=2, stores_per_region=2, weeks=110, future_weeks=4, seed=5).table.to_csv(
        table, index=False
    )
    overrides = [
        "task=forecast",
        "model=nbeats",
        "model.ensemble=1",
        "model.net.hidden=32",
        f"data.path={table}",
        *DATA,
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"paths.output_dir={root / 'run'}",
        f"paths.root_dir={root}",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    summary = train(cfg)
    version, parity = export_forecast_run(Path(summary["run_dir"]), root / "models", "sales")
    return {"summary": summary, "root": root, "table": table, "version": version, "parity": parity}


def test_metrics_compare_every_anchor_and_reconciliation_per_level(series_run) -> None:
    metrics = json.loads((Path(series_run["summary"]["run_dir"]) / "metrics.json").read_text())
    assert set(metrics) == {"total", "region", "store"}
    expected = {"model", "seasonal_naive", "auto_ets", "auto_arima", "theta", "model_bottom_up", "model_mint"}
    for level, by_who in metrics.items():
        assert expected <= set(by_who), level
        for who in expected:
            assert 0 <= by_who[who]["wape"] < 1 and 0 <= by_who[who]["coverage"] <= 1, (level, who)
        check = by_who["target_check"]
        assert check["best_anchor"] in ("auto_ets", "auto_arima", "theta")
        assert check["noise_floor_wape"] is None  # unknown for a user table, not a made-up number
    # bottom-up keeps the store forecasts, so the store level scores exactly the same
    assert metrics["store"]["model_bottom_up"]["wape"] == pytest.approx(metrics["store"]["model"]["wape"])


def test_export_and_predict_write_future_quantiles_per_series(series_run, tmp_path) -> None:
    version = series_run["version"]
    assert series_run["parity"] < 1e-5
    out = tmp_path / "forecast.csv"
    # Through the documented command: `fulqrun-ml predict --series FILE --model-dir DIR --output F`.
    argv = ["predict", "--series", str(series_run["table"]), "--model-dir", str(version.path), "--output", str(out)]
    assert cli_main(argv) == 0
    forecast = pd.read_csv(out)
    assert len(forecast) == 7 * 4  # total + 2 regions + 4 stores, 4 weeks each
    assert list(forecast["week"].unique()) == ["2025-02-10", "2025-02-17", "2025-02-24", "2025-03-03"]
    q = forecast[["q0.1", "q0.25", "q0.5", "q0.75", "q0.9"]].to_numpy()
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 0).all()
    # bottom-up: each region's median is the sum of its stores'
    stores = forecast[forecast["level"] == "store"].groupby(["region", "week"])["q0.5"].sum()
    regions = forecast[forecast["level"] == "region"].set_index(["region", "week"])["q0.5"]
    np.testing.assert_allclose(regions.sort_index(), stores.sort_index(), rtol=1e-6)


def test_predict_without_future_covariates_names_the_column(series_run, tmp_path) -> None:
    version = series_run["version"]
    table = pd.read_csv(series_run["table"])
    past = tmp_path / "past.csv"
    table[table["sales"].notna()].to_csv(past, index=False)
    rc = predict_main(["--model-dir", str(version.path), "--input", str(past), "--output", str(tmp_path / "f.csv")])
    assert rc == 2 and not (tmp_path / "f.csv").exists()


def test_bad_table_through_the_cli_exits_2_naming_the_field(tmp_path, run_cli) -> None:
    bad = tmp_path / "bad.csv"
    frame = make_series_fixture(n_regions=1, stores_per_region=2, weeks=40, future_weeks=0, seed=1).table
    pd.concat([frame, frame.iloc[[3]]]).to_csv(bad, index=False)  # a duplicate timestamp
    code, stdout, stderr = run_cli(
        "train",
        "task=forecast",
        "model=nbeats",
        f"data.path={bad}",
        "data.id_cols=[store]",
        "data.time_col=week",
        "data.target=sales",
        "logger=none",
        f"paths.output_dir={tmp_path / 'run'}",
        env={"WANDB_MODE": "disabled", "FULQRUN_ROOT": str(tmp_path)},
    )
    assert code == 2, stderr[-2000:]
    assert "field 'week': duplicate timestamp" in stderr + stdout
    assert "Traceback" not in stderr
