"""What the training run leaves in its offline W&B files: holdout table, plots, artifacts, tags, no PII.

The `.wandb` file is W&B's record log (LevelDB log framing of protobuf `Record`s; `wandb sync` reads the
same). We decode it with W&B's own protobuf classes, so the checks are on logged records, not on byte
coincidences; the PII check additionally scans every byte the run wrote, plus the artifacts' staged files.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.training.holdout_plots import lift_curve, reliability_curve
from fulqrun_ml.training.wandb_logging import HOLDOUT_TABLE_KEY, holdout_table
from fulqrun_ml.training.wandb_offline import read_records as wandb_records


@pytest.fixture(scope="module")
def offline_run(trained_run):
    (run_dir,) = (Path(trained_run["run_dir"]) / "wandb").glob(f"offline-run-*-{trained_run['wandb_run_id']}")
    return run_dir, wandb_records(next(run_dir.glob("run-*.wandb")))


def history_items(records):
    items = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            for item in r.history.item:
                items["/".join(item.nested_key) if item.nested_key else item.key] = json.loads(item.value_json)
    return items


def test_run_is_grouped_and_tagged_by_task_model_and_experiment(offline_run, trained_run):
    _, records = offline_run
    runs = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert runs and runs[-1].run_group == "deal_win"
    assert {"deal_win", "mlp", "experiment:none"} <= set(runs[-1].tags)
    assert trained_run["experiment"] == "none"


def test_holdout_table_and_plots_are_logged(offline_run, trained_run):
    run_dir, records = offline_run
    items = history_items(records)
    assert items[f"{HOLDOUT_TABLE_KEY}/_type"] == "table-file"
    assert items[f"{HOLDOUT_TABLE_KEY}/nrows"] == trained_run["sizes"]["test_rows"]
    assert items["holdout/calibration_plot/_type"] == "image-file"
    assert items["holdout/lift_plot/_type"] == "image-file"
    (table_file,) = run_dir.glob("files/media/table/holdout/predictions*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == [
        "opportunity_id",
        "as_of",
        "stage",
        "label",
        "model_probability",
        "rep_probability",
        "oracle_probability",
    ]
    probs = np.array([row[4] for row in table["data"]])
    assert len(table["data"]) == trained_run["sizes"]["test_rows"] and np.all((probs > 0) & (probs < 1))
    images = sorted(p.name.split("_")[0] for p in run_dir.glob("files/media/images/holdout/*.png"))
    assert images == ["calibration", "lift"]
    for png in [*run_dir.glob("files/media/images/holdout/*.png"), *(Path(trained_run["run_dir"]) / "plots").iterdir()]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dataset_and_model_artifacts_with_lineage(offline_run, trained_run):
    _, records = offline_run
    artifacts = {r.artifact.type: r.artifact for r in records if r.WhichOneof("record_type") == "artifact"}
    data_hash = trained_run["data_hash"]
    dataset, model = artifacts["dataset"], artifacts["model"]
    assert dataset.name == f"deal_win-snapshots-{data_hash}"
    assert [e.path for e in dataset.manifest.contents] == ["manifest.json"]
    assert model.name == "deal_win-mlp"
    assert {e.path for e in model.manifest.contents} >= {"net_state.pt", "net_config.json", "feature_spec.json"}
    metadata = json.loads(model.metadata)
    assert metadata["dataset_artifact"] == dataset.name and metadata["data_hash"] == data_hash
    assert metadata["wandb_run_id"] == trained_run["wandb_run_id"]
    assert f"data-{data_hash}" in model.aliases and f"run-{trained_run['wandb_run_id']}" in model.aliases
    # the run's lineage (and so every version exported from it) names both artifacts
    info = json.loads((Path(trained_run["run_dir"]) / "run_info.json").read_text())
    assert info["wandb_artifacts"] == {
        "dataset": f"{dataset.name}:data-{data_hash}",
        "model": f"deal_win-mlp:run-{trained_run['wandb_run_id']}",
    }


def test_no_pii_anywhere_in_the_run_or_its_artifacts(offline_run, trained_run):
    run_dir, records = offline_run
    source = {k: v for k, v in trained_run["config"]["data"]["source"].items() if not k.startswith("_")}
    contacts = simulate_crm(**source).tables.contacts  # the very CRM the run was trained on
    needles = [b"@company", b"+1-555-"]
    needles += [e.encode() for e in contacts["email"]] + [e.split("@")[0].encode() for e in contacts["email"]]
    needles += [p.encode() for p in contacts["phone"]]
    blobs = [p.read_bytes() for p in run_dir.rglob("*") if p.is_file()]
    staged = [
        Path(e.local_path)
        for r in records
        if r.WhichOneof("record_type") == "artifact"
        for e in r.artifact.manifest.contents
        if e.local_path
    ]
    assert staged and all(p.is_file() for p in staged)
    blobs += [p.read_bytes() for p in staged]
    for blob in blobs:
        assert not [n for n in needles if n in blob]


def test_holdout_table_keeps_only_allow_listed_columns():
    frame = pd.DataFrame(
        {
            "opportunity_id": ["a", "b"],
            "as_of": pd.to_datetime(["2025-01-01", "2025-01-15"], utc=True),
            "stage": ["proposal", "negotiation"],
            "label": [1, 0],
            "contact_email": ["ann.lee@company00001.example", "bo.kim@company00002.example"],
            "contact_name": ["Ann Lee", "Bo Kim"],
        }
    )
    table = holdout_table(frame, {"model": np.array([0.7, 0.2])})
    assert table.columns == ["opportunity_id", "as_of", "stage", "label", "model_probability"]
    assert "Ann" not in json.dumps(table.data, default=str)


def test_reliability_curve_of_calibrated_scores_follows_the_diagonal():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, 200_000)
    labels = rng.uniform(0, 1, probs.size) < probs
    curve = reliability_curve(probs, labels)
    assert curve.counts.sum() == probs.size and len(curve.counts) == 10
    assert np.max(np.abs(curve.observed_rate - curve.mean_predicted)) < 0.01
    overconfident = reliability_curve(np.clip(probs * 1.5 - 0.25, 0, 1), labels)
    assert overconfident.observed_rate[-1] < overconfident.mean_predicted[-1] - 0.05


def test_lift_curve_perfect_random_and_bounds():
    labels = np.array([1] * 25 + [0] * 75)
    q, lift = lift_curve(np.linspace(1, 0, 100), labels)  # perfect ranking: positives first
    assert q[-1] == 1.0 and lift[-1] == pytest.approx(1.0)
    assert lift[0] == pytest.approx(4.0)  # top 5% are all winners: 1 / 0.25
    rng = np.random.default_rng(1)
    big = rng.uniform(size=100_000) < 0.3
    _, random_lift = lift_curve(rng.uniform(size=big.size), big)
    assert np.all(np.abs(random_lift - 1.0) < 0.1)
