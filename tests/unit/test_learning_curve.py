"""The deal-win learning curve (benchmarks/learning_curve*.py, its MLP trained by `train()`) on a tiny CRM.

What must hold for the curve to mean anything: training subsets are nested and take whole deals, every size is
scored on the very same holdout, the report has what the README and the issue read, the latent split the
ceilings use matches the simulator's story, and a bad size list fails before any simulation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.benchmarks.learning_curve import (
    LearningCurveConfig,
    LearningCurveError,
    attach_truth,
    holdout_hash,
    load_deal_win,
    nested_subsets,
    run_learning_curve,
    split_frames,
    training_rows,
    validate_sizes,
)
from fulqrun_ml.benchmarks.learning_curve_cli import main
from fulqrun_ml.data.crm_duckdb import open_crm
from fulqrun_ml.data.simulator import INDUSTRY_EFFECT, SIZE_EFFECT, simulate_crm
from fulqrun_ml.data.simulator_scale import iter_latent, write_simulated_crm
from fulqrun_ml.data.snapshots_duckdb import snapshot_dates
from fulqrun_ml.features.crm_scale_build import ScaleBuildConfig, build_crm_datasets

N_DEALS = 1200


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 1,200-deal CRM in two shards (organizations), built with DuckDB, loaded with splits and truth."""
    root = tmp_path_factory.mktemp("learning_curve")
    crm_dir, build_dir = root / "crm", root / "build"
    write_simulated_crm(crm_dir, N_DEALS, seed=11, opportunities_per_shard=600)
    build_crm_datasets(crm_dir, build_dir, config=ScaleBuildConfig(sequences=False))
    build = ScaleBuildConfig()
    with open_crm(crm_dir) as db:
        dates = snapshot_dates(db, build.every_days, build.warmup_days, build.deal_horizon_days)
    config = LearningCurveConfig(sizes=(300, 600, N_DEALS), crm_opportunities=N_DEALS, seed=11)
    frame = load_deal_win(build_dir, crm_dir, dates, config)
    ids = pd.concat(list(iter_latent(crm_dir)), ignore_index=True)["opportunity_id"].to_numpy()
    return {"frame": frame, "ids": ids, "config": config, "root": root}


def test_nested_subsets_are_nested_and_take_whole_deals(tiny: dict) -> None:
    subsets = nested_subsets(tiny["ids"], (100, 300, N_DEALS), seed=5)
    assert [len(subsets[s]) for s in (100, 300, N_DEALS)] == [100, 300, N_DEALS]
    assert set(subsets[100]) < set(subsets[300]) < set(subsets[N_DEALS]) == set(tiny["ids"])
    assert len(set(subsets[300])) == 300  # no deal drawn twice
    # Another seed draws other deals (the subsets are random, not the first N ids).
    assert set(nested_subsets(tiny["ids"], (100,), seed=6)[100]) != set(subsets[100])

    frames = split_frames(tiny["frame"])
    train, val = training_rows(frames, subsets[300])
    for part, full in ((train, frames["train"]), (val, frames["val"])):
        chosen = set(part["opportunity_id"])
        assert chosen <= set(subsets[300])
        # Grouped by deal: every snapshot of a chosen deal is in, so its row count matches the full split.
        counts = full[full["opportunity_id"].isin(chosen)].groupby("opportunity_id").size()
        assert counts.equals(part.groupby("opportunity_id").size())
    assert 0 < len(train) < len(frames["train"])


def test_splits_follow_time_and_embargo(tiny: dict) -> None:
    frame = tiny["frame"]
    frames = split_frames(frame)
    assert frames["train"]["as_of"].max() < frames["val"]["as_of"].min() <= frames["val"]["as_of"].max()
    assert frames["val"]["as_of"].max() < frames["test"]["as_of"].min()
    # Label-time embargo: no training label becomes known inside the validation period.
    assert frames["train"]["label_time"].max() < frames["val"]["as_of"].min()
    assert (frame["split"] == "embargoed").any()


