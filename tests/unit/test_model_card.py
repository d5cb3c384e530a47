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
