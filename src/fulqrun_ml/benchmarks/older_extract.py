"""The same sharded simulated CRM as it stood some days before its extraction: the previous extract of a warm start.

Why: a warm start in production runs on a newer extract than its parent's (two more weeks of data), and the
incremental snapshot (`datamodules/duckdb_snapshot_cache.py`) builds only the dates that extract adds. To measure
that honestly the parent must be trained on the older extract. Each shard of `simulator_scale`'s directory is
one organization, so each is cut on its own with `recompute_audit.truncate_crm` (rows that existed at the cut,
company and user attributes as of the cut, in-place fields reset: written independently of the builders) and
written as the same part file; the latent truth is linked unchanged (the oracle reads only deals in the frame).
Memory: one shard per worker. The directory is complete only once `crm_export.json` is written (last).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS, TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.simulator_scale import MANIFEST, _canonical_times, read_manifest, table_files
from fulqrun_ml.features.recompute_audit import truncate_crm


def _utc(frame: pd.DataFrame) -> pd.DataFrame:
    """Naive datetime columns as UTC (truncate_crm rebuilds some columns from numpy arrays: UTC values, no zone)."""
    naive = [c for c in frame if pd.api.types.is_datetime64_dtype(frame[c]) and frame[c].dt.tz is None]
    return frame.assign(**{c: frame[c].dt.tz_localize("UTC") for c in naive}) if naive else frame


def _cut_shard(source: Path, out: Path, index: int, cut: pd.Timestamp) -> dict[str, int]:
    name_of = f"part-{index:05d}.parquet"
    frames = {name: pd.read_parquet(source / name / name_of) for name in TABLE_COLUMNS}
    history = {n: pd.read_parquet(source / n / name_of) for n in HISTORY_COLUMNS if (source / n / name_of).is_file()}
    older = truncate_crm(CRMTables(**frames, **history, extracted_at=cut), cut)
    counts = {}
    for name, frame in older.frames().items():
        (out / name).mkdir(parents=True, exist_ok=True)
        _canonical_times(name, _utc(frame)).to_parquet(out / name / name_of, index=False)
        counts[name] = len(frame)
    for name in history:
        (out / name).mkdir(parents=True, exist_ok=True)
        older.history(name).to_parquet(out / name / name_of, index=False)
    return counts


def write_older_extract(source: str | Path, out: str | Path, days_earlier: int, workers: int = 2) -> dict[str, Any]:
    """`source` (a sharded simulated CRM) cut `days_earlier` days before its extraction, written to `out`;
    returns the manifest."""
    source, out = Path(source), Path(out)
    manifest = read_manifest(source)
    cut = pd.Timestamp(manifest["extracted_at"]) - pd.Timedelta(days=days_earlier)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    shards = len(table_files(source, "opportunities"))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        counts = list(pool.map(_cut_shard, [source] * shards, [out] * shards, range(shards), [cut] * shards))
    for table in ("opportunities", "leads"):
        if (source / "latent" / table).is_dir():
            (out / "latent").mkdir(exist_ok=True)
            shutil.copytree(source / "latent" / table, out / "latent" / table, copy_function=os.link)
    older = {
        **manifest,
        "extracted_at": cut.isoformat(),
        "truncated_from": {"directory": str(source), "extracted_at": manifest["extracted_at"], "days": days_earlier},
        "rows": {name: int(sum(c[name] for c in counts)) for name in counts[0]},
    }
    (out / MANIFEST).write_text(json.dumps(older, indent=2))
    return older