def test_script_writes_report_with_one_holdout_for_all_sizes(tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "lc.json"
    args = ["--opportunities", str(N_DEALS), "--per-shard", "600", "--seed", "11", "--sizes", "300,600,1200"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--workers", "1"]
    args += ["--mlp-max-opportunities", "600", "--mlp-max-epochs", "2", "--threads", "1"]
    main(args)

    report = json.loads(out.read_text())
    for key in ("machine", "git_commit", "wall_seconds", "config", "data", "holdout", "oracle", "target_auc"):
        assert key in report, key
    assert report["machine"]["cpu_count"] >= 1 and report["wall_seconds"] > 0
    assert report["config"]["sizes"] == [300, 600, 1200] and report["data"]["crm_opportunities"] == N_DEALS
    assert report["target_auc"] == pytest.approx(0.97 * report["oracle"]["auc"], abs=1e-4)
    curve = report["curve"]
    assert [e["opportunities"] for e in curve] == [300, 600, 1200]
    # One fixed holdout: the same rows (by content hash) and count at every size ...
    assert {e["holdout_hash"] for e in curve} == {report["holdout"]["hash"]}
    assert {e["holdout_rows"] for e in curve} == {report["holdout"]["rows"]}
    # ... which is the test split of the same CRM built independently by the fixture (same seed and sizes).
    assert report["holdout"]["hash"] == holdout_hash(split_frames(tiny["frame"])["test"])
    # Training grows with the size (nested subsets); the MLP above its limit is recorded as skipped.
    assert [e["train_rows"] for e in curve] == sorted(e["train_rows"] for e in curve)
    assert curve[0]["train_rows"] < curve[-1]["train_rows"]
    for entry in curve:
        for name in ("logistic", "lightgbm_tuned"):
            model = entry["models"][name]
            assert 0.5 < model["auc"] <= 1.0 and model["log_loss"] > 0
            assert model["ratio_to_oracle"] == pytest.approx(model["auc"] / report["oracle"]["auc"], abs=1e-4)
    assert "auc" in curve[1]["models"]["mlp"] and "skipped" in curve[2]["models"]["mlp"]
    # The MLP trained through train(): its fit is what train()'s trainer and callbacks did (2 epochs allowed).
    mlp = curve[1]["models"]["mlp"]
    assert mlp["epochs"] == 2 and mlp["stopped_by"] == "max_epochs" and 1 <= mlp["best_epoch"] <= 2
    assert mlp["monitor"].startswith("val/") and 0.5 < mlp["val_auc"] <= 1.0 and mlp["fit_seconds"] > 0
    assert set(report["ceilings"]) == {
        "latent_truth_logistic",
        "observed_plus_z_logistic",
        "observed_plus_rest_logistic",
        "observed_plus_meddpicc_logistic",
    }
    # Given only the truth the oracle reads, a logistic regression ranks (almost) like the oracle.
    assert report["ceilings"]["latent_truth_logistic"]["ratio_to_oracle"] > 0.99
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "0.97 x oracle" in out.with_suffix(".md").read_text()

    # Re-rendering keeps the measurements and adds the note.
    main(["--out", str(out), "--render-only", "--note", "a reviewer's note"])
    rendered = json.loads(out.read_text())
    assert rendered["notes"] == ["a reviewer's note"] and rendered["curve"] == report["curve"]
    assert "a reviewer's note" in out.with_suffix(".md").read_text()


def test_latent_split_matches_the_simulator_story() -> None:
    """latent_rest_logit (true logit - 1.3 z) minus the company and value effects is the rep's skill term:
    constant per rep. A wrong z weight would leave z in it and break this."""
    crm = simulate_crm(n_opportunities=400, n_reps=6, n_companies=80, seed=2)
    opps = crm.tables.opportunities
    # Win odds read each company's original record (the first version in its history), not today's row.
    history = crm.tables.company_history.sort_values("valid_from")
    companies = history.drop_duplicates("company_id", keep="first").set_index("company_id")
    frame = pd.DataFrame({"opportunity_id": opps["id"], "stage_index": 0})
    rest = attach_truth(frame, crm.latent)["latent_rest_logit"].to_numpy()
    company = companies.loc[opps["company_id"]]
    skill = (
        rest
        + 0.4
        + 0.25 * np.log(opps["value"].to_numpy() / 50_000)
        - company["industry"].map(INDUSTRY_EFFECT).to_numpy()
        - company["size"].map(SIZE_EFFECT).to_numpy()
    )
    per_rep = pd.Series(skill).groupby(opps["assigned_to"].to_numpy()).agg(["std", "size"])
    assert (per_rep["size"] > 10).all() and per_rep["std"].max() < 1e-9


def test_attach_truth_names_missing_latent_rows() -> None:
    crm = simulate_crm(n_opportunities=60, n_reps=4, n_companies=20, seed=1)
    frame = pd.DataFrame({"opportunity_id": [*crm.latent["opportunity_id"][:3], "no-such-deal"], "stage_index": 0})
    with pytest.raises(LearningCurveError, match="latent truth: no true_win_probability for 1"):
        attach_truth(frame, crm.latent)


@pytest.mark.parametrize(
    ("sizes", "message"),
    [
        ([], "at least one"),
        ([0, 100], "positive"),
        ([300, 300], "strictly increasing"),
        ([600, 300], "strictly increasing"),
        ([300, N_DEALS + 1], "exceed"),
        (["6k"], "expected integers"),
        ([300.5], "whole numbers"),
    ],
)
def test_bad_sizes_fail_with_a_clear_error(sizes: list, message: str) -> None:
    with pytest.raises(LearningCurveError, match=f"sizes: .*{message}"):
        validate_sizes(sizes, N_DEALS)


def test_bad_sizes_fail_before_any_work(tiny: dict, tmp_path: Path) -> None:
    config = LearningCurveConfig(sizes=(600, 300), crm_opportunities=N_DEALS)
    with pytest.raises(LearningCurveError, match="sizes"):
        run_learning_curve(tiny["frame"], config, tiny["ids"])
    config = LearningCurveConfig(sizes=(300,), crm_opportunities=N_DEALS, models=("logistic", "xgboost"))
    with pytest.raises(LearningCurveError, match=r"models: unknown model.*xgboost"):
        run_learning_curve(tiny["frame"], config, tiny["ids"])
    cache = tmp_path / "never"
    with pytest.raises(SystemExit, match="--sizes"):
        main(["--opportunities", "1000", "--sizes", "6k,12k", "--cache-dir", str(cache)])
    with pytest.raises(LearningCurveError, match="exceed"):
        main(["--opportunities", "1000", "--sizes", "500,2000", "--cache-dir", str(cache)])
    assert not cache.exists()  # nothing simulated
