"""An incremental deal-win snapshot for `data.snapshot_engine=duckdb`: reuse the previous build's rows, build only
the new as_of dates.

Why: at 1M deals the DuckDB build of every snapshot row and feature takes a minute or more, and a warm start on
a newer extract (two more weeks of data) needs only the grid dates that extract adds. The rows of a past date are
fixed once its horizon has passed (every grid date is at least one horizon before the extraction, so its labels
are complete, and every feature reads only data stamped at or before as_of), as long as the data they read did
not change. So a cache entry holds the rows built so far (Parquet parts, in frame order) and a fingerprint of
everything those rows read, as it stood at the entry's extraction time (`cutoff`). A newer extract reuses the
rows only if the same fingerprint, computed on it at the same cutoff, is equal; a late-arriving edit of a past
row (an activity back-dated, a stage change corrected, a deal reassigned, a company row the features fell back
on changed) changes it, and the whole frame is rebuilt and the entry replaced.

The fingerprint, per table: the number of rows stamped at or before the cutoff and the sum of a hash of the
columns the deal-win builders read (stage history also hashes each row's rank in (changed_at, table) order,
which breaks ties in the stage spans and the frame's row order). Companies' and users' current rows are read
only where no history version is valid at as_of (the documented fallback); the ids of those used are kept with
the entry and their current rows hashed too. Not detected: a hash collision (64-bit row hashes, summed).

The entry's address is a hash of what decides the rows besides the data: the grid settings, the feature names,
the source of the deal-win SQL builder functions and constants (`_builder_code`) and of this module, and the
DuckDB version; an edit to them starts a new entry (an edit to another task's SQL in the same files does not).
Writes are atomic (a part is renamed into place, the manifest replaced last) and serialized by a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from fulqrun_ml.data import crm_duckdb, snapshots_duckdb
from fulqrun_ml.data.contract import HISTORY_COLUMNS
from fulqrun_ml.data.crm_duckdb import CRMDatabase
from fulqrun_ml.features import deal_features_duckdb
from fulqrun_ml.features.deal_features_duckdb import create_history_views

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
FORMAT = 1
# table -> (its time column, the columns the deal-win builders read, whether table order matters)
FINGERPRINTED: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "opportunities": ("created_at", ("id", "company_id", "assigned_to", "value", "created_at"), False),
    "stage_history": ("changed_at", ("opportunity_id", "from_stage", "to_stage", "changed_at"), True),
    "activities": ("created_at", ("related_id", "type", "direction", "created_at"), False),
    "users": ("created_at", ("id", "created_at"), False),
    "company_history": ("valid_from", HISTORY_COLUMNS["company_history"], False),
    "user_history": ("valid_from", HISTORY_COLUMNS["user_history"], False),
}
# Current rows read where no history version is valid at as_of: the flag in the features table, the deal column
# that leads to the row, and the row's columns the builders read.
FALLBACKS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "companies": (
        "current__company",
        "company_id",
        ("id", "industry", "size", "annual_revenue", "employee_count", "country", "created_at"),
    ),
    "users": ("current__rep_user", "assigned_to", ("id", "region", "created_at")),
}


def _ts(value: pd.Timestamp) -> str:
    return pd.Timestamp(value).tz_convert("UTC").isoformat()


def _builder_code() -> list[Any]:
    """The functions and constants that decide the cached rows: their source (or repr) is part of the address, so
    an edit to them starts a new entry while an edit elsewhere in the same modules (another task's SQL) does not.
    The caller's own assembly code (datamodules.duckdb_frame) is passed in as `caller_code` to `cache_key`
    instead of imported here, because duckdb_frame imports this module."""
    from fulqrun_ml.features import deal_features

    duck, feats = snapshots_duckdb, deal_features_duckdb
    return [
        crm_duckdb.open_crm,
        crm_duckdb._files,
        crm_duckdb._create_view,
        crm_duckdb.DUCKDB_TYPE,
        duck.snapshot_dates,
        duck.create_grid,
        duck.stage_spans_sql,
        duck.create_stage_spans,
        duck._check_one_close_per_deal,
        duck.deal_win_sql,
        duck.deal_win_snapshots,
        duck.open_deals,
        duck.create_first_seen,
        duck.create_touch_counts,
        (duck.CLOSED, duck.DAY_US, duck.OPEN_STAGES, duck.STAGE_DEFAULT_PROBABILITY, duck.ACTIVITY_TYPES),
        feats.create_history_views,
        feats._days_between,
        feats.create_deal_features,
        feats.audit_leakage,
        feats.HISTORY_TYPES,
        (deal_features.REP_PRIOR_WINS, deal_features.REP_PRIOR_DEALS, deal_features.FEATURE_SOURCE),
    ]


def cache_key(settings: dict[str, Any], caller_code: Sequence[Any] = ()) -> str:
    """The entry's address: the grid settings and feature names (`settings`), the builders' code (`_builder_code`,
    the caller's `caller_code` and this module), and the DuckDB version."""
    code = hashlib.sha256(Path(__file__).read_bytes())
    for part in [*_builder_code(), *caller_code]:
        code.update((inspect.getsource(part) if callable(part) else repr(part)).encode())
    payload = {"format": FORMAT, "settings": settings, "code": code.hexdigest(), "duckdb": duckdb.__version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]


def fingerprint(db: CRMDatabase, cutoffs: list[pd.Timestamp]) -> list[dict[str, list[Any]]]:
    """Per cutoff, per table: [rows stamped at or before it, the sum of their row hashes] (one scan per table)."""
    create_history_views(db)
    out: list[dict[str, list[Any]]] = [{} for _ in cutoffs]
    for table, (time, columns, ordered) in FINGERPRINTED.items():
        hashed = ", ".join(f'"{c}"' for c in columns)
        if ordered:  # rows up to a cutoff come first in time order, so this rank is also their rank among them
            hashed += f", row_number() OVER (ORDER BY {time}, _pos)"
        picks = ", ".join(
            "count(*) FILTER (WHERE t <= ?::TIMESTAMPTZ), (sum(h) FILTER (WHERE t <= ?::TIMESTAMPTZ))::VARCHAR"
            for _ in cutoffs
        )
        params = [_ts(c) for c in cutoffs for _ in range(2)]
        row = db.sql(f"SELECT {picks} FROM (SELECT {time} AS t, hash({hashed}) AS h FROM {table})", params=params)
        values = row.fetchone()
        for k in range(len(cutoffs)):
            out[k][table] = [int(values[2 * k]), values[2 * k + 1]]  # type: ignore[index]
    return out


def fallback_hash(db: CRMDatabase, table: str, ids_file: Path) -> list[Any]:
    """[rows, hash sum] of the current rows of `table` whose ids are listed in `ids_file`."""
    columns = ", ".join(f'"{c}"' for c in FALLBACKS[table][2])
    count, total = db.sql(
        f"SELECT count(*), sum(hash({columns}))::VARCHAR FROM {table} "
        f"WHERE id IN (SELECT id::UUID FROM read_parquet('{ids_file}'))"
    ).fetchone()  # type: ignore[misc]
    return [int(count), total]


@dataclass
class Plan:
    """What a build reuses from the entry (`parts`, covering the first `reused_dates` dates) and why."""

    parts: list[Path] = field(default_factory=list)
    reused_dates: int = 0
    reused_rows: int = 0
    audit: dict[str, Any] | None = None  # the leakage-audit summary of the reused rows
    reason: str = "no cache entry"
    fingerprints: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # cutoff iso -> fingerprint


class SnapshotCache:
    """One cache entry (`<cache_dir>/<key>/`): the manifest, the row parts and the fallback id files."""

    def __init__(self, cache_dir: str | Path, settings: dict[str, Any], caller_code: Sequence[Any] = ()) -> None:
        self.dir = Path(cache_dir) / cache_key(settings, caller_code)
        self.dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialize builds on this entry (a second training on the same cache waits for the first)."""
        with open(self.dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def manifest(self) -> dict[str, Any] | None:
        path = self.dir / MANIFEST
        return json.loads(path.read_text()) if path.is_file() else None

    def plan(self, db: CRMDatabase, dates: list[pd.Timestamp]) -> Plan:
        """The reusable prefix of `dates` for this extract, or a full build with the reason."""
        manifest = self.manifest()
        now = _ts(db.extracted_at)
        if manifest is None:
            return Plan()
        cutoff = pd.Timestamp(manifest["cutoff"])
        cached = [pd.Timestamp(d) for d in manifest["dates"]]
        if cutoff > db.extracted_at:
            return Plan(reason=f"the cached build is of a newer extract ({manifest['cutoff']} > {now})")
        if cached != dates[: len(cached)]:
            return Plan(reason="the snapshot grid moved (first deal or grid settings changed)")
        prints = fingerprint(db, [cutoff, db.extracted_at])
        fingerprints = {_ts(cutoff): prints[0], now: prints[1]}
        changed = sorted(t for t, value in prints[0].items() if manifest["fingerprint"].get(t) != value)
        for table, entry in manifest["fallbacks"].items():
            if entry["hash"] != fallback_hash(db, table, self.dir / entry["file"]):
                changed.append(f"{table} (current rows read as a fallback)")
        if changed:
            return Plan(reason=f"rows at or before {manifest['cutoff']} changed in: {', '.join(changed)}")
        return Plan(
            parts=[self.dir / p for p in manifest["parts"]],
            reused_dates=len(cached),
            reused_rows=int(manifest["rows"]),
            audit=manifest["audit"],
            reason=f"reused {len(cached)} dates built from the extract of {manifest['cutoff']}",
            fingerprints=fingerprints,
        )

    def new_part(self) -> tuple[Path, Path]:
        """A (temporary, final) path pair for the next part: written to the first, renamed to the second."""
        name = f"part-{uuid.uuid4().hex[:12]}.parquet"
        return self.dir / f".{name}.tmp", self.dir / name

    def commit(
        self,
        db: CRMDatabase,
        plan: Plan,
        dates: list[pd.Timestamp],
        parts: list[Path],
        rows: int,
        audit: dict[str, Any],
        fallback_ids: dict[str, str],
    ) -> None:
        """Record the entry for this extract: its parts, dates, audit and fingerprint at its extraction time.

        `fallback_ids`: table -> a query giving the ids of current rows the newly built rows fell back on."""
        now = _ts(db.extracted_at)
        prints = plan.fingerprints.get(now) or fingerprint(db, [db.extracted_at])[0]
        previous = (self.manifest() or {}).get("fallbacks", {}) if plan.parts else {}
        fallbacks = {}
        for table, query in fallback_ids.items():
            final = self.dir / f"fallback-{table}-{uuid.uuid4().hex[:12]}.parquet"
            union = query
            if table in previous:
                union += f" UNION SELECT id::VARCHAR AS id FROM read_parquet('{self.dir / previous[table]['file']}')"
            db.execute(f"COPY (SELECT DISTINCT id FROM ({union})) TO '{final}.tmp' (FORMAT parquet)")
            os.replace(f"{final}.tmp", final)
            fallbacks[table] = {"file": final.name, "hash": fallback_hash(db, table, final)}
        manifest = {
            "format": FORMAT,
            "cutoff": now,
            "dates": [_ts(d) for d in dates],
            "parts": [p.name for p in parts],
            "rows": rows,
            "audit": audit,
            "fingerprint": prints,
            "fallbacks": fallbacks,
        }
        tmp = self.dir / f".{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, self.dir / MANIFEST)  # the switch: readers see the old entry or the new one, whole
        keep = {MANIFEST, ".lock", *manifest["parts"], *(f["file"] for f in fallbacks.values())}
        for stale in self.dir.iterdir():
            if stale.name not in keep:
                stale.unlink(missing_ok=True)


def merge_audits(*audits: dict[str, Any] | None) -> dict[str, Any]:
    """The leakage-audit summary of disjoint row sets (`audit_leakage` results) as one: rows and flags add up."""
    present = [a for a in audits if a is not None]
    current: dict[str, int] = {}
    for audit in present:
        for feature, count in audit["not_point_in_time"].items():
            current[feature] = current.get(feature, 0) + int(count)
    return {
        "features_audited": present[0]["features_audited"],
        "rows_audited": sum(int(a["rows_audited"]) for a in present),
        "violations": 0,
        "not_point_in_time": current,
    }
