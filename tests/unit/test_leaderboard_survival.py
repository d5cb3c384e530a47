"""The survival section of the leaderboard: the person-period expansion LightGBM learns hazards from (by hand),
and a tiny close-timing survival board: every row scored on the same holdout, the Kaplan-Meier rows equal to an
independent fit, parity on both outputs, targets and Markdown."""

import math

import numpy as np
import pytest

from fulqrun_ml.benchmarks import leaderboard_survival
from fulqrun_ml.benchmarks.leaderboard import compose_run, load_holdout, run_leaderboard
from fulqrun_ml.benchmarks.leaderboard_board import render_markdown
from fulqrun_ml.evaluation.lightgbm_baseline import LIGHTGBM_SETTINGS
from fulqrun_ml.tasks.kaplan_meier import StageKaplanMeier
from fulqrun_ml.tasks.survival_metrics import survival_report

TINY = ["data.source.n_opportunities=1500", "data.source.n_companies=300", "data.source.n_reps=10"]
OVERRIDES = [*TINY, "trainer.max_epochs=1"]
TASK = "close_timing_survival"


def test_person_period_rows_by_hand():
    """Edges 0/7/14/21: a close at day 3 (bin 0), a close at day 14 (right-closed: bin 1), censored at 21 (bin 2)."""
    arrays = {
        "continuous": np.array([[1.0], [2.0], [3.0]], dtype=np.float32),
        "categorical": np.array([[5], [6], [7]], dtype=np.int64),
    }
    expanded = leaderboard_survival.person_period(
        arrays, np.array([3.0, 14.0, 21.0]), np.array([1, 1, 0]), np.array([0.0, 7.0, 14.0, 21.0])
    )
    np.testing.assert_array_equal(expanded["continuous"][:, 0], [1, 2, 2, 3, 3, 3])  # the row's own features
    np.testing.assert_array_equal(expanded["continuous"][:, 1], [0, 0, 1, 0, 1, 2])  # bin index, last column
    np.testing.assert_array_equal(expanded["categorical"][:, 0], [5, 6, 6, 7, 7, 7])
    np.testing.assert_array_equal(expanded["target"], [1, 0, 1, 0, 0, 0])  # closed in its own bin, never censored
    grid = leaderboard_survival.every_bin(arrays, 3)
    np.testing.assert_array_equal(grid["continuous"][:, 1], [0, 1, 2] * 3)
    curve = leaderboard_survival.hazard_curve(np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.3]]))
    np.testing.assert_allclose(curve, [[0.5, 0.75, 0.75], [0.0, 1.0, 1.0]])


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_leaderboard(
        tmp_path_factory.mktemp("board"), models=["mlp"], overrides=OVERRIDES, tasks=[TASK], seeds=[0], resamples=200
    )


@pytest.mark.slow
def test_survival_section_scores_networks_lightgbm_and_kaplan_meier(board, tmp_path):
    section = board["sections"][TASK]
    assert section["kind"] == "survival" and section["horizon_days"] == 91
    rows = {r["name"]: r for r in section["rows"]}
    assert set(rows) == {"mlp", *LIGHTGBM_SETTINGS, "km_stage", "km_pooled"}
    n = section["data"]["sizes"]["test_rows"]
    for row in section["rows"]:
        assert row["n"] == n and 0 <= row["concordance"] <= 1 and 0 < row["integrated_brier"] < 1, row["name"]
        assert math.isfinite(row["nll"]) and row["mae_median_days"] >= 0, row["name"]
        assert 0 <= row["val_concordance"] <= 1, row["name"]
    assert rows["km_pooled"]["concordance"] == 0.5  # one curve for every deal ranks nobody
    for name in LIGHTGBM_SETTINGS:
        assert rows[name]["trees"] >= 1 and rows[name]["concordance"] > 0.55, name  # the hazards carry signal
    mlp = rows["mlp"]
    assert 0 <= mlp["export_parity_max_abs_diff"] <= 1e-5 and mlp["export_parity_expected_days"] <= 1e-3
    assert mlp["hazard_temperature"] > 0 and mlp["inference_us_per_row"]["batch_1"] > 0
    # The Kaplan-Meier rows equal an independent fit on the same training split, scored by the same report.
    holdout, _ = load_holdout(compose_run(TASK, "mlp", tmp_path, 0, OVERRIDES))
    assert holdout.data_hash == section["data"]["data_hash"] and holdout.bin_edges[-1] == 91
    edges = np.asarray(holdout.bin_edges)
    test = holdout.frames["test"]
    km = StageKaplanMeier.fit(holdout.frames["train"], edges)
    expected = survival_report(
        km.predict(test), test["duration_days"].to_numpy(), test["label"].to_numpy() > 0.5, edges
    )
    assert rows["km_stage"]["concordance"] == pytest.approx(expected["concordance"], abs=1e-12)
    assert rows["km_stage"]["integrated_brier"] == pytest.approx(expected["integrated_brier"], rel=1e-9)


@pytest.mark.slow
def test_survival_targets_and_markdown(board):
    section = board["sections"][TASK]
    targets = section["targets"]
    rows = {r["name"]: r for r in section["rows"]}
    assert targets["best_neural"] == "mlp"
    best_gbm = max(LIGHTGBM_SETTINGS, key=lambda name: rows[name]["val_concordance"])  # chosen on validation
    assert targets["lightgbm"]["name"] == best_gbm
    paired = rows["mlp"]["paired"]["km_stage"]
    assert paired["concordance"]["diff"] == pytest.approx(
        rows["mlp"]["concordance"] - rows["km_stage"]["concordance"], abs=1e-6
    )
    assert paired["integrated_brier"]["diff"] == pytest.approx(
        rows["mlp"]["integrated_brier"] - rows["km_stage"]["integrated_brier"], abs=1e-9
    )
    assert targets["km_stage"]["beaten_on_concordance"] in ("met", "not met", "inconclusive")
    markdown = render_markdown(board)
    assert f"## {TASK}" in markdown and "| Harrell's C | val C | Δ C vs best baseline |" in markdown
    assert "Best neural vs km_stage" in markdown and "Best neural vs lightgbm" in markdown
