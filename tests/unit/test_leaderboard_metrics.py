"""Leaderboard metric helpers against scikit-learn's reference implementations, and the leaderboard itself."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve

from fulqrun_ml.benchmarks.external_sections import (
    ExternalReportError,
    forecast_section,
    render_external_markdown,
    sequence_section,
)
from fulqrun_ml.benchmarks.leaderboard import compose_run, run_leaderboard, write_leaderboard
from fulqrun_ml.benchmarks.leaderboard_board import render_markdown
from fulqrun_ml.benchmarks.leaderboard_kinds import LeaderboardError
from fulqrun_ml.evaluation.scoring import holdout_scores
from fulqrun_ml.tasks.metrics import MetricInputError, accuracy_at, best_f1_threshold, lift_at, pr_auc


def scored(n: int = 2000, seed: int = 0, rounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Noisy scores that carry signal; `rounded` makes many ties, as a calibrated model's bins would."""
    rng = np.random.default_rng(seed)
    y = rng.uniform(size=n) < 0.35
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.2 * y - 0.6)))
    return (np.round(p, 1) if rounded else p), y.astype(float)


@pytest.mark.parametrize("rounded", [False, True])
def test_pr_auc_is_sklearns_average_precision(rounded):
    p, y = scored(rounded=rounded)
    assert pr_auc(p, y) == pytest.approx(average_precision_score(y, p), abs=1e-6)


@pytest.mark.parametrize(("seed", "rounded"), [(0, False), (1, False), (2, True)])
def test_best_f1_threshold_reaches_sklearns_best_f1(seed, rounded):
    p, y = scored(seed=seed, rounded=rounded)
    precision, recall, _ = precision_recall_curve(y, p)
    best_possible = np.nanmax(2 * precision * recall / np.where(precision + recall > 0, precision + recall, np.nan))
    threshold = best_f1_threshold(p, y)
    assert f1_score(y, p >= threshold) == pytest.approx(best_possible, abs=1e-9)
    assert f1_score(y, p > threshold) == pytest.approx(best_possible, abs=1e-9)  # no row sits on the cut


def test_accuracy_at_threshold_counts_p_at_or_above_as_positive():
    p, y = np.array([0.2, 0.5, 0.7, 0.9]), np.array([0.0, 1.0, 0.0, 1.0])
    assert accuracy_at(p, y, 0.5) == 0.75  # 0.5 counts as positive (right), 0.7 is the one miss
    assert accuracy_at(p, y, 0.51) == 0.5  # now 0.5 is called negative too
    p, y = scored()
    assert accuracy_at(p, y, 0.4) == pytest.approx(np.mean((p >= 0.4) == y))


def test_lift_at_ten_percent_is_top_decile_rate_over_base_rate():
    p, y = scored(n=1000)
    top = np.argsort(-p)[:100]
    assert lift_at(p, y, 0.1) == pytest.approx(y[top].mean() / y.mean())
    assert lift_at(p, y, 1.0) == pytest.approx(1.0)
    assert lift_at(y, y, 0.1) == pytest.approx(1 / y.mean())  # a perfect ranking


@pytest.mark.parametrize(
    ("probs", "labels", "message"),
    [
        ([0.1, 0.2], [0, 1, 1], "rows"),
        ([0.1, 0.2], [1, 1], "single class"),
        ([0.1, np.nan], [0, 1], "finite"),
        ([0.1, 0.9], [0, 2], "0 or 1"),
    ],
)
def test_bad_inputs_say_what_is_wrong(probs, labels, message):
    for metric in (pr_auc, best_f1_threshold, lift_at):
        with pytest.raises(MetricInputError, match=message):
            metric(np.array(probs), np.array(labels))


def test_holdout_scores_pick_the_threshold_on_validation_and_apply_it_to_the_holdout():
    val_p, val_y = scored(seed=3)
    test_p, test_y = scored(seed=4)
    scores = holdout_scores(val_p, val_y, test_p, test_y)
    assert scores["best_f1_threshold_on_val"] == best_f1_threshold(val_p, val_y)
    assert scores["accuracy_at_best_f1"] == accuracy_at(test_p, test_y, scores["best_f1_threshold_on_val"])
    assert scores["pr_auc"] == pytest.approx(average_precision_score(test_y, test_p), abs=1e-6)
    assert scores["n"] == len(test_y)


