"""`fulqrun-ml governance report <model> <version>`: the compliance report of one published version, as Markdown,
HTML and JSON.

It gathers what an auditor asks for in one place: lineage and the data hash, holdout metrics and calibration,
fairness by group with the promote gate's verdict, drift of the traffic served since deployment (or "no traffic
logged yet"), a PII scan of the version's artifacts, and the audit trail of publications, promotions, rollbacks
and fairness overrides with who and when.

Why the lineage, metrics, calibration and fairness sections are the model card's own renderings: the report
and the card then cannot disagree about the same version. Everything is read from files the registry, the
prediction log and the audit log already hold; nothing is recomputed except the scan and the drift statistics.
Each output is written to a temporary sibling, fsynced and renamed over, so a reader sees a whole report or
none.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.monitoring.governance_sections import (
    NO_TRAFFIC,
    audit_trail,
    deployment_time,
    drift_since_deployment,
    open_prediction_store,
    scan_artifacts,
)
from fulqrun_ml.monitoring.prediction_store import PredictionStore, open_store
from fulqrun_ml.project import CONFIG_DIR
from fulqrun_ml.registry.alias_state import read_alias_state
from fulqrun_ml.registry.audit import current_actor, read_audit
from fulqrun_ml.registry.commands import default_models_dir
from fulqrun_ml.registry.fairness_gate import check_fairness, load_governance_config
from fulqrun_ml.registry.locking import atomic_write_text
from fulqrun_ml.registry.model_card import read_json, render_model_card
from fulqrun_ml.registry.store import get_version

CARD_SECTIONS = ("Data", "Lineage", "Holdout metrics", "Calibration", "Fairness")
DSN_ENV = "FULQRUN_PREDICTION_LOG_DSN"
HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #bbb;padding:3px 6px;font-size:0.9em}}
code{{background:#f3f3f3}}</style></head><body>
{body}</body></html>
"""


def card_sections(card: str) -> dict[str, str]:
    """A rendered model card split into `## heading -> body`."""
    sections = {}
    for chunk in card.split("\n## ")[1:]:
        heading, _, body = chunk.partition("\n")
        sections[heading.strip()] = body.strip()
    return sections


def default_prediction_store() -> Path:
    """Where `configs/serving/cpu.yaml` makes the prediction log ship its Parquet store (relative to cwd)."""
    from omegaconf import OmegaConf

    try:
        settings = OmegaConf.load(CONFIG_DIR / "serving" / "cpu.yaml").prediction_log
        return Path(str(OmegaConf.to_container(settings, resolve=True)["dir"])) / "store"
    except Exception:  # a serving config without the block: the documented default
        return Path("logs") / "predictions" / "store"


def build_report(
    models_dir: Path,
    name: str,
    version: int | str,
    store: PredictionStore | None = None,
    governance_config: str | Path | None = None,
    drift_results: Path | None = None,
) -> dict[str, Any]:
    """Everything the report says, as data (also written as JSON next to the Markdown and HTML)."""
    chosen = get_version(models_dir, name, version)
    config = load_governance_config(governance_config)
    fairness = read_json(chosen.path / "fairness.json") or None
    card = render_model_card(
        chosen.metadata, read_json(chosen.path / "metrics.json"), read_json(chosen.path / "lineage.json"), fairness
    )
    violations, recorded = check_fairness(chosen.metadata, config.gate)
    audit = read_audit(models_dir, name)
    since, since_what = deployment_time(audit, chosen.version)
    return {
        "model": name,
        "version": chosen.version,
        "path": str(chosen.path),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generated_by": current_actor(),
        "aliases": read_alias_state(models_dir, name).aliases_of(chosen.version),
        "metadata": {
            k: chosen.metadata.get(k)
            for k in ("task", "target_kind", "published_at", "data_hash", "git_commit", "wandb_run_id")
        },
        "card_sections": {k: v for k, v in card_sections(card).items() if k in CARD_SECTIONS},
        "fairness_gate": {
            "config": config.source,
            "max_gaps": config.gate.max_gaps,
            "recorded": recorded,
            "passed": recorded and not violations,
            "violations": [v.to_dict() for v in violations],
        },
        "drift": drift_since_deployment(chosen.path, name, chosen.version, since, store, drift_results)
        | {"since_what": since_what},
        "pii_scan": scan_artifacts(chosen.path),
        "audit": audit_trail(models_dir, name),
    }


