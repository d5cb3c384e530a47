"""Every task x backbone pair and every experiment file trains end to end on tiny data (the
lightning-hydra-template smoke pattern).

`fast_dev_run` pushes one batch through training, validation and test, so a broken pair (a misspelt parameter,
a backbone that cannot take the FeatureSpec's shapes or a survival task's `n_outputs`, a task/model mismatch)
fails here in seconds. The pairs are discovered from configs/: every task whose pipeline trains tabular
backbones crossed with every model YAML of family `tabular`, so a new backbone (one module, one model YAML,
one test) or a new tabular task is smoke-run without touching this file. Tabular runs are also checked artifact
by artifact; experiment files (sequence fusion, forecasting) are checked for a finished run and metrics, their
pipelines' own tests covering the rest. Select with -k, e.g. `-k "deal_win-resnet"` or `-k experiment`.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from fulqrun_ml.export.package import load_target_scaling, load_trained_net
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.models import FAMILIES, BackboneDeclarationError, backbone_family
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.tasks.binary import predict_probabilities
from fulqrun_ml.tasks.multiclass import predict_class_probabilities
from fulqrun_ml.tasks.regression import predict_values
from fulqrun_ml.tasks.survival import predict_curves
from fulqrun_ml.tasks.survival_holdout import load_survival_record
from fulqrun_ml.training.train import build_pipeline, train

# data=table, data=series and data=events need a user's file: tests/unit/test_user_table.py,
# tests/integration/test_series_forecast_cli.py and tests/integration/test_events_serving.py train those tasks.
USER_FILE_TASKS = {"table", "forecast", "events"}
EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))


def task_node(name: str) -> DictConfig:
    """A task YAML's `task` node (global-package task files nest it under `task:`)."""
    raw = OmegaConf.load(CONFIG_DIR / "task" / f"{name}.yaml")
    return raw.task if "task" in raw else raw


def model_yaml(name: str) -> DictConfig:
    return OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml")


TASKS = sorted(p.stem for p in (CONFIG_DIR / "task").glob("*.yaml"))
MODELS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))
TABULAR_TASKS = [
    t for t in TASKS if t not in USER_FILE_TASKS and "tabular" in get_class(task_node(t).pipeline._target_).families
]
TABULAR_MODELS = [m for m in MODELS if model_yaml(m).family == "tabular"]
PAIRS = [pytest.param(t, m, id=f"{t}-{m}") for t in TABULAR_TASKS for m in TABULAR_MODELS]


