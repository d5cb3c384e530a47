"""The lifecycle report states whether the stage model beats the empirical transition counts, from the intervals."""

from __future__ import annotations

from fulqrun_ml.benchmarks.lifecycle import verdict


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
