"""The lifecycle report states whether the stage model beats the empirical transition counts, from the intervals."""

from __future__ import annotations

import copy
import json

import pytest

from fulqrun_ml.benchmarks.lifecycle import merge, verdict
from fulqrun_ml.project import REPO_ROOT


def _cell(mean: float, half: float | None) -> dict:
    return {"mean": mean, "ci95": None if half is None else [mean - half, mean + half]}


def _report(model: float, empirical: float, half: float | None) -> dict:
    metrics = ("cell_mae", "row_tv_distance", "log_loss")
    return {
        "transitions": {
            "summary": {
                "model": {m: _cell(model, half) for m in metrics},
                "empirical": {m: _cell(empirical, half) for m in metrics},
            }
        }
    }


def test_verdict_names_the_winner_the_gap_and_whether_intervals_separate() -> None:
    lines = verdict(_report(0.10, 0.02, 0.01))
    assert len(lines) == 3
    assert lines[0] == "- cell MAE: model 0.1000 vs empirical 0.0200: loses to it by 0.0800 (intervals apart)"
    better = verdict(_report(0.02, 0.03, 0.02))[2]
    assert "log loss: model 0.0200 vs empirical 0.0300: beats it by 0.0100 (intervals overlap)" in better
    assert "intervals overlap" in verdict(_report(0.02, 0.10, None))[0]  # one seed: no interval, no separation


def test_one_seed_reports_merge_into_the_multi_seed_report() -> None:
    full = json.loads((REPO_ROOT / "reports" / "lifecycle_csat.json").read_text())
    parts = []
    for i, seed in enumerate(full["settings"]["seeds"]):
        part = copy.deepcopy(full)
        part["settings"]["seeds"] = [seed]
        part["transitions"]["per_seed"] = [full["transitions"]["per_seed"][i]]
        part["csat"]["per_seed"] = [full["csat"]["per_seed"][i]]
        parts.append(part)
    merged = merge(parts)
    assert merged["settings"]["seeds"] == full["settings"]["seeds"]
    for who in ("model", "empirical"):
        for metric in ("cell_mae", "log_loss"):
            assert merged["transitions"]["summary"][who][metric]["mean"] == pytest.approx(
                full["transitions"]["summary"][who][metric]["mean"]
            )
            assert merged["transitions"]["summary"][who][metric]["ci95"] is not None
    parts[1]["settings"]["max_epochs"] += 1
    with pytest.raises(ValueError, match="differ in settings"):
        merge(parts)
