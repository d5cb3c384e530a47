"""The forecaster's and the sequence fusion's results, merged into the model leaderboard from their own reports.

Both benchmarks are long (the forecast board is an ~18-minute run) and have their own entry points, so the
leaderboard reads their committed JSON reports instead of re-running them, and says which file and which
generation time every number comes from. A missing or malformed report is an error naming the file and field,
not a silently empty section.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.project import REPO_ROOT

FORECAST_REPORT = "forecast_leaderboard.json"
SEQUENCE_REPORT = "sequence_fusion.json"


class ExternalReportError(FulqrunMLError):
    """A merged report is missing, unreadable, or lacks a field the leaderboard needs."""


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ExternalReportError(f"{path}: report not found; run its benchmark (or pass --forecast/--sequence)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ExternalReportError(f"{path}: not valid JSON ({exc})") from exc


def _field(report: dict[str, Any], path: Path, key: str) -> Any:
    if key not in report:
        raise ExternalReportError(f"{path}: field '{key}' missing")
    return report[key]


def report_generated_at(path: Path) -> tuple[str, str]:
    """When the report was produced: its last commit time if it is committed and unchanged, else its mtime.

    The forecast report carries no timestamp of its own, so git is the honest record of when it was made."""
    try:
        rel = path.resolve().relative_to(REPO_ROOT.resolve())
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(rel)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        committed = subprocess.run(
            ["git", "log", "-1", "--format=%cI", "--", str(rel)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if committed and not dirty:
            return committed, "git commit time"
    except (ValueError, subprocess.CalledProcessError, FileNotFoundError):
        pass
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    return mtime, "file modification time"


def forecast_section(path: Path) -> dict[str, Any]:
    """WAPE, MASE, pinball, coverage rows and the forecast target checks, with the report's provenance."""
    report = _load(path)
    generated, how = report_generated_at(path)
    return {
        "kind": "forecast",
        "source_file": str(path.name),
        "generated_at": generated,
        "generated_at_from": how,
        "task": _field(report, path, "task"),
        "targets": _field(report, path, "targets"),
        "rows": _field(report, path, "rows"),
        "target_checks": _field(report, path, "target_checks"),
    }


def sequence_section(path: Path) -> dict[str, Any]:
    """Sequence+tabular fusion vs tabular-only (mean ± std over seeds) and its +1.5 pp target check."""
    report = _load(path)
    generated, how = report_generated_at(path)
    summary = _field(report, path, "summary")
    for arm in ("model", "tabular_only"):
        if arm not in summary or "auc" not in summary[arm]:
            raise ExternalReportError(f"{path}: field 'summary.{arm}.auc' missing")
    return {
        "kind": "sequence",
        "source_file": str(path.name),
        "generated_at": generated,
        "generated_at_from": how,
        "report_git_commit": report.get("git_commit"),
        "seeds": report.get("seeds"),
        "summary": summary,
        "target_auc_gain_pp": _field(report, path, "target_auc_gain_pp"),
        "target_met": _field(report, path, "target_met"),
    }


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def render_external_markdown(section: dict[str, Any]) -> list[str]:
    """A merged section as Markdown, headed by the file and time its numbers come from."""
    when = f"{section['generated_at']} ({section['generated_at_from']})"
    origin = f"From `reports/{section['source_file']}`, generated {when}."
    if section["kind"] == "forecast":
        header = "| level | freq | setting | model | WAPE | MASE | pinball | coverage | train s | params |"
        lines = ["## revenue_forecast (forecaster board)", "", origin, "", header, "|" + "---|" * 10]
        for r in section["rows"]:
            cells = [r.get("level"), r.get("freq"), r.get("setting"), r.get("model"), r.get("wape"), r.get("mase")]
            cells += [r.get("pinball"), r.get("coverage"), r.get("train_seconds"), r.get("params")]
            lines.append("| " + " | ".join(_num(c) for c in cells) + " |")
        lines += ["", "Targets (revenue_forecast):", ""]
        for c in section["target_checks"]:
            lines.append(
                f"- {c.get('level')} {c.get('setting')}: WAPE reduction vs seasonal naive "
                f"{_num(c.get('wape_reduction_vs_seasonal_naive'))} (target "
                f"{section['targets'].get('wape_reduction_vs_seasonal_naive')}) — "
                f"{'met' if c.get('wape_target_met') else 'not met'}; 80% coverage {_num(c.get('coverage_80'))} "
                f"— {'met' if c.get('coverage_target_met') else 'not met'}."
            )
        return lines
    summary = section["summary"]
    lines = [
        "## deal_win sequence + tabular fusion",
        "",
        origin,
        "",
        "| arm | AUC (mean ± std over seeds) |",
        "|---|---|",
    ]
    for arm in ("model", "tabular_only", "rep", "oracle"):
        auc = (summary.get(arm) or {}).get("auc")
        if isinstance(auc, dict):
            lines.append(f"| {arm} | {auc['mean']:.4f} ± {auc.get('std', 0.0):.4f} |")
        elif auc is not None:
            lines.append(f"| {arm} | {_num(auc, 4)} |")
    gain = summary.get("auc_gain_pp")
    gain_text = _num(gain.get("mean") if isinstance(gain, dict) else gain, 2)
    lines += [
        "",
        f"- Fusion ≥ +{section['target_auc_gain_pp']} pp AUC over tabular-only: gain {gain_text} pp — "
        f"{'met' if section['target_met'] else 'not met'}.",
    ]
    return lines