FORECAST_REPORT = {
    "task": "revenue_forecast",
    "targets": {"wape_reduction_vs_seasonal_naive": 0.35, "coverage_80": [0.77, 0.83]},
    "rows": [
        {"level": "organization", "freq": "W", "setting": "W-2y", "model": "nbeats", "wape": 0.367, "mase": 0.9},
        {"level": "organization", "freq": "W", "setting": "W-2y", "model": "seasonal_naive", "wape": 0.45},
    ],
    "target_checks": [
        {
            "level": "organization",
            "setting": "W-2y",
            "wape_reduction_vs_seasonal_naive": 0.187,
            "wape_target_met": False,
        }
    ],
}
SEQUENCE_REPORT = {
    "git_commit": "abc123",
    "seeds": [0, 1],
    "summary": {
        "model": {"auc": {"mean": 0.7612, "std": 0.004}},
        "tabular_only": {"auc": {"mean": 0.7511, "std": 0.003}},
        "auc_gain_pp": {"mean": 1.01, "std": 0.2},
    },
    "target_auc_gain_pp": 1.5,
    "target_met": False,
}


def write_external_reports(reports: Path) -> tuple[Path, Path]:
    reports.mkdir(parents=True, exist_ok=True)
    forecast, sequence = reports / "forecast_leaderboard.json", reports / "sequence_fusion.json"
    forecast.write_text(json.dumps(FORECAST_REPORT))
    sequence.write_text(json.dumps(SEQUENCE_REPORT))
    return forecast, sequence


@pytest.mark.slow
@pytest.mark.extended  # the sections are checked one by one in test_leaderboard_sections/_survival
def test_leaderboard_runs_end_to_end_on_tiny_data(tmp_path):
    """One tiny model per task (two seeds on deal win) plus every baseline: a section per task with its own
    reference rows, seed intervals, paired intervals, honest parity and real timings, choices made on
    validation, and the merged forecast/sequence sections in the same report."""
    tiny = ["data.source.n_opportunities=1500", "data.source.n_companies=300", "data.source.n_reps=10"]
    overrides = [*tiny, "trainer.max_epochs=1", "task.compare_lightgbm=null"]
    settings = {"lightgbm_default": {}}
    runs = tmp_path / "runs"
    deal = run_leaderboard(runs, ["mlp"], overrides, settings, ["deal_win"], seeds=[0, 1], resamples=200)
    lead = run_leaderboard(runs, ["mlp"], overrides, settings, ["lead_conversion"], seeds=[0], resamples=200)
    board = {**deal, "tasks": ["deal_win", "lead_conversion"], "sections": {**deal["sections"], **lead["sections"]}}
    deal, lead = board["sections"]["deal_win"], board["sections"]["lead_conversion"]
    rows = {r["name"]: r for r in deal["rows"]}
    assert set(rows) == {"mlp", "lightgbm_default", "logistic_regression", "rep", "oracle"}
    for row in [*deal["rows"], *lead["rows"]]:
        assert 0 <= row["auc"] <= 1 and 0 <= row["ece"] <= 1 and row["lift_at_10pct"] > 0, row["name"]
        assert 0 < row["ece_noise_floor"] < 0.2, row["name"]  # ~sqrt(p(1-p)/rows per bin) on a tiny holdout
        assert 0 <= row["val_auc"] <= 1, row["name"]  # what the board chooses on
    mlp = rows["mlp"]
    assert mlp["seeds"] == [0, 1] and [s["seed"] for s in mlp["per_seed"]] == [0, 1]
    assert mlp["auc"] == pytest.approx(np.mean([s["auc"] for s in mlp["per_seed"]]))
    lo, hi = mlp["interval"]["auc"]["ci95"]
    assert lo <= mlp["auc"] <= hi
    assert mlp["export_parity_max_abs_diff"] <= 1e-5 and mlp["parameters"] > 0 and mlp["train_seconds"] > 0
    assert mlp["inference_us_per_row"]["batch_1"] > mlp["inference_us_per_row"]["batch_1024"] > 0
    assert mlp["calibration"] == "temperature" and mlp["calibration_fitted_on"]["split"] == "val"  # deal_win.yaml
    assert mlp["calibration_fitted_on"]["rows"] == deal["data"]["sizes"]["val_rows"]
    assert set(mlp["calibration_cv"]) == {"temperature", "platt", "isotonic"}
    assert rows["lightgbm_default"]["trees"] >= 1 and "seeds" not in rows["lightgbm_default"]  # deterministic: one fit
    assert set(mlp["paired"]) == {"lightgbm_default", "logistic_regression", "rep", "oracle"}
    best_baseline = max(("lightgbm_default", "logistic_regression"), key=lambda n: rows[n]["val_auc"])
    assert deal["selection"]["best_baseline"] == best_baseline and deal["bootstrap"]["resamples"] == 200
    targets = deal["targets"]
    assert targets["auc_ratio_to_oracle"] == pytest.approx(mlp["auc"] / rows["oracle"]["auc"], rel=1e-4)
    assert targets["beats_lightgbm"] in ("met", "not met", "inconclusive")
    assert targets["calibration_choice"]["configured"] == "temperature"
    # Lead conversion: a different dataset, no rep probability, the simulator's lead oracle; only the
    # "best neural >= LightGBM" target applies to it.
    lead_rows = {r["name"]: r for r in lead["rows"]}
    assert set(lead_rows) == {"mlp", "lightgbm_default", "logistic_regression", "oracle"}
    assert lead["data"]["data_hash"] != deal["data"]["data_hash"] and lead["horizon_days"] == 60
    assert lead_rows["mlp"]["n"] == lead["data"]["sizes"]["test_rows"] and lead_rows["mlp"]["seed"] == 0
    assert "beats_lightgbm" in lead["targets"] and "auc_ratio_to_oracle" not in lead["targets"]
    assert "ece_met" not in lead["targets"]

    forecast, sequence = write_external_reports(tmp_path / "reports")
    board["forecast"], board["sequence"] = forecast_section(forecast), sequence_section(sequence)
    json_path, md_path = write_leaderboard(board, tmp_path / "reports")
    saved = json.loads(json_path.read_text())
    assert saved["sections"]["lead_conversion"]["data"]["data_hash"] == lead["data"]["data_hash"]
    assert saved["forecast"]["rows"] == FORECAST_REPORT["rows"]
    markdown = md_path.read_text()
    assert "## deal_win" in markdown and "## lead_conversion" in markdown
    assert all(f"| {name} |" in markdown for name in [*rows, *lead_rows])
    assert "forecast_leaderboard.json" in markdown and "sequence_fusion.json" in markdown
    assert "training seeds 0, 1" in markdown and "Calibration chosen on validation" in markdown


