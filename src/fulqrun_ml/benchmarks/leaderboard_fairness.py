"""The fairness columns of the binary leaderboard: every row's holdout gaps by region, industry, company size and
rep tenure (evaluation/fairness.py), and a table of them under each binary section.

Why on the board and not only in model cards: a backbone that wins on AUC by treating one segment worse should
lose that comparison in plain sight, next to the rep's own probability and LightGBM scored on the same rows.
Gaps are flat numbers (attribute -> metric -> gap) so the board's seed combination averages them like any
other metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.evaluation.fairness import fairness_gaps
from fulqrun_ml.registry.fairness_gate import FairnessSettings, load_governance_config

FAIRNESS_KEY = "fairness"
SHOWN = (("tpr", "TPR gap"), ("fpr", "FPR gap"), ("calibration", "worst cal. err"))


def fairness_cells(frame: pd.DataFrame, probabilities: np.ndarray, settings: FairnessSettings | None = None) -> dict:
    """attribute -> metric -> gap (numbers only) for one row's holdout scores."""
    settings = settings or load_governance_config().fairness
    gaps = fairness_gaps(frame, probabilities, settings)
    return {a: {m: float(e["gap"]) for m, e in metrics.items()} for a, metrics in gaps.items()}


def render_fairness(section: dict[str, Any]) -> list[str]:
    """Markdown: one row per model with its gaps per attribute (empty when no row carries fairness)."""
    rows = [r for r in section.get("rows", []) if r.get(FAIRNESS_KEY)]
    if not rows:
        return []
    attributes = list(dict.fromkeys(a for r in rows for a in r[FAIRNESS_KEY]))
    header = ["model", *(f"{a} {title}" for a in attributes for _, title in SHOWN)]
    lines = [
        "",
        f"Fairness on the same holdout ({section.get('task', 'task')}): gaps between groups with enough rows, "
        "at threshold 0.5 (configs/governance/default.yaml; details in each model card).",
        "",
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
    ]
    for r in sorted(rows, key=lambda r: -r.get("auc", 0.0)):
        cells = []
        for a in attributes:
            gaps = r[FAIRNESS_KEY].get(a) or {}
            cells += [f"{gaps[m]:.3f}" if isinstance(gaps.get(m), int | float) else "-" for m, _ in SHOWN]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return [*lines, ""]