def _gate_line(gate: dict[str, Any]) -> str:
    if not gate["recorded"]:
        return "no fairness results recorded for this version"
    if gate["passed"]:
        return f"pass (max gaps {gate['max_gaps']})"
    return "FAIL: " + "; ".join(
        f"{v['attribute']} {v['metric']} gap {v['gap']:.3f} > {v['limit']:.3f}" for v in gate["violations"]
    )


def _drift_text(drift: dict[str, Any]) -> str:
    lines = [f"Deployed: {drift.get('since') or 'unknown'} ({drift['since_what']})."]
    if drift["status"] == NO_TRAFFIC:
        lines.append(f"**No traffic logged yet** for this version since then ({drift['rows_logged']} rows).")
    else:
        lines.append(f"{drift['rows_logged']} predictions logged, {drift['first']} to {drift['last']}.")
        summary = drift.get("drift")
        if summary is None:
            lines.append(drift.get("drift_note", "drift not computed"))
        else:
            drifted = ", ".join(summary["features_drifted"]) or "none"
            lines += [
                f"Against the training holdout: {summary['features_checked']} features checked, drifted: {drifted}.",
                "",
                "| feature | kind | status | PSI | KS | χ² | Wasserstein |",
                "|---|---|---|---|---|---|---|",
            ]
            for f in summary["features"]:
                cells = [f.get(k) for k in ("psi", "ks", "chi2", "wasserstein")]
                shown = " | ".join(f"{c:.4f}" if isinstance(c, int | float) else "-" for c in cells)
                lines.append(f"| {f['feature']} | {f['kind']} | {f['status']} | {shown} |")
    if "drift_results" in drift:
        lines += ["", f"Monitor results file `{drift['drift_results_file']}` (as written by `fulqrun-ml monitor`):"]
        lines += ["", "```json", json.dumps(drift["drift_results"], indent=1, default=str)[:4000], "```"]
    return "\n".join(lines)


def _pii_text(scan: dict[str, Any]) -> str:
    verdict = "clean: no findings" if scan["clean"] else f"**findings**: {scan['findings']}"
    lines = [
        f"Detectors: {', '.join(scan['detectors'])} (data/pii.py). {scan['files_scanned']} files scanned; {verdict}. "
        "Counts only: findings are never quoted here."
    ]
    lines += [f"- `{f}`: {counts}" for f, counts in scan["by_file"].items()]
    lines += [f"- `{f}` skipped: {why}" for f, why in scan["skipped"].items()]
    return "\n".join(lines)


