"""`forget`: erase one contact or company from every store, flag the models that learned from it, and prove it.

Order (why): derived stores first (Redis, the PostgreSQL prediction store, prediction logs, embedding and LLM
caches, snapshots, W&B runs), then the model flags, then the CRM itself (an export, leaf tables first, or a
PostgreSQL CRM in one transaction). The CRM is the only place the subject can be resolved
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
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.pii import PIIScrubber
from fulqrun_ml.data.sources import MANIFEST
from fulqrun_ml.erasure.caches import (
    EmbeddingCacheStore,
    crm_scrubber,
    has_vectors,
    profile_keys,
    profile_tables,
    subject_keys,
)
from fulqrun_ml.erasure.files import FileStore
from fulqrun_ml.erasure.matcher import Matcher
from fulqrun_ml.erasure.postgres_store import PostgresTables
from fulqrun_ml.erasure.redis_store import RedisStore
from fulqrun_ml.erasure.subject import ErasureError, Kind, Subject, TableReader, read_crm_table, resolve_subject
from fulqrun_ml.erasure.wandb_store import WandbStore
from fulqrun_ml.registry.locking import atomic_write_json
from fulqrun_ml.registry.retrain_flags import flag_for_retraining
from fulqrun_ml.registry.store import list_versions


@dataclass
class Stores:
    """Where the platform keeps data about customers (every field optional but the CRM: a directory export or a
    PostgreSQL database, `crm_dsn`)."""

    crm_dir: Path | None
    snapshots: list[Path] = field(default_factory=list)
    prediction_logs: list[Path] = field(default_factory=list)
    redis_url: str | None = None
    embedding_cache: Path | None = None
    llm_logs: list[Path] = field(default_factory=list)
    models_dir: Path | None = None
    crm_dsn: str | None = None
    crm_schema: str = "public"
    prediction_dsn: str | None = None
    prediction_table: str = "prediction_log"
    wandb: list[Path] = field(default_factory=list)

    def file_stores(self) -> list[FileStore]:
        """Derived file stores in erasure order (the CRM export is separate: it goes last)."""
        return [
            FileStore("prediction_logs", list(self.prediction_logs)),
            FileStore("llm_logs", list(self.llm_logs), disposable_json=True),
            FileStore("snapshots", list(self.snapshots)),
        ]

    def wandb_store(self) -> WandbStore | None:
        """W&B runs under the W&B roots and under the snapshot (run) directories, which hold `wandb/` dirs."""
        roots = [*self.wandb, *self.snapshots]
        return WandbStore("wandb", roots) if roots else None

    def postgres_stores(self) -> list[PostgresTables]:
        """Derived PostgreSQL stores: the prediction store's table (its offsets table holds file names only)."""
        if not self.prediction_dsn:
            return []
        return [PostgresTables("prediction_postgres", self.prediction_dsn, tables=[self.prediction_table])]

    def crm(self) -> FileStore | PostgresTables:
        """The system of record: PostgreSQL when `crm_dsn` is set, else the export directory."""
        if self.crm_dsn:
            return PostgresTables("crm", self.crm_dsn, self.crm_schema)
        return FileStore("crm", [Path(str(self.crm_dir))])

    def crm_reader(self) -> TableReader | None:
        """Reads the PostgreSQL CRM table by table (None: the directory export is read by path)."""
        crm = self.crm()
        return crm.read_table if isinstance(crm, PostgresTables) else None

    def extracted_at(self) -> pd.Timestamp:
        """When the CRM was extracted (an export's manifest; a live database: now): the search's default date."""
        manifest = Path(str(self.crm_dir)) / MANIFEST
        if not self.crm_dsn and manifest.is_file():
            try:
                return pd.Timestamp(json.loads(manifest.read_text())["extracted_at"])
            except (KeyError, ValueError, TypeError):
                raise ErasureError(f"{manifest} has no readable 'extracted_at'") from None
        return pd.Timestamp.now(tz="UTC")

    def crm_label(self) -> str:
        """The CRM as messages may name it (never a DSN's user or password)."""
        crm = self.crm()
        return crm.location if isinstance(crm, PostgresTables) else str(self.crm_dir)