def test_the_groups_are_discovered():
    assert {"deal_win", "close_timing", "close_timing_survival"} <= set(TABULAR_TASKS)
    assert {"mlp", "mlp_plr", "ft_transformer", "tabm", "resnet"} <= set(TABULAR_MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_config_declares_its_backbones_family(model):
    """`family:` in the YAML (what the leaderboard reads) is the class's own FAMILY."""
    cfg = model_yaml(model)
    assert cfg.name == model and cfg.family in FAMILIES
    assert backbone_family(cfg.net._target_)[0] == cfg.family


def test_an_undeclared_or_missing_backbone_is_named():
    with pytest.raises(BackboneDeclarationError, match=r"Linear.*FAMILY"):
        backbone_family("torch.nn.Linear")
    with pytest.raises(BackboneDeclarationError, match="no class 'Nope'"):
        backbone_family("fulqrun_ml.models.mlp.Nope")
    with pytest.raises(BackboneDeclarationError, match="cannot import"):
        backbone_family("fulqrun_ml.models.nope.MLP")


@pytest.mark.parametrize("model", TABULAR_MODELS)
def test_tabular_backbones_take_keywords_multiple_outputs_and_round_trip_their_weights(model):
    """What every tabular pipeline relies on: `net(**inputs)` with the batch keys, `n_outputs` where the class
    says MULTI_OUTPUT (survival), and a state_dict that loads back into a fresh instance exactly."""
    target = model_yaml(model).net._target_
    _, multi_output = backbone_family(target)
    sizes = {"n_continuous": 4, "cardinalities": [3, 5]}
    extra = {"n_outputs": 3} if multi_output else {}
    torch.manual_seed(0)
    net = instantiate(model_yaml(model).net, **sizes, **extra, _convert_="all").eval()
    inputs = {"continuous": torch.randn(6, 4), "categorical": torch.randint(0, 3, (6, 2))}
    out = net(**inputs)
    assert out.shape == (6, extra.get("n_outputs", 1))
    torch.manual_seed(1)
    fresh = instantiate(model_yaml(model).net, **sizes, **extra, _convert_="all").eval()
    fresh.load_state_dict(net.state_dict())
    assert torch.equal(fresh(**inputs), out)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_names_its_pipeline_and_validation_metric(task):
    node = task_node(task)
    assert get_class(node.pipeline._target_).families
    assert "monitor" in node and node.monitor_mode in ("min", "max")


def test_every_task_outside_the_product_is_smoke_run_by_an_experiment():
    overridden = set()
    for name in EXPERIMENTS:
        for entry in OmegaConf.load(CONFIG_DIR / "experiment" / f"{name}.yaml").get("defaults", []):
            if isinstance(entry, DictConfig) and "override /task" in entry:
                overridden.add(entry["override /task"])
    assert set(TASKS) - set(TABULAR_TASKS) - USER_FILE_TASKS <= overridden


@pytest.fixture(scope="module")
def built_data() -> dict[str, object]:
    """One built dataset per task, shared by its backbones: the data a task composes does not depend on the model,
    and building it (simulation, snapshots, features) costs more than a fast_dev_run."""
    return {}


def smoke_train(
    compose_train, tmp_path: Path, *overrides: str, cache: dict[str, object] | None = None
) -> tuple[DictConfig, dict]:
    cfg = compose_train(
        Path(tmp_path) / "run",
        *overrides,
        "++trainer.fast_dev_run=true",
        "logger=none",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={tmp_path}",
    )
    if cfg.task.get("compare_lightgbm"):
        cfg.task.compare_lightgbm = None  # LightGBM is covered in test_task_train.py; here only the networks run
    datamodule = None
    if cache is not None:
        if cfg.task.name not in cache:
            cache[cfg.task.name] = build_pipeline(cfg).build_datamodule(cfg)
        datamodule = cache[cfg.task.name]
    summary = train(cfg, datamodule=datamodule)
    assert (Path(summary["run_dir"]) / "run_info.json").is_file() and summary["metrics"]
    return cfg, summary


@pytest.mark.parametrize(("task", "model"), PAIRS)
def test_task_model_pair_smoke_trains(task, model, compose_train, tmp_path, built_data):
    cfg, summary = smoke_train(compose_train, tmp_path, f"task={task}", f"model={model}", cache=built_data)
    if cfg.task.pipeline._target_.endswith("UpliftPipeline"):
        check_uplift_run(cfg, summary)
    else:
        check_tabular_run(cfg, summary)


def check_uplift_run(cfg: DictConfig, summary: dict) -> None:
    """The effect model's members load back into the configured backbone and give finite uplifts per arm."""
    from fulqrun_ml.recommend.effect_model import predict_uplift
    from fulqrun_ml.recommend.pipeline import load_ensemble
    from fulqrun_ml.registry.run_record import RunRecord

    run_dir = Path(summary["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    ensemble = load_ensemble(RunRecord.load(run_dir).net_config, run_dir / "net_state.pt")
    assert all(type(m) is get_class(cfg.model.net._target_) for m in ensemble.members)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    uplift, sd = predict_uplift(ensemble, spec, holdout)
    assert uplift.shape == sd.shape and uplift.shape[0] == len(holdout) > 0 and np.isfinite(uplift).all()


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_smoke_trains(experiment, compose_train, tmp_path):
    cfg, summary = smoke_train(compose_train, tmp_path, f"experiment={experiment}")
    if backbone_family(cfg.model.net._target_)[0] == "tabular":
        check_tabular_run(cfg, summary)


def check_tabular_run(cfg: DictConfig, summary: dict) -> None:
    """The saved weights load back into the configured backbone and score the holdout."""
    run_dir = Path(summary["run_dir"])
    spec = FittedFeatureSpec.load(run_dir / "feature_spec.json")
    net = load_trained_net(run_dir, spec)
    assert type(net) is get_class(cfg.model.net._target_)
    holdout = pd.read_parquet(run_dir / "holdout.parquet")
    model = summary["metrics"]["model"]
    assert model["n"] == summary["sizes"]["test_rows"] == len(holdout) > 0
    scaling = load_target_scaling(run_dir)
    if summary["kind"] == "regression":
        predictions = predict_values(net, spec.encode(holdout), scaling)
        assert predictions.shape == (len(holdout),) and np.isfinite(predictions).all()
        assert model["rmse"] >= model["mae"] >= 0.0
    elif summary["kind"] == "survival":
        grid = load_survival_record(run_dir)
        edges, temperature = grid["bin_edges"], grid["calibration"]["temperature"]
        cdf, expected = predict_curves(net, spec.encode(holdout), edges, temperature)
        assert cdf.shape == (len(holdout), len(edges) - 1) and np.all(np.diff(cdf, axis=1) >= 0)
        assert np.all((expected >= 0) & (expected <= edges[-1]))
        assert 0.0 <= model["concordance"] <= 1.0
    elif summary["kind"] == "multiclass":
        probs = predict_class_probabilities(net, spec.encode(holdout))
        assert probs.shape[0] == len(holdout) and probs.shape[1] >= 2 and np.allclose(probs.sum(axis=1), 1.0)
        assert model["log_loss"] > 0.0 and 0.0 <= model["macro_f1"] <= 1.0
    else:
        assert scaling is None
        probs = predict_probabilities(net, spec.encode(holdout))
        assert probs.shape == (len(holdout),) and np.all((probs > 0) & (probs < 1))
        assert 0.0 <= model["auc"] <= 1.0
