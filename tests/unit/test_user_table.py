"""`data=table`: any CSV/Parquet with a target column trains, reports its column kinds, beats chance and
compares with LightGBM on the same split; bad input fails with a message naming the problem."""

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from fulqrun_ml.data.sources import SourceError
from fulqrun_ml.datamodules.table import UserTableDataModule
from fulqrun_ml.export.package import export_run
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.training.train import train

N = 1200


def generated_table(seed: int = 0, regression: bool = False) -> pd.DataFrame:
    """Signal in a numeric, a categorical, a datetime and a text column, plus noise and gaps."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    plan = rng.choice(["basic", "pro", "enterprise"], N)
    signup = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 365, N), unit="D")
    words = rng.integers(1, 12, N)
    vocabulary = np.array(["call", "budget", "renewal", "pricing", "demo", "team", "legal", "timeline", "usage"])
    notes = [" ".join(rng.choice(vocabulary, int(k))) + " about the account" for k in words]
    signal = 1.5 * x + np.select([plan == "pro", plan == "enterprise"], [0.8, -0.8], 0.0) + 0.15 * (words - 6)
    signal += 0.004 * (signup - signup.min()).days.to_numpy()
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(N),
            "x": np.where(rng.uniform(size=N) < 0.05, np.nan, x),  # gaps are imputed, not dropped
            "noise": rng.normal(size=N),
            "plan": plan,
            "signup": signup.strftime("%Y-%m-%d"),
            "notes": notes,
        }
    )
    if regression:
        frame["y"] = 10.0 + 3.0 * signal + rng.normal(size=N)
    else:
        frame["y"] = np.where(rng.uniform(size=N) < 1 / (1 + np.exp(-signal)), "yes", "no")
    return frame


def compose_table(output_dir: Path, path: Path, *overrides: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                f"paths.output_dir={output_dir}",
                f"paths.root_dir={output_dir.parent}",
                "task=table",
                "data=table",
                f"data.path={path}",
                "data.target=y",
                "logger=none",
                "trainer.max_epochs=8",
                "trainer.enable_progress_bar=false",
                *overrides,
            ],
        )


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("table")
    generated_table().to_csv(root / "customers.csv", index=False)
    return train(compose_table(root / "run", root / "customers.csv", "model=mlp"))


def test_binary_table_trains_beats_chance_and_sits_next_to_lightgbm(binary_run):
    run_dir = Path(binary_run["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert binary_run["kind"] == "binary" and set(metrics) >= {"model", "lightgbm"}
    assert metrics["model"]["n"] == metrics["lightgbm"]["n"] == binary_run["sizes"]["test_rows"]  # same split
    assert metrics["model"]["auc"] > 0.75 and metrics["lightgbm"]["auc"] > 0.7


def test_column_kinds_are_inferred_and_reported(binary_run):
    kinds = {
        c["column"]: c["kind"] for c in json.loads((Path(binary_run["run_dir"]) / "column_types.json").read_text())
    }
    assert kinds == {
        "customer_id": "id",
        "x": "numeric",
        "noise": "numeric",
        "plan": "categorical",
        "signup": "datetime",
        "notes": "text",
        "y": "categorical",
    }


def test_table_model_exports_with_missing_values_imputed_in_the_graph(binary_run, tmp_path):
    version, parity = export_run(Path(binary_run["run_dir"]), tmp_path / "models", "customers")
    assert parity <= 1e-5  # the holdout has NaN in `x`: the graph's median fill matches the encoder's
    graph = onnx.load(str(version.path / "model.onnx"))
    inputs = {i.name for i in graph.graph.input}
    assert {"x", "noise", "plan", "signup__days", "signup__month", "notes__chars", "notes__words"} == inputs


def test_regression_table_reports_rmse_against_lightgbm(tmp_path):
    path = tmp_path / "revenue.parquet"
    generated_table(seed=1, regression=True).to_parquet(path, index=False)
    summary = train(compose_table(tmp_path / "run", path, "model=mlp", "data.time_col=signup"))
    metrics = summary["metrics"]
    assert summary["kind"] == "regression" and set(metrics) == {"model", "lightgbm"}
    # Well above predicting the mean (R^2 = 0), though the later test period extrapolates the signup trend.
    assert metrics["model"]["r2"] > 0.4 and metrics["lightgbm"]["r2"] > 0.4
    assert metrics["model"]["rmse"] < 1.3 * metrics["lightgbm"]["rmse"]
    # Time split: the holdout is the latest period.
    window = summary["data_window"]
    assert window["train"]["to"] <= window["test"]["from"]


def test_stratified_split_is_seeded_and_keeps_the_base_rate(tmp_path):
    path = tmp_path / "t.csv"
    generated_table().to_csv(path, index=False)
    first, again = UserTableDataModule(str(path), "y", seed=5), UserTableDataModule(str(path), "y", seed=5)
    first.setup(), again.setup()
    pd.testing.assert_frame_equal(first.frames["test"], again.frames["test"])
    rates = [first.frames[s]["label"].mean() for s in ("train", "val", "test")]
    assert max(rates) - min(rates) < 0.02


@pytest.mark.parametrize(
    ("make", "target", "message"),
    [
        (lambda d: d.drop(columns="y"), "y", "target 'y' is not a column"),
        (lambda d: d.assign(y=np.nan), "y", "target 'y' in t.csv has no values"),
        (lambda d: d.assign(y=np.random.default_rng(0).choice(list("abc"), len(d))), "y", "only binary and numeric"),
    ],
)
def test_bad_tables_fail_naming_the_problem(tmp_path, make, target, message):
    path = tmp_path / "t.csv"
    make(generated_table()).to_csv(path, index=False)
    with pytest.raises(SourceError, match=message):
        UserTableDataModule(str(path), target).setup()


def test_unknown_path_and_wrong_task_fail_clearly(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        UserTableDataModule(str(tmp_path / "missing.csv"), "y").setup()
    with pytest.raises(SourceError, match="task=table"):
        UserTableDataModule(str(tmp_path / "missing.csv"), "y", task_name="deal_win")