def test_external_sections_carry_numbers_provenance_and_targets(tmp_path):
    forecast, sequence = write_external_reports(tmp_path)
    fsec, ssec = forecast_section(forecast), sequence_section(sequence)
    assert fsec["source_file"] == "forecast_leaderboard.json" and fsec["generated_at_from"] == "file modification time"
    assert fsec["target_checks"][0]["wape_target_met"] is False
    assert ssec["summary"]["model"]["auc"]["mean"] == 0.7612 and ssec["report_git_commit"] == "abc123"
    forecast_md = "\n".join(render_external_markdown(fsec))
    assert "| organization | W | W-2y | nbeats | 0.367 | 0.900 |" in forecast_md
    assert "0.187" in forecast_md and "not met" in forecast_md
    sequence_md = "\n".join(render_external_markdown(ssec))
    assert "| model | 0.7612 ± 0.0040 |" in sequence_md and "| tabular_only | 0.7511 ± 0.0030 |" in sequence_md
    assert "gain 1.01 pp — not met" in sequence_md


def test_external_sections_name_the_missing_file_or_field(tmp_path):
    with pytest.raises(ExternalReportError, match=r"forecast_leaderboard\.json: report not found"):
        forecast_section(tmp_path / "forecast_leaderboard.json")
    broken = tmp_path / "sequence_fusion.json"
    broken.write_text(json.dumps({**SEQUENCE_REPORT, "summary": {"model": {"auc": 0.7}}}))
    with pytest.raises(ExternalReportError, match=r"summary\.tabular_only\.auc"):
        sequence_section(broken)
    broken.write_text(json.dumps({k: v for k, v in FORECAST_REPORT.items() if k != "rows"}))
    with pytest.raises(ExternalReportError, match="field 'rows' missing"):
        forecast_section(broken)


def test_unknown_model_or_task_is_named():
    with pytest.raises(LeaderboardError, match="no_such_model"):
        compose_run("deal_win", "no_such_model", Path("unused"), 0)
    with pytest.raises(LeaderboardError, match="no_such_task"):
        compose_run("no_such_task", "mlp", Path("unused"), 0)
    assert callable(render_markdown)
