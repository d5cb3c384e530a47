"""`data.snapshot_engine=duckdb`: the deal-win training frame built by DuckDB from the CRM's Parquet files.

Why: the pandas builders load every table into memory and loop over as_of dates, which does not reach a
million deals on two cores; the DuckDB executions of the same definitions (`data/snapshots_duckdb.py`,
`features/deal_features_duckdb.py`, proven equal by tests/unit/test_data_scale.py) do it in under a minute.
This module wires them to training: it builds the snapshot rows, the features, the leakage audit (in SQL) and
today's scoring rows, streams the frame to `deal_win.parquet` in a work directory, and reads it back in the
pandas builders' row order and dtypes, so everything after it (time split, embargo weights, FeatureSpec fit,
evaluation, export, warm start) is the same code on the same values (tests/unit/test_duckdb_training.py).
The encoded tensors are memory-mapped from that directory (`datamodules/memmap.py`), not held twice in RAM.

Sources: a `DirectorySource` (data=crm_parquet) is read in place, sharded or flat, and never loaded into pandas;
its files are trusted to meet the contract (validate the export first: `open_crm` checks columns only). Any
other source (the simulator, PostgreSQL) is loaded, contract-checked and written to the work directory first.
The oracle comes from the simulator's latent truth when there is one (in memory, or `latent/` of a sharded
simulated directory). Not done here: the pandas path's sampled recompute audit, which needs the tables in memory.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import weakref
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from fulqrun_ml.data import snapshots_duckdb as duck
from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.data.simulator_scale import iter_latent
from fulqrun_ml.data.sources import write_crm_directory
from fulqrun_ml.data.validation import check_contract
from fulqrun_ml.datamodules.built_frame import ORACLE_COLUMN, BuiltFrame, SnapshotEngineError
from fulqrun_ml.datamodules.duckdb_snapshot_cache import FALLBACKS, Plan, SnapshotCache, merge_audits
from fulqrun_ml.datamodules.task_builders import REP_TENURE_COLUMN, DealWinBuilder
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.deal_features_duckdb import audit_leakage, create_deal_features

log = logging.getLogger(__name__)
SNAPSHOT_COLUMNS = ("opportunity_id", "as_of", "stage_index", "rep_probability", "label", "label_time")
SCORING_COLUMNS = ("opportunity_id", "as_of", "stage_index", "rep_probability")


def build_with_duckdb(module: Any, settings: DuckDBSettings | None = None) -> BuiltFrame:
    """The deal-win frame of `module` (its grid, horizon and source) built by DuckDB; see the module doc.

    `module` is the calling TabularSnapshotDataModule, typed Any because importing datamodules.tabular here would
    close an import cycle (tabular calls this function)."""
    _check_supported(module)
    work = Path(tempfile.mkdtemp(prefix="fulqrun_snapshot_"))
    weakref.finalize(module, shutil.rmtree, work, True)  # the memory-mapped tensors live as long as the module
    settings = settings or DuckDBSettings(temp_directory=str(work / "spill"))
    timings: dict[str, float] = {}
    start = time.perf_counter()
    directory, simulated = _crm_directory(module.source, work)
    timings["load"] = time.perf_counter() - start
    cache = None
    if module.snapshot_cache_dir:  # this module's assembly code is part of the entry's address too
        own_code = (build_with_duckdb, _assemble_sql, _copy, SNAPSHOT_COLUMNS)
        cache = SnapshotCache(module.snapshot_cache_dir, _cache_settings(module), own_code)
    with open_crm(directory, settings) as db, cache.locked() if cache else nullcontext():
        dates = duck.snapshot_dates(db, module.snapshot_every_days, module.warmup_days, module.horizon_days)
        plan = cache.plan(db, dates) if cache else Plan(reason="no snapshot cache configured")
        new_dates = dates[plan.reused_dates :]
        snapshots = duck.deal_win_snapshots(db, new_dates or dates[-1:], module.horizon_days)
        if not new_dates:  # the extract adds no date: the one-date build above only made the stage spans
            db.execute(f"DELETE FROM {snapshots}")
        built_rows = db.rows(snapshots)
        if plan.reused_rows + built_rows == 0:
            raise ValueError(f"deal_win: no snapshots on {len(dates)} as_of dates; is the data too short?")
        spans = f"{snapshots}_spans"
        now = duck.open_deals(db, db.extracted_at, spans, "open_now")
        db.execute(
            f"CREATE OR REPLACE TEMP TABLE feature_index AS SELECT opportunity_id, as_of FROM {snapshots} "
            f"UNION ALL SELECT opportunity_id, as_of FROM {now}"
        )
        touches = duck.create_touch_counts(db, "feature_index", "opportunity_id", "deal_touches")
        features = create_deal_features(db, "feature_index", spans=spans, touches=touches)
        names = list(module.feature_spec.names)
        extracted = f"'{db.extracted_at.isoformat()}'::TIMESTAMPTZ"
        past = f"(SELECT * FROM {features} WHERE as_of < {extracted})"  # the snapshot rows; the rest: today's
        snapshot_audit = audit_leakage(db, past, names)
        audit = merge_audits(
            plan.audit,
            snapshot_audit,
            audit_leakage(db, f"(SELECT * FROM {features} WHERE as_of >= {extracted})", names),
        )
        order = duck.create_first_seen(db)
        values = ", ".join(f'f."{name}"' for name in DEAL_WIN_FEATURES.names)
        tmp, part = cache.new_part() if cache else (work / ".rows.tmp", work / "rows.parquet")
        _copy(
            db,
            f"""SELECT {", ".join(f"s.{c}" for c in SNAPSHOT_COLUMNS)}, {values}
                FROM {snapshots} s JOIN {features} f USING (opportunity_id, as_of) JOIN {order} r USING (opportunity_id)
                ORDER BY s.as_of, r.first_seen""",
            tmp,
        )
        os.replace(tmp, part)
        parts = [*plan.parts, part]
        if cache:
            fallback_ids = {
                table: f"SELECT DISTINCT o.{column}::VARCHAR AS id FROM {past} f "
                f"JOIN opportunities o ON o.id = f.opportunity_id::UUID WHERE f.{flag}"
                for table, (flag, column, _) in FALLBACKS.items()
            }
            rows = plan.reused_rows + built_rows
            cache.commit(db, plan, dates, parts, rows, merge_audits(plan.audit, snapshot_audit), fallback_ids)
        _copy(db, _assemble_sql(parts), work / "deal_win.parquet")
        _copy(
            db,
            f"""SELECT {", ".join(f"n.{c}" for c in SCORING_COLUMNS)}, {values}
                FROM {now} n JOIN {features} f USING (opportunity_id, as_of) JOIN {order} r USING (opportunity_id)
                ORDER BY r.first_seen""",
            work / "open_deals.parquet",
        )
        counts = {"opportunities": "opportunities", "activities": "activities", "stage_changes": "stage_history"}
        counts = {key: db.rows(table) for key, table in counts.items()}
    module.snapshot_cache_report = {
        "reused_dates": plan.reused_dates,
        "built_dates": len(new_dates),
        "reused_rows": plan.reused_rows,
        "built_rows": built_rows,
        "reason": plan.reason,
    }
    if cache:  # the run record's sizes say what was reused
        counts.update(snapshot_dates_reused=plan.reused_dates, snapshot_dates_built=len(new_dates))
    log.info("duckdb snapshot: %s", module.snapshot_cache_report)
    timings["snapshot_build"] = time.perf_counter() - start - timings["load"]
    frame = pd.read_parquet(work / "deal_win.parquet")
    tenure = frame.pop(REP_TENURE_COLUMN).to_numpy()
    oracle_source = simulated or _sharded_latent(directory)
    if oracle_source is not None:
        frame[ORACLE_COLUMN] = module.builder.oracle(oracle_source, frame, module.horizon_days)
    timings["read"] = time.perf_counter() - start - timings["load"] - timings["snapshot_build"]
    module.engine_seconds = {k: round(v, 3) for k, v in timings.items()}
    log.info("duckdb snapshot engine: %d rows, seconds %s", len(frame), module.engine_seconds)
    return BuiltFrame(
        frame=frame,
        dates=dates,
        leakage_audit=audit,
        groups={REP_TENURE_COLUMN: tenure},
        scoring_rows=pd.read_parquet(work / "open_deals.parquet"),
        counts=counts,
        tensor_dir=work / "tensors",
    )


def _check_supported(module: Any) -> None:
    if type(module.builder) is not DealWinBuilder:
        raise SnapshotEngineError(
            f"data.snapshot_engine=duckdb builds task deal_win only, not {module.builder.name}; "
            "use data.snapshot_engine=pandas"
        )


def _crm_directory(source: Any, work: Path) -> tuple[Path, SimulatedCRM | None]:
    """The CRM as a Parquet directory: a DirectorySource's own (untouched), else the loaded tables written out."""
    path = getattr(source, "path", None)
    if path is not None:
        if getattr(source, "format", None) == "csv":
            raise SnapshotEngineError("data.source.format=csv: the duckdb snapshot engine reads Parquet exports only")
        if getattr(source, "extracted_at", None) is not None:
            raise SnapshotEngineError(
                "data.source.extracted_at: the duckdb snapshot engine takes the extraction time from the "
                "directory's crm_export.json; leave it null"
            )
        return Path(path), None
    loaded = source()
    tables = loaded.tables if isinstance(loaded, SimulatedCRM) else loaded
    check_contract(tables)
    return write_crm_directory(tables, work / "crm"), loaded if isinstance(loaded, SimulatedCRM) else None