def _count_all(stores: Stores, subject: Subject, keys: set[str], redis: bool = True) -> dict[str, dict[str, int]]:
    matcher = Matcher(subject)
    out: dict[str, dict[str, int]] = {}
    if stores.redis_url and redis:
        out["redis"] = RedisStore(stores.redis_url).count(matcher)
    for store in [*stores.postgres_stores(), *stores.file_stores()]:
        out[store.name] = store.count(matcher)
    wandb = stores.wandb_store()
    if wandb is not None:
        out[wandb.name] = wandb.count(matcher)
    if stores.embedding_cache is not None:
        out["embedding_cache"] = EmbeddingCacheStore(stores.embedding_cache, keys).count()
    out["crm"] = stores.crm().count(matcher)
    return out


def affected_versions(
    models_dir: Path, crm_dir: Path | None, subject: Subject, hit_files: list[str], crm_schema: str | None = None
) -> list[tuple[str, int]]:
    """Versions whose lineage says they trained on this CRM (after the subject appeared in it), or whose run
    directory holds a snapshot that mentioned the subject. A PostgreSQL CRM (`crm_schema`) is known in a lineage
    only by its source class and schema (the DSN is never stored), so every model read from a PostgreSQL CRM
    with that schema is flagged: more flags rather than a missed one."""
    found = []
    crm = Path(crm_dir).resolve() if crm_dir is not None else None
    for root in sorted(p for p in Path(models_dir).iterdir() if p.is_dir()) if Path(models_dir).is_dir() else []:
        for version in list_versions(models_dir, root.name):
            path = root / str(version) / "lineage.json"
            lineage = json.loads(path.read_text()) if path.is_file() else {}
            source = ((lineage.get("config") or {}).get("data") or {}).get("source") or {}
            if crm_schema is not None:
                same_source = str(source.get("_target_", "")).endswith("PostgresSource")
                same_source = same_source and source.get("schema", "public") == crm_schema
            else:
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
    reader = stores.crm_reader()
    subject = resolve_subject(stores.crm_label(), kind, subject_id, organization_id, reader)
    matcher = Matcher(subject)
    scrubbers = [crm_scrubber(stores.crm_dir, reader), PIIScrubber()]
    keys = subject_keys(subject, scrubbers)
    if has_vectors(stores.embedding_cache):  # the search's cached deal profiles (caches.profile_keys)
        read = reader or partial(read_crm_table, Path(str(stores.crm_dir)))
        keys |= profile_keys(profile_tables(read, subject, stores.extracted_at()), subject, scrubbers)
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
    for pg in stores.postgres_stores():
        erased[pg.name] = {"rows_changed": sum(pg.erase(subject, matcher).values())}
    for store in stores.file_stores():
        erased[store.name] = {"rows_removed": sum(store.erase(subject, matcher, before[store.name]).values())}
    wandb = stores.wandb_store()
    if wandb is not None:
        erased[wandb.name] = {"entries_changed": sum(wandb.erase(subject, matcher).values())}
    flagged = []
    if stores.models_dir is not None:
        hit_files = [str(Path(f).resolve()) for f in before.get("snapshots", {})]
        schema = stores.crm_schema if stores.crm_dsn else None
        for name, version in affected_versions(stores.models_dir, stores.crm_dir, subject, hit_files, schema):
            reason = f"trained on erased {kind} data"
            flag_for_retraining(stores.models_dir, name, version, reason, subject.hashed(), actor)
            flagged.append({"model": name, "version": version})
    crm_store = stores.crm()
    if isinstance(crm_store, PostgresTables):
        erased["crm"] = {"rows_changed": sum(crm_store.erase(subject, matcher).values())}
    else:
        erased["crm"] = {"rows_removed": sum(crm_store.erase(subject, matcher, before["crm"]).values())}
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
        # W&B runs whose binary log could not be rewritten safely (wandb_store.py): their hits stay, for a person
        "wandb_runs_flagged": len(wandb.flagged) if wandb is not None else 0,
    }
    report["erased"] = all(s["hits_after"] == 0 for s in report["stores"].values())
    path = Path(out_dir) / f"erasure-{subject.hashed()[:16]}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    atomic_write_json(path, report)
    return report, path
