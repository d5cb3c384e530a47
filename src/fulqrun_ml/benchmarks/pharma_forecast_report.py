"""Markdown of the forecast leaderboard's `pharma` section (`benchmarks.pharma_forecast`).

Why its own renderer: the section's runs cover two targets (TRx, NRx), so the header states training time and
serving latency per target; the per-level tables and goal lines are the series report's, read from `summary`
keyed "<target>/<level>". Kept apart from the study so `forecast_sections` can register it without importing
the training stack (which imports `forecast_sections` itself).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fulqrun_ml.benchmarks.forecast_series_report import render_series_sections


def render_pharma_section(name: str, section: dict[str, Any]) -> str:
    """The pharma header (per-target training time and serving latency), then the series tables per
    "<target>/<level>" with their goal lines."""
    lines = [
        f"Pharma: TRx / NRx of one product by HCP and territory, trained as a user's series table "
        f"(`task=forecast data=series`, {len(section['runs'])} runs). Per target, mean over seeds:",
        "",
        "| target | training s/run | epochs | ONNX µs/row batch 1 | ONNX µs/row batch 1024 | anchors fit s/run |",
        "|---|---|---|---|---|---|",
    ]
    for target in section["targets"]:
        runs = [r for r in section["runs"] if r["target"] == target]
        lines.append(
            f"| {target} | {np.mean([r['train_seconds'] for r in runs]):.0f} | "
            f"{np.mean([r['epochs'] for r in runs]):.0f} | "
            f"{np.mean([r['onnx_us_per_row']['batch_1'] for r in runs]):.0f} | "
            f"{np.mean([r['onnx_us_per_row']['batch_1024'] for r in runs]):.1f} | "
            f"{np.mean([r['baseline_seconds'].get('anchors', float('nan')) for r in runs]):.0f} |"
        )
    body = render_series_sections({name: section})
    head, _, rest = body.partition("\n\n")  # keep the generic "## pharma" title first
    return "\n".join([head, "", *lines, "", rest])
