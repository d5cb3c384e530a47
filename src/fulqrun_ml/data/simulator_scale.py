"""The simulator at scale: many organizations simulated one shard at a time and streamed to Parquet.

`simulate_crm` holds one CRM in memory, which is fine up to ~100k deals. For 1M+ deals,
`write_simulated_crm(out_dir, n_opportunities, ...)` splits the deals into shards of at most
`opportunities_per_shard`; each shard is one organization (a tenant of the CRM) simulated by the unchanged
`simulate_crm` with its own seed, derived from `seed` by numpy's `SeedSequence.spawn` (independent streams,
the same for the same arguments). Each shard's tables are written to `<out_dir>/<table>/part-<k>.parquet`
and dropped before the next, so memory is bounded by one shard whatever the total. The latent truth goes to
`<out_dir>/latent/` (evaluation only), and `crm_export.json` (written last: a directory without it is
incomplete) records the extraction time, the arguments and the rows per table.

Reps, companies and leads scale with the deals of each shard (the default config's 24 reps and 800 companies
per 6,000 deals, one lead per deal). Timestamps are stored as the contract's canonical
`datetime64[us, UTC]`, so every engine reads the same instants that validation would return.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS, TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.schemas import CRM_SCHEMAS, Kind
from fulqrun_ml.data.simulator import simulate_crm

MANIFEST = "crm_export.json"
LAYOUT = "sharded-parquet/1"
LATENT_TABLES = ("opportunities", "leads")
REPS_PER_DEAL = 24 / 6000
COMPANIES_PER_DEAL = 800 / 6000


@dataclass(frozen=True)
class ShardedCRMSpec:
    """Everything that decides the generated data; equal specs give identical directories."""

    n_opportunities: int
    seed: int = 7
    opportunities_per_shard: int = 50_000
    start: str = "2024-01-01"
    days: int = 730
    activity_rate: float = 1.0
    leads_per_opportunity: float = 1.0

    @property
    def shards(self) -> int:
        return max(1, -(-self.n_opportunities // self.opportunities_per_shard))

    def shard_kwargs(self) -> list[dict[str, Any]]:
        """The `simulate_crm` arguments of every shard, in order."""
        if self.n_opportunities < 1 or self.opportunities_per_shard < 1:
            raise ValueError(
                f"n_opportunities ({self.n_opportunities}) and opportunities_per_shard "
                f"({self.opportunities_per_shard}) must be positive"
            )
        sizes = np.full(self.shards, self.n_opportunities // self.shards)
        sizes[: self.n_opportunities % self.shards] += 1
        seeds = [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(self.seed).spawn(self.shards)]
        return [
            {
                "n_opportunities": int(n),
                "n_reps": max(4, round(n * REPS_PER_DEAL)),
                "n_companies": max(10, round(n * COMPANIES_PER_DEAL)),
                "n_leads": round(n * self.leads_per_opportunity),
                "start": self.start,
                "days": self.days,
                "seed": shard_seed,
                "activity_rate": self.activity_rate,
                "organization_name": f"Simulated Org {k:05d}",
            }
            for k, (n, shard_seed) in enumerate(zip(sizes, seeds, strict=True))
        ]


def write_simulated_crm(
    out_dir: str | Path,
    n_opportunities: int,
    seed: int = 7,
    opportunities_per_shard: int = 50_000,
    workers: int = 1,
    **spec_kwargs: Any,
) -> dict[str, Any]:
    """Simulate `n_opportunities` deals shard by shard into `out_dir` (replacing what is there); returns the
    manifest. `workers` > 1 simulates shards in parallel processes (memory: one shard per worker)."""
    spec = ShardedCRMSpec(n_opportunities, seed, opportunities_per_shard, **spec_kwargs)
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    jobs = [(out, k, kwargs) for k, kwargs in enumerate(spec.shard_kwargs())]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            counts = list(pool.map(_write_shard, *zip(*jobs, strict=True)))
    else:
        counts = [_write_shard(*job) for job in jobs]
    extracted_at = pd.Timestamp(spec.start, tz="UTC") + pd.Timedelta(days=spec.days)
    manifest = {
        "layout": LAYOUT,
        "extracted_at": extracted_at.isoformat(),
        "spec": asdict(spec),
        "shards": spec.shards,
        "rows": {name: int(sum(c[name] for c in counts)) for name in counts[0]},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of a complete sharded CRM directory (an error naming the directory otherwise)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{directory} holds no complete sharded CRM (no {MANIFEST}; was the write interrupted?)"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("layout") != LAYOUT:
        raise ValueError(f"{path}: layout {manifest.get('layout')!r} is not {LAYOUT!r}")
    return manifest


def table_files(directory: str | Path, table: str) -> list[Path]:
    """The part files of one table, in shard order."""
    return sorted((Path(directory) / table).glob("part-*.parquet"))


def read_sharded_crm(directory: str | Path) -> CRMTables:
    """All shards as one in-memory CRMTables (shard order), for small directories and tests."""
    manifest = read_manifest(directory)
    frames = {
        name: pd.concat([pd.read_parquet(f) for f in table_files(directory, name)], ignore_index=True)
        for name in TABLE_COLUMNS
    }
    for name in HISTORY_COLUMNS:  # optional: directories written before history existed have none
        if table_files(directory, name):
            frames[name] = pd.concat([pd.read_parquet(f) for f in table_files(directory, name)], ignore_index=True)
    return CRMTables(**frames, extracted_at=pd.Timestamp(manifest["extracted_at"]))


def iter_latent(directory: str | Path, table: str = "opportunities") -> Iterator[pd.DataFrame]:
    """The latent truth of each shard (evaluation only), one frame at a time."""
    if table not in LATENT_TABLES:
        raise ValueError(f"latent truth exists for {LATENT_TABLES}, not {table!r}")
    for file in sorted((Path(directory) / "latent" / table).glob("part-*.parquet")):
        yield pd.read_parquet(file)


def _write_shard(out: Path, index: int, kwargs: dict[str, Any]) -> dict[str, int]:
    crm = simulate_crm(**kwargs)
    counts = {}
    for name, frame in crm.tables.frames().items():
        _write_part(_canonical_times(name, frame), out / name, index)
        counts[name] = len(frame)
    for name, frame in crm.tables.history_frames().items():  # not counted: the manifest counts contract tables
        _write_part(frame, out / name, index)
    _write_part(crm.latent, out / "latent" / "opportunities", index)
    if crm.lead_latent is not None:
        _write_part(crm.lead_latent, out / "latent" / "leads", index)
    return counts


def _canonical_times(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps at the contract's microsecond resolution (what validation returns)."""
    stamps = {f.name: "datetime64[us, UTC]" for f in CRM_SCHEMAS[name].fields if f.kind is Kind.TIMESTAMP}
    return frame.astype({column: dtype for column, dtype in stamps.items() if column in frame.columns})


def _write_part(frame: pd.DataFrame, directory: Path, index: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(directory / f"part-{index:05d}.parquet", index=False)
