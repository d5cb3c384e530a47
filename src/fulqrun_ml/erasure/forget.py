"""`forget`: erase one contact or company from every store, flag the models that learned from it, and prove it.

Order (why): derived stores first (Redis, prediction logs, embedding and LLM caches, snapshots), then the model
flags, then the CRM export itself, leaf tables first. The CRM is the only place the subject can be resolved
from; as long as any of its rows is left, a rerun after a crash resolves the subject again and finishes the job
(every step only removes what is still there, so running twice equals running once).

Proof: before anything changes every store is scanned for every id and identifier of the subject; after the
erasure a fresh matcher scans every store again. The report (JSON, written atomically) holds counts per store,
before and after, and the subject only as a keyed hash: it must itself be safe to keep.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.erasure.caches import EmbeddingCacheStore, crm_scrubber, subject_keys
from fulqrun_ml.erasure.files import FileStore
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.redis_store import RedisStore
from fulqrun_ml.erasure.subject import Kind, Subject, resolve_subject
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.retrain_flags import flag_for_retraining
from fulqrun_ml.registry.store import list_versions


@dataclass
class Stores:
    """Where the platform keeps data about customers (every field optional but the CRM export)."""

    crm_dir: Path
    snapshots: list[Path] = field(default_factory=list)
    prediction_logs: list[Path] = field(default_factory=list)
    redis_url: str | None = None
    embedding_cache: Path | None = None
    llm_logs: list[Path] = field(default_factory=list)
    models_dir: Path | None = None

    def file_stores(self) -> list[FileStore]:
        """Derived file stores in erasure order (the CRM export is separate: it goes last)."""
        return [
            FileStore("prediction_logs", list(self.prediction_logs)),
            FileStore("llm_logs", list(self.llm_logs), disposable_json=True),
            FileStore("snapshots", list(self.snapshots)),
        ]


def _count_all(stores: Stores, subject: Subject, keys: set[str], redis: bool = True) -> dict[str, dict[str, int]]:
    matcher = Matcher(subject)
    out: dict[str, dict[str, int]] = {}
    if stores.redis_url and redis:
        out["redis"] = RedisStore(stores.redis_url).count(matcher)
    for store in stores.file_stores():
        out[store.name] = store.count(matcher)
    if stores.embedding_cache is not None:
        out["embedding_cache"] = EmbeddingCacheStore(stores.embedding_cache, keys).count()
    out["crm"] = FileStore("crm", [stores.crm_dir]).count(matcher)
    return out


def affected_versions(models_dir: Path, crm_dir: Path, subject: Subject, hit_files: list[str]) -> list[tuple[str, int]]:
    """Versions whose lineage says they trained on this CRM export (after the subject appeared in it), or whose
    run directory holds a snapshot that mentioned the subject."""
    found = []
    crm = Path(crm_dir).resolve()
    for root in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()) if Path(models_dir).is_dir() else []:
        for version in list_versions(models_dir, root.name):
            path = root / str(version) / "lineage.json"
            lineage = json.loads(path.read_text()) if path.is_file() else {}
            source = ((lineage.get("config") or {}).get("data") or {}).get("source") or {}
            same_source = bool(source.get("path")) and Path(str(source["path"])).resolve() == crm
            ends = [w.get("to") for w in (lineage.get("data_window") or {}).values() if isinstance(w, dict)]
            ends = [pd.Timestamp(e, tz="UTC") for e in ends if e]
            in_window = subject.first_seen is None or not ends or max(ends) >= subject.first_seen.normalize()
            run_dir = str(lineage.get("run_dir") or "")
            in_run = bool(run_dir) and any(f.startswith(str(Path(run_dir).resolve())) for f in hit_files)
            if (same_source and in_window) or in_run:
                found.append((root.name, version))
    return found


def forget(
    stores: Stores, kind: Kind, subject_id: str, organization_id: str | None, out_dir: Path, actor: str | None = None
) -> tuple[dict[str, Any], Path]:
    """Erase the subject everywhere; returns the report and where it was written."""
    clock = {"start": time.perf_counter()}
    subject = resolve_subject(stores.crm_dir, kind, subject_id, organization_id)
    matcher = Matcher(subject)
    keys = subject_keys(subject, [crm_scrubber(stores.crm_dir), PIIScrubber()])
    clock["resolve"] = time.perf_counter()
    # Redis is read once for both: its erase counts what it finds before removing (it goes first).
    before = _count_all(stores, subject, keys, redis=False)
    clock["scan_before"] = time.perf_counter()
    erased: dict[str, dict[str, int]] = {}
    if stores.redis_url:
        erased["redis"] = RedisStore(stores.redis_url).erase(matcher)
        before = {"redis": {"keys": erased["redis"]["keys_with_hits"]}, **before}
    if stores.embedding_cache is not None:
        erased["embedding_cache"] = EmbeddingCacheStore(stores.embedding_cache, keys).erase()
    for store in stores.file_stores():
        erased[store.name] = {"rows_removed": sum(store.erase(subject, matcher, before[store.name]).values())}
    flagged = []
    if stores.models_dir is not None:
        hit_files = [str(Path(f).resolve()) for f in before.get("snapshots", {})]
        for name, version in affected_versions(stores.models_dir, stores.crm_dir, subject, hit_files):
            reason = f"trained on erased {kind} data"
            flag_for_retraining(stores.models_dir, name, version, reason, subject.hashed(), actor)
            flagged.append({"model": name, "version": version})
    crm = FileStore("crm", [stores.crm_dir]).erase(subject, matcher, before["crm"])
    erased["crm"] = {"rows_removed": sum(crm.values())}
    clock["erase"] = time.perf_counter()
    after = _count_all(stores, subject, keys)  # the subject as resolved before: the CRM no longer knows it
    clock["scan_after"] = time.perf_counter()
    phases = ("resolve", "scan_before", "erase", "scan_after")
    marks = [clock["start"], *(clock[p] for p in phases)]
    report = {
        "subject": {"kind": kind, "hash": subject.hashed(), "organization_id": subject.organization_id},
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(clock["scan_after"] - clock["start"], 3),
        "seconds_by_phase": {p: round(b - a, 3) for p, a, b in zip(phases, marks[:-1], marks[1:], strict=True)},
        "identifiers_checked": {"ids": len(subject.ids), "other": len(subject.identifiers), "texts": len(keys)},
        "stores": {
            name: {
                "hits_before": sum(before[name].values()),
                "files_with_hits_before": len(before[name]),
                "hits_after": sum(after[name].values()),
                "erased": erased.get(name, {}),
            }
            for name in before
        },
        "models_flagged_for_retraining": flagged,
    }
    report["erased"] = all(s["hits_after"] == 0 for s in report["stores"].values())
    path = Path(out_dir) / f"erasure-{subject.hashed()[:16]}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    atomic_write_json(path, report)
    return report, path
