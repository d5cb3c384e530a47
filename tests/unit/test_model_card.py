"""MODEL_CARD.md is generated into every version from the version's own metadata, metrics and lineage."""

import json

from fulqrun_ml.registry.model_card import MODEL_CARD_FILE, NOT_RECORDED, render_model_card


def test_published_version_carries_a_card_built_from_its_files(published):
    version, parity = published
    card = (version.path / MODEL_CARD_FILE).read_text()
    metrics = json.loads((version.path / "metrics.json").read_text())
    lineage = json.loads((version.path / "lineage.json").read_text())
    for heading in (
        "## Intended use",
        "## Data",
        "## Holdout metrics",
        "## Calibration",
        "## Export parity",
        "## Lineage",
        "## Known limits",
    ):
        assert heading in card
    assert card.startswith(f"# Model card: deal_win v{version.version}")
    for who in ("model", "rep", "oracle"):  # holdout numbers with both baselines, exactly as recorded
        assert f"{metrics[who]['auc']:.4f}" in card and f"{metrics[who]['ece']:.4f}" in card
    assert f"{version.metadata['calibration']['temperature']:.4f}" in card
    assert f"{parity:.2e}" in card
    assert lineage["data_hash"] in card and lineage["git_commit"] in card and lineage["wandb_run_id"] in card
    for split in ("train", "val", "test"):
        window = lineage["data_window"][split]
        assert f"{split} window (as_of): {window['from']} to {window['to']}, {window['rows']} rows" in card
    assert "simulated" in card and "trained from scratch" in card
    assert NOT_RECORDED not in card  # a real version records everything the card asks for


def test_known_limits_follow_the_numbers():
    metrics = {
        "model": {"auc": 0.61, "ece": 0.12, "n": 50},
        "rep": {"auc": 0.66, "ece": 0.2, "n": 50},
    }
    card = render_model_card({"name": "m", "version": 4, "task": "deal_win"}, metrics, {})
    assert "Does **not** beat the rep's own probability on the holdout (AUC 0.6100 vs 0.6600)" in card
    assert "Calibration error 0.1200 exceeds 0.05" in card
    assert "Metrics come from 50 holdout snapshots" in card
    better = render_model_card({}, {"model": {"auc": 0.8, "ece": 0.01}, "rep": {"auc": 0.7}}, {})
    assert "does **not** beat" not in better.lower() and "exceeds" not in better


def test_a_version_with_nothing_recorded_still_gets_a_card():
    card = render_model_card({"name": "m", "version": 1}, {}, {})
    assert card.startswith("# Model card: m v1")
    assert card.count(NOT_RECORDED) >= 4 and "## Known limits" in card


def test_warm_started_version_names_its_parent():
    lineage = {"parent": {"name": "deal_win", "version": 3, "data_hash": "abc"}, "data_hash": "def"}
    assert "| parent version | deal_win v3 (warm start) |" in render_model_card({}, {}, lineage)


def test_survival_and_regression_cards_use_their_own_columns_and_baselines():
    survival = {
        "model": {"concordance": 0.683, "integrated_brier": 0.1148, "nll": 2.209, "ece_30d": 0.029, "n": 4221},
        "model_uncalibrated": {"concordance": 0.683, "ece_30d": 0.037},
        "km_stage": {"concordance": 0.690, "integrated_brier": 0.1177},
    }
    metadata = {"target_kind": "survival", "task": "close_timing_survival", "calibration": {"temperature": 1.017}}
    task = {"card": {"intended_use": "When will this deal close?", "label": "days to close, censored at {h} days"}}
    lineage = {"config": {"data": {"horizon_days": 91}, "task": task}}
    card = render_model_card(metadata, survival, lineage)
    assert "## Intended use\n\nWhen will this deal close?" in card  # the task config describes itself
    assert "| Harrell's C |" in card and "| Kaplan-Meier per stage (baseline) | 0.6900 | 0.1177 |" in card
    assert "label = days to close, censored at 91 days" in card and "T = 1.0170" in card
    assert "Does **not** beat its baseline (Kaplan-Meier per stage (baseline))" in card  # 0.683 <= 0.690
    regression = {"model": {"mae": 14.7, "rmse": 18.7}, "stage_median": {"mae": 14.9, "rmse": 19.0}}
    card = render_model_card({"target_kind": "regression", "task": "close_timing"}, regression, {})
    assert "| this model | 14.7000 | 18.7000 |" in card and "| MAE | RMSE |" in card
    assert "beat its baseline" not in card


def test_platt_calibration_is_named_with_its_intercept():
    metrics = {"model": {"auc": 0.75, "ece": 0.013}, "model_uncalibrated": {"auc": 0.75, "ece": 0.04}}
    metadata = {"calibration": {"method": "platt", "temperature": 1.2, "bias": -0.15}}
    card = render_model_card(metadata, metrics, {})
    assert "Post-hoc Platt scaling T = 1.2000, intercept -0.1500" in card and "ECE before it 0.0400" in card