def _sharded_latent(directory: Path) -> SimpleNamespace | None:
    """The latent truth of a sharded simulated CRM (`latent/opportunities/part-*.parquet`), if it has one."""
    if not (directory / "latent" / "opportunities").is_dir():
        return None
    return SimpleNamespace(latent=pd.concat(list(iter_latent(directory)), ignore_index=True))


def _cache_settings(module: Any) -> dict[str, Any]:
    """What decides the cached rows besides the data and the code (the cache entry's address)."""
    return {
        "task": "deal_win",
        "snapshot_every_days": module.snapshot_every_days,
        "warmup_days": module.warmup_days,
        "horizon_days": module.horizon_days,
        "features": list(DEAL_WIN_FEATURES.names),
    }


def _assemble_sql(parts: list[Path]) -> str:
    """The frame from its parts in order (each already in frame order), with the days since each deal's current
    owner joined (the rep-tenure fairness group: `task_builders.rep_tenure_days` in SQL; current, so never
    cached; NaN where the rep is unknown)."""
    scans = " UNION ALL ".join(
        f"SELECT *, {k} AS _part, file_row_number AS _row FROM read_parquet('{part}', file_row_number = true)"
        for k, part in enumerate(parts)
    )
    return f"""SELECT p.* EXCLUDE (_part, _row, file_row_number),
                      ((epoch_us(p.as_of) - epoch_us(u.created_at)) / {duck.DAY_US})::DOUBLE AS {REP_TENURE_COLUMN}
               FROM ({scans}) p
               LEFT JOIN (SELECT DISTINCT ON (id) id, assigned_to FROM opportunities ORDER BY id, _pos) o
                      ON o.id = p.opportunity_id::UUID
               LEFT JOIN (SELECT DISTINCT ON (id) id, created_at FROM users ORDER BY id, _pos) u ON u.id = o.assigned_to
               ORDER BY p._part, p._row"""


def _copy(db: Any, query: str, path: Path) -> None:
    db.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