def _audit_text(audit: list[dict[str, Any]], version: int) -> str:
    if not audit:
        return "No registry changes recorded."
    lines = ["| when (UTC) | who | what | alias | from | to | override | reason |", "|---" * 8 + "|"]
    for r in audit:
        mark = " ←" if version in (r.get("to_version"), r.get("from_version")) else ""
        cells = [
            r["at"],
            r["actor"],
            r["action"] + mark,
            r.get("alias"),
            r.get("from_version"),
            r.get("to_version"),
            r.get("override"),
            r.get("reason"),
        ]
        lines.append("| " + " | ".join("-" if c is None else str(c).replace("|", "/") for c in cells) + " |")
    overrides = [r for r in audit if r.get("override")]
    lines += ["", f"{len(overrides)} fairness override(s); ← marks records concerning this version."]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    sections = report["card_sections"]
    meta = report["metadata"]
    lines = [
        f"# Compliance report: {report['model']} v{report['version']}",
        "",
        f"Generated {report['generated_at']} by {report['generated_by']} from `{report['path']}`. "
        f"Aliases now: {', '.join(report['aliases']) or 'none'}. Task `{meta.get('task')}` "
        f"({meta.get('target_kind')}), published {meta.get('published_at')}.",
        "",
        "## Summary",
        "",
        "| check | result |",
        "|---|---|",
        f"| data hash | `{meta.get('data_hash') or 'not recorded'}` |",
        f"| fairness gate | {_gate_line(report['fairness_gate'])} |",
        f"| drift since deployment | {report['drift']['status']} |",
        f"| PII scan | {'clean' if report['pii_scan']['clean'] else report['pii_scan']['findings']} |",
        f"| audit records | {len(report['audit'])} |",
        "",
        "## Lineage and data hash",
        "",
        sections.get("Data", "not recorded"),
        "",
        sections.get("Lineage", "not recorded"),
        "",
        "## Metrics and calibration",
        "",
        sections.get("Holdout metrics", "not recorded"),
        "",
        sections.get("Calibration", "not recorded"),
        "",
        "## Fairness",
        "",
        f"Promote gate ({report['fairness_gate']['config']}): {_gate_line(report['fairness_gate'])}.",
        "",
        sections.get("Fairness", "not applicable: not a binary model"),
        "",
        "## Drift since deployment",
        "",
        _drift_text(report["drift"]),
        "",
        "## PII scan of the artifacts",
        "",
        _pii_text(report["pii_scan"]),
        "",
        "## Audit trail",
        "",
        _audit_text(report["audit"], report["version"]),
    ]
    return "\n".join(lines) + "\n"


def render_html(markdown: str, title: str) -> str:
    """The same report as a standalone HTML page (raw HTML in the Markdown is escaped, not passed through)."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return HTML_PAGE.format(title=title, body=body)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """<out>/<model>_v<version>.{md,html,json}; returns the paths."""
    stem = f"{report['model']}_v{report['version']}"
    markdown = render_markdown(report)
    paths = {"markdown": out_dir / f"{stem}.md", "html": out_dir / f"{stem}.html", "json": out_dir / f"{stem}.json"}
    atomic_write_text(paths["json"], json.dumps(report, indent=2, default=str))
    atomic_write_text(paths["markdown"], markdown)
    atomic_write_text(paths["html"], render_html(markdown, f"Compliance report: {stem}"))
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fulqrun-ml governance", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("report", help="compliance report of one version (Markdown + HTML + JSON)")
    p.add_argument("model")
    p.add_argument("version", help="number, 'latest' or an alias (production, candidate)")
    p.add_argument("--models-dir", default=default_models_dir(), help="registry root (default: %(default)s)")
    p.add_argument("--out", default="reports/governance", help="output directory (default: %(default)s)")
    p.add_argument("--governance-config", help="fairness gate settings: a YAML path or a name in configs/governance/")
    p.add_argument("--prediction-store", help="Parquet prediction store (default: the serving config's)")
    p.add_argument("--prediction-dsn", default=os.environ.get(DSN_ENV), help=f"PostgreSQL store (default: ${DSN_ENV})")
    p.add_argument("--drift-results", help="a `fulqrun-ml monitor drift --out` JSON to include")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `governance report`; 0 when written, 2 on an error (printed as `error: ...`)."""
    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.prediction_dsn:
            store: PredictionStore | None = open_store(dsn=args.prediction_dsn)
        else:
            store = open_prediction_store(
                Path(args.prediction_store) if args.prediction_store else default_prediction_store()
            )
        drift_results = Path(args.drift_results) if args.drift_results else None
        if drift_results is not None and not drift_results.is_file():
            raise FulqrunMLError(f"--drift-results: no file {drift_results}")
        report = build_report(
            Path(args.models_dir), args.model, args.version, store, args.governance_config, drift_results
        )
        paths = write_report(report, Path(args.out))
    except FulqrunMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
