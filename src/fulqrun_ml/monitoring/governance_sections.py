"""The parts of the compliance report that are not already in the model card: the PII scan of a version's
artifacts, drift since the version was deployed, and the registry's audit trail.

Why here and not in the registry: drift needs the prediction log and the drift statistics of the monitoring
layer; the registry (below it) only records what happened.

PII scan. Every file of the version is read: text files (JSON, Markdown, YAML, pbtxt, CSV) whole; ONNX graphs
and Parquet as their embedded strings (vocabularies live there); weights (`.pt`) are numbers only and listed as
skipped. Findings are counted per kind and file, never quoted: a compliance report must not itself leak what it
found. Name detection is off by default because its capitalised-phrase heuristic flags every heading of a model
card ("Holdout Metrics"); emails and phone numbers are the scan's reliable signals (data/pii.py lists the
detectors' limits).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.data.snapshot_files import read_snapshot, snapshot_exists
from fulqrun_ml.features.spec import FittedFeatureSpec
from fulqrun_ml.monitoring.drift import DriftReport, drift_report, spec_columns
from fulqrun_ml.monitoring.prediction_log import read_predictions
from fulqrun_ml.monitoring.prediction_store import ParquetStore, PredictionStore
from fulqrun_ml.registry.audit import read_audit

TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".yaml", ".yml", ".txt", ".pbtxt", ".csv")
STRING_SUFFIXES = (".onnx", ".parquet", ".plan")  # binary, with strings inside worth reading
PRINTABLE_RUN = re.compile(rb"[\x20-\x7e]{4,}")
AUDIT_ACTIONS = ("publish", "promote", "archive", "rollback")
NO_TRAFFIC = "no traffic logged yet"


def _strings_of(path: Path) -> str:
    """The text inside a binary file: Parquet string columns, else printable runs (like `strings`)."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        text = frame.select_dtypes(include=["object", "string"]).astype(str)
        return "\n".join(text.to_numpy().ravel().tolist() + [str(c) for c in frame.columns])
    return "\n".join(m.decode("ascii") for m in PRINTABLE_RUN.findall(path.read_bytes()))


def scan_artifacts(version_dir: Path, detect_names: bool = False) -> dict[str, Any]:
    """PII findings per file of a version directory: counts per kind only, plus what was skipped and why."""
    scrubber = PIIScrubber(detect_names=detect_names)
    files, skipped, totals = {}, {}, Counter()
    for path in sorted(p for p in Path(version_dir).rglob("*") if p.is_file()):
        name = str(path.relative_to(version_dir))
        if path.suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
        elif path.suffix in STRING_SUFFIXES:
            text = _strings_of(path)
        else:
            skipped[name] = "binary weights (numbers only)" if path.suffix in (".pt", ".pth") else "not text"
            continue
        counts = Counter(m.kind for line in text.splitlines() for m in scrubber.find(line))
        files[name] = dict(counts)
        totals.update(counts)
    return {
        "detectors": ["email", "phone", *(["name"] if detect_names else [])],
        "files_scanned": len(files),
        "findings": dict(totals),
        "clean": not totals,
        "by_file": {k: v for k, v in files.items() if v},
        "skipped": skipped,
    }


def deployment_time(audit: list[dict[str, Any]], version: int) -> tuple[str | None, str]:
    """When `version` last went to production (audit), else when it was published; and which of the two."""
    promoted = [
        r
        for r in audit
        if r.get("action") in ("promote", "rollback")
        and r.get("to_version") == version
        and r.get("alias") == "production"
    ]
    if promoted:
        return promoted[-1]["at"], "promoted to production"
    published = [r for r in audit if r.get("action") == "publish" and r.get("to_version") == version]
    return (published[-1]["at"], "published (never promoted to production)") if published else (None, "unknown")


def open_prediction_store(directory: Path | None) -> PredictionStore | None:
    """The Parquet prediction store under `directory` if one exists there (never created by reading)."""
    if directory is None or not Path(directory).is_dir():
        return None
    return ParquetStore(Path(directory))


def drift_since_deployment(
    version_dir: Path,
    name: str,
    version: int,
    since: str | None,
    store: PredictionStore | None,
    drift_results: Path | None = None,
) -> dict[str, Any]:
    """Drift of the traffic this version served since `since` against its training holdout, or "no traffic".

    `drift_results` (a `fulqrun-ml monitor drift --out` JSON) is included as given when passed."""
    out: dict[str, Any] = {"since": since}
    if drift_results is not None:
        out["drift_results_file"] = str(drift_results)
        out["drift_results"] = json.loads(Path(drift_results).read_text())
    logged = pd.DataFrame()
    if store is not None:
        start = pd.Timestamp(since).to_pydatetime() if since else None
        logged = read_predictions(store, model=name, since=start)
        if not logged.empty:
            logged = logged[logged["version"] == version]
    out["rows_logged"] = len(logged)
    if logged.empty:
        out["status"] = NO_TRAFFIC
        return out
    out["status"] = "traffic logged"
    out["first"], out["last"] = str(logged["time"].min()), str(logged["time"].max())
    lineage = json.loads((version_dir / "lineage.json").read_text()) if (version_dir / "lineage.json").is_file() else {}
    reference_path = Path(str(lineage.get("run_dir") or "")) / "holdout.parquet"
    if not snapshot_exists(reference_path) or not (version_dir / "feature_spec.json").is_file():
        out["drift"] = None
        out["drift_note"] = f"no training reference at {reference_path}: drift not computed"
        return out
    numeric, categorical, vocabularies = spec_columns(FittedFeatureSpec.load(version_dir / "feature_spec.json"))
    numeric = [c for c in numeric if c in logged]
    categorical = [c for c in categorical if c in logged]
    report = drift_report(
        read_snapshot(reference_path),
        logged,
        numeric,
        categorical,
        vocabularies=vocabularies,
        window=(out["first"], out["last"]),
    )
    out["drift"] = _drift_summary(report)
    return out


def _drift_summary(report: DriftReport) -> dict[str, Any]:
    return {
        "n": report.n_current,
        "features_checked": len(report.features),
        "features_drifted": report.drifted_features,
        "features": [
            {"feature": f.feature, "kind": f.kind, "status": f.status, **{s.name: s.statistic for s in f.statistics}}
            for f in report.features
        ],
    }


def audit_trail(models_dir: Path, name: str) -> list[dict[str, Any]]:
    """Publications, promotions, archivals and rollbacks of the model, oldest first, with who/when and any
    fairness override (reason and the gaps it overrode)."""
    rows = []
    for r in read_audit(models_dir, name):
        if r.get("action") not in AUDIT_ACTIONS:
            continue
        rows.append(
            {
                "at": r.get("at"),
                "actor": r.get("actor"),
                "action": r.get("action"),
                "alias": r.get("alias"),
                "from_version": r.get("from_version"),
                "to_version": r.get("to_version"),
                "override": r.get("override"),
                "reason": r.get("reason"),
                "violations": r.get("violations"),
            }
        )
    return rows
