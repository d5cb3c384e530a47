"""The fairness section of a binary model card (and of the compliance report), as Markdown.

Rendered from the version's fairness.json (the full report: every group) or, where only the summary survives,
from metadata.json's `fairness` (gaps only). Why the group tables are printed and not only the gaps: a gap
names two groups, and a reviewer needs the sizes and rates behind them to judge whether the gap is noise (a
30-row group) or a pattern.
"""

from __future__ import annotations

from typing import Any

NOT_RECORDED_FAIRNESS = (
    "not recorded: this version was published before fairness was evaluated, or its run's holdout has no "
    "group columns (region, industry, company size, rep tenure)."
)
GAP_COLUMNS = (
    ("selection_rate", "selection-rate gap"),
    ("tpr", "TPR gap"),
    ("fpr", "FPR gap"),
    ("calibration", "worst |mean pred - observed|"),
    ("ece", "ECE gap"),
)
GROUP_COLUMNS = (
    ("n", "n"),
    ("selection_rate", "selection rate"),
    ("tpr", "TPR"),
    ("fpr", "FPR"),
    ("mean_predicted", "mean predicted"),
    ("observed_rate", "observed rate"),
    ("ece", "ECE"),
)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _gap_cell(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "-"
    groups = f" ({entry['high']}" + (f" vs {entry['low']})" if entry.get("low") is not None else ")")
    return f"{entry['gap']:.3f}" + (groups if entry.get("high") is not None else "")


def gap_table(gaps: dict[str, dict[str, Any]]) -> list[str]:
    """One row per attribute: each gap with the groups that define it."""
    lines = ["| attribute | " + " | ".join(t for _, t in GAP_COLUMNS) + " |", "|---" * (len(GAP_COLUMNS) + 1) + "|"]
    for attribute, entries in gaps.items():
        cells = [_gap_cell((entries or {}).get(key)) for key, _ in GAP_COLUMNS]
        lines.append(f"| {attribute} | " + " | ".join(cells) + " |")
    return lines


def group_table(attribute: str, info: dict[str, Any], min_group_size: int) -> list[str]:
    """Every group of one attribute; groups under the size floor are marked as not judged."""
    lines = [
        f"**{attribute}**",
        "",
        "| group | " + " | ".join(t for _, t in GROUP_COLUMNS) + " |",
        "|---" * (len(GROUP_COLUMNS) + 1) + "|",
    ]
    for group, m in sorted(info.get("groups", {}).items(), key=lambda kv: -kv[1].get("n", 0)):
        mark = "" if m.get("n", 0) >= min_group_size else " (not judged)"
        lines.append(f"| {group}{mark} | " + " | ".join(_num(m.get(k)) for k, _ in GROUP_COLUMNS) + " |")
    return [*lines, ""]


def mitigation_lines(mitigation: dict[str, Any]) -> list[str]:
    if not mitigation:
        return []
    if "skipped" in mitigation or "cost" not in mitigation:
        return [
            f"Mitigation ({mitigation.get('method', 'threshold_optimizer')}): not fitted — "
            f"{mitigation.get('skipped', 'not recorded')}."
        ]
    c = mitigation["cost"]
    return [
        f"Mitigation measured (not applied to the served model): fairlearn ThresholdOptimizer "
        f"({mitigation.get('constraint')}) on `{mitigation.get('attribute')}`, thresholds fitted on validation, "
        "judged on the holdout:",
        "",
        f"- equalized-odds gap (max of TPR/FPR gaps): {c['equalized_odds_gap_before']:.3f} → "
        f"{c['equalized_odds_gap_after']:.3f}",
        f"- accuracy: {c['accuracy_before']:.4f} → {c['accuracy_after']:.4f} ({c['accuracy_change']:+.4f})",
        f"- AUC: {c['auc_before']:.4f} → {c['auc_after']:.4f} ({c['auc_change']:+.4f}; after = AUC of the "
        "randomised decision's probability)",
    ]


def fairness_section(report: dict[str, Any] | None, summary: dict[str, Any] | None) -> str:
    """The card's "Fairness" body from the full report (preferred) or the metadata summary."""
    if not report and not (summary and summary.get("gaps")):
        return NOT_RECORDED_FAIRNESS
    source = report or {}
    summary = (report or {}).get("summary") or summary or {}
    threshold, floor = summary.get("threshold", 0.5), summary.get("min_group_size", 30)
    lines = [
        f"Holdout metrics by group (fairlearn MetricFrame) at decision threshold {threshold}. Gaps are the largest "
        f"minus the smallest value over groups with at least {floor} rows (smaller groups are listed, not judged); "
        "calibration is the worst group's |mean predicted - observed win rate|. Rates differ partly because win "
        "rates differ by segment: compare TPR/FPR (equalized odds) and calibration before selection rate.",
        "",
        *gap_table(summary.get("gaps") or {}),
        "",
    ]
    for attribute, reason in (source.get("missing_attributes") or {}).items():
        lines.append(f"- `{attribute}` not evaluated: {reason}.")
    for attribute in summary.get("missing_attributes") or []:
        if attribute not in (source.get("missing_attributes") or {}):
            lines.append(f"- `{attribute}` not evaluated.")
    single = [a for a, g in (summary.get("gaps") or {}).items() if not g]
    if single:
        lines.append(f"- No gap for {', '.join(single)}: fewer than two groups reach {floor} rows on the holdout.")
    if lines[-1] != "":
        lines.append("")
    for attribute, info in (source.get("attributes") or {}).items():
        lines += group_table(attribute, info, floor)
    lines += mitigation_lines(source.get("mitigation") or summary.get("mitigation") or {})
    return "\n".join(lines).rstrip()
