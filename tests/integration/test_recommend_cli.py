"""`fulqrun-ml train task=nba_uplift` through the spine, `export` to the registry, `recommend` in bulk and the SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fulqrun_ml import cli
from fulqrun_ml.recommend.sdk import recommend
from fulqrun_ml.registry.run_record import RunRecord
from fulqrun_ml.training.train import train

TINY = [
    "task=nba_uplift",
    "task.datamodule.crm.n_opportunities=2500",
    "task.datamodule.crm.n_companies=360",
    "task.datamodule.crm.n_reps=12",
    "task.members=2",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
]
SMALL_CRM = {"n_opportunities": 800, "n_companies": 120, "n_reps": 8, "n_leads": 5, "seed": 5}


@pytest.fixture(scope="module")
def published(tmp_path_factory, compose_train) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("nba")
    result = train(compose_train(root / "run", *TINY, f"paths.root_dir={root}"))
    models = root / "models"
    assert cli.main(["export", "--run-dir", result["run_dir"], "--models-dir", str(models)]) == 0
    return models, result


def small_config(tmp_path: Path, **fit: object) -> Path:
    config = {
        "model": {"name": "nba_uplift", "version": "latest"},
        "simulate": SMALL_CRM,
        "fit_when_unregistered": {
            "crm": {**SMALL_CRM, "n_opportunities": 2000, "n_companies": 300},
            "world": {"seed": 5},
            "members": 2,
            "max_epochs": 2,
            "hidden_dims": [16],
        }
        | fit,
    }
    path = tmp_path / "recommend.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_records_a_wandb_run_and_policy_metrics(published):
    models, result = published
    record = RunRecord.load(result["run_dir"])
    assert record.task == "nba_uplift" and record.pipeline.endswith("UpliftPipeline")
    assert record.wandb_run_id and any((Path(result["run_dir"]) / "wandb").glob("offline-run-*"))
    metrics = result["metrics"]
    assert set(metrics["lift_fraction_of_oracle"]) == {"dr_learner", "t_learner", "naive_sensitivity"}
    policies = metrics["policies"]
    assert policies["oracle"]["win_rate"] >= max(p["win_rate"] for p in policies.values()) - 1e-12
    version = json.loads((models / "nba_uplift" / "1" / "metadata.json").read_text())
    assert version["parity_max_abs_diff"] < 1e-4 and version["outputs"][0]["name"] == "uplift"


def test_recommend_scores_open_deals_in_bulk(published, tmp_path):
    models, _ = published
    out = tmp_path / "actions.jsonl"
    argv = ["recommend", "--config", str(small_config(tmp_path)), "--models-dir", str(models), "--k", "3"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    rows = pd.read_json(out, lines=True)
    assert len(rows) % 3 == 0 and set(rows["rank"]) == {1, 2, 3}
    assert (rows.groupby("opportunity_id")["uplift_win_probability"].diff().dropna() <= 1e-12).all()
    assert {"type_channel", "gap", "slot", "content", "reason", "uplift_expected_revenue"} <= set(rows.columns)


def test_sdk_uses_the_registered_model(published):
    models, _ = published
    record = {
        "stage": "proposal",
        "industry": "retail",
        "size": "smb",
        "value": 20_000,
        "meddpicc_gaps": 2,
        "champion_missing": 0,
        "age_days": 30,
        "days_in_stage": 4,
        "days_since_last_touch": 2,
        "touches_30d": 6,
        "meetings_30d": 2,
        "inbound_share_30d": 0.5,
    }
    actions = recommend([record], k=2, models_dir=models)
    assert [a["rank"] for a in actions] == [1, 2]
    assert actions[0]["uplift_win_probability"] >= actions[1]["uplift_win_probability"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--k", "0"],
        ["--out", "actions.txt"],
        ["--crm", "/nonexistent/crm"],
        ["--crm", "/tmp", "simulator"],
        ["--no-such-option"],
    ],
)
def test_bad_arguments_exit_2(published, tmp_path, argv, capsys):
    models, _ = published
    base = ["recommend", "--config", str(small_config(tmp_path)), "--models-dir", str(models)]
    assert cli.main([*base, *argv]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_unregistered_model_is_fitted_on_the_simulator_only(tmp_path, capsys):
    config = str(small_config(tmp_path))
    assert cli.main(["recommend", "--config", config, "--models-dir", str(tmp_path / "none"), "--k", "1"]) == 0
    assert "fitted in process" in capsys.readouterr().out
