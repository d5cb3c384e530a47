"""Leaderboard sections by task kind: a regression section (close timing) and an account task on one tiny board,
the stage-median row against an independent computation, the kind registry's errors and dispatch, and the
backbones the board discovers from the model configs."""

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from fulqrun_ml.benchmarks import leaderboard_regression
from fulqrun_ml.benchmarks.leaderboard import (
    DEFAULT_TASKS,
    compose_run,
    discover_backbones,
    load_holdout,
    models_by_task,
    parse_seeds,
    run_leaderboard,
    write_leaderboard,
)
from fulqrun_ml.benchmarks.leaderboard_board import SECTION_KINDS, render_markdown, section_kind
from fulqrun_ml.benchmarks.leaderboard_kinds import Holdout, LeaderboardError, SectionKind
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS
from fulqrun_ml.export.onnx_export import PARITY_ATOL, PARITY_RTOL
from fulqrun_ml.features.target import TargetScaling
from fulqrun_ml.project import CONFIG_DIR

TINY = ["data.source.n_opportunities=1500", "data.source.n_companies=300", "data.source.n_reps=10"]
# One epoch and no in-training LightGBM comparison: the board fits its own LightGBM rows.
OVERRIDES = [*TINY, "trainer.max_epochs=1", "task.compare_lightgbm=null"]


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One tiny MLP per task plus every baseline (both LightGBM settings): an account task and close timing."""
    return run_leaderboard(
        tmp_path_factory.mktemp("board"),
        models=["mlp"],
        overrides=OVERRIDES,
        tasks=["account_churn", "close_timing"],
        seeds=[0],
        resamples=200,
    )


@pytest.mark.slow
def test_regression_section_scores_every_row_in_task_units(board):
    section = board["sections"]["close_timing"]
    assert section["kind"] == "regression" and section["horizon_days"] == 90
    rows = {r["name"]: r for r in section["rows"]}
    assert set(rows) == {"mlp", *LIGHTGBM_SETTINGS, "ridge_regression", "stage_median"}
    test_rows = section["data"]["sizes"]["test_rows"]
    for row in section["rows"]:
        assert math.isfinite(row["mae"]) and math.isfinite(row["rmse"]) and row["rmse"] >= row["mae"] > 0, row
        assert math.isfinite(row["r2"]) and 0 <= row["concordance"] <= 1 and row["n"] == test_rows, row["name"]
        assert row["val_rmse"] > 5, row["name"]  # validation RMSE in days too: what the board chooses on
    # Close timing's days are tens of days: a row left in the scaled units would have RMSE around 1.
    assert rows["stage_median"]["rmse"] > 5 and rows["lightgbm_default"]["rmse"] > 5
    for name in LIGHTGBM_SETTINGS:  # LightGBM as a regressor, early-stopped, with its size reported
        assert rows[name]["params"]["objective"] == "regression" and rows[name]["trees"] >= 1, name
    assert rows["ridge_regression"]["parameters"] > 0 and rows["ridge_regression"]["params"] == {"alpha": 1.0}
    mlp = rows["mlp"]
    assert mlp["parameters"] > 0 and mlp["train_seconds"] > 0 and mlp["epochs"] >= 1
    assert mlp["inference_us_per_row"]["batch_1"] > mlp["inference_us_per_row"]["batch_1024"] > 0
    # Parity is recorded and within the export's own tolerance for predictions in days.
    assert 0 <= mlp["export_parity_max_abs_diff"] <= PARITY_ATOL + PARITY_RTOL * 200
    assert mlp["target_scaling"]["std"] > 0


@pytest.mark.slow
def test_regression_targets_compare_best_neural_with_lightgbm_and_stage_median(board):
    section = board["sections"]["close_timing"]
    rows = {r["name"]: r for r in section["rows"]}
    targets = section["targets"]
    best_gbm = min(LIGHTGBM_SETTINGS, key=lambda name: rows[name]["val_rmse"])  # chosen on validation
    assert targets["best_neural"] == "mlp" and targets["best_lightgbm"] == best_gbm
    paired = rows["mlp"]["paired"][best_gbm]["rmse"]
    assert paired["diff"] == pytest.approx(rows["mlp"]["rmse"] - rows[best_gbm]["rmse"], rel=1e-6)
    assert targets["lightgbm_rmse_diff_ci95"] == paired["ci95"]
    assert targets["beats_lightgbm"] in ("met", "not met", "inconclusive")
    median = targets["references"]["stage_median"]
    assert median["rmse"] == rows["stage_median"]["rmse"]
    assert median["rmse_diff"] == pytest.approx(rows["mlp"]["rmse"] - rows["stage_median"]["rmse"], rel=1e-6)


@pytest.mark.slow
def test_stage_median_row_equals_an_independent_computation(board, tmp_path):
    """Per-stage median days on the training split (overall median for unseen stages), scored by scikit-learn."""
    section = board["sections"]["close_timing"]
    holdout, _ = load_holdout(compose_run("close_timing", "mlp", tmp_path, 0, OVERRIDES))
    assert holdout.data_hash == section["data"]["data_hash"]
    train, test = holdout.frames["train"], holdout.frames["test"]
    medians = train.groupby("stage_index")["label"].median()
    predicted = test["stage_index"].map(medians).fillna(train["label"].median()).to_numpy(dtype=float)
    days = test["label"].to_numpy(dtype=float)
    row = next(r for r in section["rows"] if r["name"] == "stage_median")
    assert row["mae"] == pytest.approx(mean_absolute_error(days, predicted), rel=1e-9)
    assert row["rmse"] == pytest.approx(math.sqrt(mean_squared_error(days, predicted)), rel=1e-9)
    assert row["r2"] == pytest.approx(r2_score(days, predicted), rel=1e-9)


@pytest.mark.slow
def test_board_with_an_account_and_a_regression_task_renders(board, tmp_path):
    account = board["sections"]["account_churn"]
    assert account["kind"] == "binary" and account["horizon_days"] == 90
    names = {r["name"] for r in account["rows"]}
    assert names == {"mlp", *LIGHTGBM_SETTINGS, "logistic_regression"}  # no rep or oracle for accounts
    assert all(0 <= r["auc"] <= 1 for r in account["rows"]) and "beats_lightgbm" in account["targets"]

    json_path, md_path = write_leaderboard(board, tmp_path)
    assert json.loads(json_path.read_text())["sections"]["close_timing"]["kind"] == "regression"
    markdown = md_path.read_text()
    account_md, _, regression_md = markdown.partition("## close_timing")
    assert "## account_churn" in account_md and "| AUC | val AUC | Δ AUC vs best baseline | PR-AUC |" in account_md
    assert (
        "| MAE | RMSE | val RMSE | Δ RMSE vs best baseline | R² |" in regression_md
        and "Best neural < stage_median RMSE" in regression_md
    )
    table = [line for line in regression_md.splitlines() if line.startswith("| ") and " | " in line][1:]
    rmse = [float(line.split(" | ")[3]) for line in table]  # the RMSE column (mlp: one seed, no interval)
    assert len(table) == len(board["sections"]["close_timing"]["rows"]) and rmse == sorted(rmse)


def test_unknown_kind_is_a_clear_error_naming_task_and_kind(tmp_path):
    with pytest.raises(LeaderboardError, match=r"task 'x': kind 'ranking' has no leaderboard section.*binary"):
        section_kind("ranking", "x")
    board = {"tasks": ["t"], "sections": {"t": {"task": "t", "kind": "ranking"}}}
    with pytest.raises(LeaderboardError, match="kind 'ranking'"):
        render_markdown({**board, "generated_at": "now", "git_commit": "abc", "wall_seconds": 0})


def test_a_new_kind_is_one_registry_entry(monkeypatch):
    """Register a SectionKind; the board renders it with its own renderer."""

    def render(section: dict) -> list[str]:
        return [f"## {section['task']} (ranking renderer)", ""]

    def unused(*args: object) -> object:
        raise AssertionError("not called when rendering")

    kind = SectionKind("ranking", "ndcg", True, ("ndcg",), unused, unused, unused, unused, unused, render)
    monkeypatch.setitem(SECTION_KINDS, "ranking", kind)
    assert section_kind("ranking") is kind
    board = {
        "tasks": ["next_best_action"],
        "generated_at": "now",
        "git_commit": "abc",
        "wall_seconds": 0,
        "sections": {"next_best_action": {"task": "next_best_action", "kind": "ranking"}},
        "notes": [],
        "machine": {
            "cpu_model": "cpu",
            "cpu_count": 2,
            "packages": {},
            "load_average_at_start": [0, 0, 0],
            "load_average_1m_5m_15m": [0, 0, 0],
        },
    }
    assert "## next_best_action (ranking renderer)" in render_markdown(board)


def test_backbones_are_discovered_from_the_model_configs():
    """Every model config whose family is tabular is on the board (resnet included) and composes with every
    board task as `task=<task> model=<model>`: a new backbone needs no edit of the benchmark."""
    tabular = sorted(
        str(OmegaConf.load(p).name)
        for p in (CONFIG_DIR / "model").glob("*.yaml")
        if OmegaConf.load(p).get("family") == "tabular"
    )
    assert discover_backbones() == tabular and {"mlp", "mlp_plr", "ft_transformer", "tabm", "resnet"} <= set(tabular)
    assert "sequence_fusion" not in tabular and "nbeats" not in tabular
    assert discover_backbones("survival") == tabular  # every tabular backbone takes n_outputs
    for task in DEFAULT_TASKS:
        for model in tabular:
            cfg = compose_run(task, model, CONFIG_DIR / "unused", 43)
            assert cfg.task.name == task and cfg.model.name == model and cfg.seed == 43, (task, model)
            assert cfg.get("logger") in (None, {}) or not cfg.logger, (task, model)  # logger=none


def test_decoded_baseline_predictions_use_the_networks_target_scaling():
    """LightGBM and ridge learn the scaled target; their predictions are decoded exactly as the graph decodes."""
    for log1p in (False, True):
        scaling = TargetScaling.fit(np.array([3.0, 10.0, 40.0, 80.0]), log1p=log1p)
        holdout = Holdout("regression", None, {"test": pd.DataFrame({"label": [1.0]})}, {}, "h", {}, {}, scaling)
        scaled = scaling.encode(np.array([5.0, 50.0]))
        assert leaderboard_regression.decoded(holdout, scaled) == pytest.approx([5.0, 50.0], rel=1e-5)


def test_the_benchmark_needs_three_seeds_and_applies_skips_to_the_discovered_backbones():
    assert parse_seeds("42,43,44") == [42, 43, 44]
    for bad in ("42,43", "1,1,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="at least 3 distinct seeds"):
            parse_seeds(bad)
    plan = models_by_task(["deal_win", "close_timing"], None, ["deal_win:tabm"])
    assert plan == {"deal_win": [m for m in discover_backbones() if m != "tabm"]}  # close_timing: discovered later
    assert models_by_task(["deal_win"], ["mlp", "tabm"], ["deal_win:tabm"]) == {"deal_win": ["mlp"]}
    with pytest.raises(SystemExit, match="deal_win:nope"):
        models_by_task(["deal_win"], ["mlp"], ["deal_win:nope"])
