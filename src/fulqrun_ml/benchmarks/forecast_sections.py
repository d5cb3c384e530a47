"""Which function renders each section of reports/forecast_leaderboard.md.

Why a registry: the leaderboard's sections are written by separate studies (user tables and hierarchy, the
pipeline blend, pharma), each with its own table shape. A study registers its section's renderer here with one
line; a section without one is rendered as a series section (`forecast_series_report`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fulqrun_ml.benchmarks.forecast_series_report import render_series_sections
from fulqrun_ml.benchmarks.pharma_forecast_report import render_pharma_section
from fulqrun_ml.benchmarks.pipeline_blend_report import render_pipeline_blend_section

SECTION_RENDERERS: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "pipeline_blend": render_pipeline_blend_section,
    "pharma": render_pharma_section,
}


def render_sections(sections: dict[str, Any]) -> str:
    """Every section in order, each by its registered renderer (default: the series sections' one)."""
    parts = []
    for name, section in sections.items():
        renderer = SECTION_RENDERERS.get(name)
        parts.append(renderer(name, section) if renderer else render_series_sections({name: section}))
    return "\n".join(parts)
