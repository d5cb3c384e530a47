"""Every experiment file trains end to end on tiny data (the lightning-hydra-template smoke pattern).

`fast_dev_run` pushes one batch through training, validation and test, so a broken experiment (a misspelt
parameter, a model that cannot take the FeatureSpec's shapes, a task/model mismatch) fails here in seconds.
Tabular tasks (binary and regression) are also checked artifact by artifact; tasks with their own runner
(forecasting, sequences) are checked for a finished run directory and metrics, their runners' own tests
covering the rest.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra.utils import get_class

from fulqrun_ml.export.package import load_target_scaling, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.regression import predict_values
from fulqrun_ml.tasks.survival import predict_curves
from fulqrun_ml.tasks.survival_holdout import load_survival_record
from fulqrun_ml.training.train import train

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def test_every_model_config_has_an_experiment():
    """Adding a model = module + model YAML + at least one `<task>_<model>` experiment, so it gets smoke-run."""
    models = {p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")}
    assert {m for m in models if not any(e.endswith(f"_{m}") for e in EXPERIMENTS)} == set()


def test_every_tabular_task_has_experiments():
    """Each CRM task config (not the user-table task, which needs a file) is smoke-run by at least one experiment."""
    tasks = {p.stem for p in (CONFIG_DIR / "task").glob("*.yaml")} - {"table"}
    assert {t for t in tasks if not any(e.startswith(f"{t}_") for e in EXPERIMENTS)} == set()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_smoke_trains(experiment, compose_train, tmp_path):
    cfg = compose_train(
        Path(tmp_path) / "run",
        f"experiment={experiment}",
        "++trainer.fast_dev_run=true",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={tmp_path}",
    )
    if cfg.task.get("compare_lightgbm"):
        cfg.task.compare_lightgbm = None  # LightGBM is covered in test_task_train.py; here only the networks run
    summary = train(cfg)
    run_dir = Path(summary["run_dir"])
    assert (run_dir / "run_info.json").is_file() and summary["metrics"]
    if cfg.task.get("runner"):
        return
    # The saved weights load back into the configured backbone and score the holdout.
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    assert type(net) is get_class(cfg.model.net._target_)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    model = summary["metrics"]["model"]
    assert model["n"] == summary["sizes"]["test_rows"] == len(holdout) > 0
    scaling = load_target_scaling(run_dir)
    if summary["target_kind"] == "regression":
        predictions = predict_values(net, spec.encode(holdout), scaling)
        assert predictions.shape == (len(holdout),) and np.isfinite(predictions).all()
        assert model["rmse"] >= model["mae"] >= 0.0
    elif summary["target_kind"] == "survival":
        grid = load_survival_record(run_dir)
        edges, temperature = grid["bin_edges"], grid["calibration"]["temperature"]
        cdf, expected = predict_curves(net, spec.encode(holdout), edges, temperature)
        assert cdf.shape == (len(holdout), len(edges) - 1) and np.all(np.diff(cdf, axis=1) >= 0)
        assert np.all((expected >= 0) & (expected <= edges[-1]))
        assert 0.0 <= model["concordance"] <= 1.0
    else:
        assert scaling is None
        probs = predict_probabilities(net, spec.encode(holdout))
        assert probs.shape == (len(holdout),) and np.all((probs > 0) & (probs < 1))
        assert 0.0 <= model["auc"] <= 1.0
