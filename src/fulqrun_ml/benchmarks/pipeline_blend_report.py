"""Summary and Markdown of the forecast leaderboard's `pipeline_blend` section (pipeline_blend_study)."""

from __future__ import annotations

from typing import Any

import numpy as np

SECTION = "pipeline_blend"
FORECASTERS = ("blend", "pipeline", "pipeline_cqr", "nbeats", "seasonal_naive", "auto_ets", "auto_arima", "theta")
ANCHORS = ("auto_ets", "auto_arima", "theta")
METRICS = ("wape", "mase", "pinball", "coverage", "interval_width", "cells")
LEVEL = "organization"


def _stat(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per forecaster: mean and min-max over seeds of every metric; the goals checked on the means."""
    table: dict[str, Any] = {
        who: {m: _stat([r["metrics"][who][m] for r in runs]) for m in METRICS} for who in runs[0]["metrics"]
    }
    wape = {who: table[who]["wape"]["mean"] for who in table}
    best = min(ANCHORS, key=wape.__getitem__)
    floor = float(np.mean([r["noise_floor_wape"] for r in runs]))
    check: dict[str, Any] = {"best_anchor": best, "wape_best_anchor": wape[best], "noise_floor_wape": floor}
    check["pipeline_noise_floor_wape"] = float(np.mean([r["pipeline_noise_floor_wape"] for r in runs]))
    check["max_reachable_reduction_vs_best_anchor"] = 1 - floor / wape[best]
    check["max_reachable_reduction_vs_seasonal_naive"] = 1 - floor / wape["seasonal_naive"]
    for who in ("blend", "pipeline", "pipeline_cqr", "nbeats"):
        cov = table[who]["coverage"]["mean"]
        check[who] = {
            "wape": wape[who],
            "wape_reduction_vs_best_anchor": 1 - wape[who] / wape[best],
            "anchor_target_met": bool(1 - wape[who] / wape[best] >= 0.10),
            "wape_reduction_vs_seasonal_naive": 1 - wape[who] / wape["seasonal_naive"],
            "naive_target_met": bool(1 - wape[who] / wape["seasonal_naive"] >= 0.35),
            "coverage_80": cov,
            "coverage_target_met": bool(0.77 <= cov <= 0.83),
        }
    table["target_check"] = check
    return {LEVEL: table}


def _cell(stat: dict[str, float], digits: int = 3) -> str:
    if stat["min"] == stat["max"]:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} [{stat['min']:.{digits}f}, {stat['max']:.{digits}f}]"


def render_pipeline_blend_section(name: str, section: dict[str, Any]) -> str:
    """The section as Markdown: one table (mean [min, max] over seeds), timings, then the goals as measured."""
    runs = section["runs"]
    by_who = section["summary"][LEVEL]
    weights = np.concatenate([r["blend_weight"] for r in runs])
    lines = [
        f"## {name}",
        "",
        f"Data: {section['data']}. Protocol: {section['protocol']}. Seeds {section['seeds']}; cells show the mean "
        "[min, max] over seeds. `pipeline`: open pipeline x P(win) x P(close in month | won) + not-yet-created "
        "deals, Monte-Carlo quantiles as simulated; `pipeline_cqr`: its interval conformalised on earlier origins; "
        "`nbeats`: the spine's time-series forecaster (CQR); `blend`: quantile average of the two, weight and CQR "
        "fitted on earlier origins only.",
        "",
        "| forecaster | WAPE | MASE | pinball | coverage@80 | width@80 |",
        "|---|---|---|---|---|---|",
    ]
    for who in FORECASTERS:
        m = by_who[who]
        lines.append(
            f"| {who} | {_cell(m['wape'])} | {_cell(m['mase'])} | {_cell(m['pinball'])} | "
            f"{_cell(m['coverage'])} | {_cell(m['interval_width'])} |"
        )
    c = by_who["target_check"]
    lines += [
        "",
        f"Timings: nbeats training {np.mean([r['nbeats_train_seconds'] for r in runs]):.1f} s per seed, ONNX Runtime "
        f"(1 thread) {np.mean([r['nbeats_onnx_us_per_row']['batch_1'] for r in runs]):.0f} µs/row at batch 1; "
        f"pipeline forecast {np.mean([r['pipeline_seconds_per_origin'] for r in runs]):.2f} s per origin (models "
        f"refit + {np.mean([np.mean(r['open_deals']) for r in runs]):.0f} open deals simulated). Blend weight of the "
        f"pipeline: mean {weights.mean():.2f} [{weights.min():.2f}, {weights.max():.2f}] over origins and seeds. "
        f"Test cells per seed: {runs[0]['test_cells']}.",
        "",
        f"Goals (best anchor {c['best_anchor']}, WAPE {c['wape_best_anchor']:.3f}). Noise floors: compound-Poisson "
        f"oracle WAPE {c['noise_floor_wape']:.3f} (a forecaster knowing each month's rate: at most "
        f"{c['max_reachable_reduction_vs_best_anchor']:.1%} below the best anchor and "
        f"{c['max_reachable_reduction_vs_seasonal_naive']:.1%} below seasonal naive reachable); the pipeline's own "
        f"simulated WAPE {c['pipeline_noise_floor_wape']:.3f} (its median's error if its distribution were the "
        "truth: which open deals win, and when, stays random):",
        "",
        "| forecaster | WAPE vs best anchor (goal >= 10%) | vs seasonal naive (goal >= 35%) | coverage@80 (77-83%) |",
        "|---|---|---|---|",
    ]
    for who in ("blend", "pipeline", "pipeline_cqr", "nbeats"):
        g = c[who]
        yes = {True: "met", False: "missed"}
        lines.append(
            f"| {who} | {g['wape_reduction_vs_best_anchor']:+.1%} ({yes[g['anchor_target_met']]}) | "
            f"{g['wape_reduction_vs_seasonal_naive']:+.1%} ({yes[g['naive_target_met']]}) | "
            f"{g['coverage_80']:.3f} ({yes[g['coverage_target_met']]}) |"
        )
    return "\n".join(lines) + "\n"
