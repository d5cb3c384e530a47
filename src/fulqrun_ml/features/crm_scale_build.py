"""Build every task's snapshots (and the deal-win features) from a CRM Parquet directory, in DuckDB.

One call, one connection, bounded memory: `build_crm_datasets(crm_dir, out_dir)` runs the DuckDB executions
of the project's definitions (`data/snapshots_duckdb.py`, `features/deal_features_duckdb.py`) and streams
each result to `<out_dir>/<name>.parquet`:

- deal_win.parquet: open deal x as_of, snapshot columns + every DEAL_WIN_FEATURES column
  (`deal_win_snapshots` + `compute_deal_features`);
- lead_conversion.parquet: open lead x as_of (`lead_conversion_snapshots`);
- account.parquet: customer x as_of (`account_snapshots`);
- revenue_<level>_<W|M>.parquet: group x period (`revenue_series`);
- activity_sequences.parquet: per deal-win row, the last `max_len` touches as lists (`activity_sequences`).

The deal-win features pass the point-in-time audit (in SQL) before anything is written. The returned report
gives rows and seconds per stage, for `scripts/bench_data.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fulqrun_ml.data import snapshots_duckdb as snapshots
from fulqrun_ml.data.crm_duckdb import CRMDatabase, DuckDBSettings, open_crm
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES
from fulqrun_ml.features.deal_features_duckdb import audit_leakage, create_deal_features


@dataclass(frozen=True)
class ScaleBuildConfig:
    """The snapshot grid and horizons (the defaults are those of configs/data and configs/task)."""

    every_days: int = 14
    warmup_days: int = 60
    deal_horizon_days: int = 180
    lead_horizon_days: int = 60
    account_horizon_days: int = 90
    sequence_max_len: int = 32
    sequences: bool = True
    revenue_levels: tuple[str, ...] = ("organization", "region", "rep")
    revenue_freqs: tuple[str, ...] = ("W", "M")


@dataclass
class BuildReport:
    """Rows out and seconds per stage."""

    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)

    def timed(self, stage: str, run: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = run()
        self.seconds[stage] = round(time.perf_counter() - start, 3)
        return result

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows_out": self.rows,
            "seconds": self.seconds,
            "seconds_total": round(sum(self.seconds.values()), 3),
            "audit": self.audit,
        }


def build_crm_datasets(
    crm_dir: str | Path,
    out_dir: str | Path,
    settings: DuckDBSettings | None = None,
    config: ScaleBuildConfig | None = None,
) -> BuildReport:
    """Build all snapshot/feature tables of `crm_dir` into `out_dir` (one Parquet file each)."""
    config = config or ScaleBuildConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = BuildReport()
    db = report.timed("open", lambda: open_crm(crm_dir, settings))
    with db:
        dates = snapshots.snapshot_dates(db, config.every_days, config.warmup_days, config.deal_horizon_days)
        report.timed("deal_win_snapshots", lambda: snapshots.deal_win_snapshots(db, dates, config.deal_horizon_days))
        touches = report.timed(
            "touch_counts",
            lambda: snapshots.create_touch_counts(db, "deal_win_snapshots", "opportunity_id", "deal_touches"),
        )
        report.timed(
            "deal_win_features",
            lambda: create_deal_features(db, "deal_win_snapshots", spans="deal_win_snapshots_spans", touches=touches),
        )
        report.audit = report.timed("leakage_audit", lambda: audit_leakage(db, "deal_win_features"))
        features = ", ".join(f'f."{name}"' for name in DEAL_WIN_FEATURES.names)
        report.rows["deal_win"] = report.timed(
            "write_deal_win",
            lambda: _copy(
                db,
                f"""SELECT s.opportunity_id, s.as_of, s.stage_index, s.rep_probability, s.label, s.label_time,
                           {features}
                    FROM deal_win_snapshots s JOIN deal_win_features f USING (opportunity_id, as_of)
                    ORDER BY s.as_of, s.opportunity_id""",
                out / "deal_win.parquet",
            ),
        )
        lead_dates = snapshots.snapshot_dates(db, config.every_days, config.warmup_days, config.lead_horizon_days)
        report.rows["lead_conversion"] = report.timed(
            "lead_conversion",
            lambda: _copy(
                db,
                "SELECT * FROM " + snapshots.lead_conversion_snapshots(db, lead_dates, config.lead_horizon_days),
                out / "lead_conversion.parquet",
            ),
        )
        account_dates = snapshots.snapshot_dates(db, config.every_days, config.warmup_days, config.account_horizon_days)
        report.rows["account"] = report.timed(
            "account",
            lambda: _copy(
                db,
                "SELECT * FROM " + snapshots.account_snapshots(db, account_dates, config.account_horizon_days),
                out / "account.parquet",
            ),
        )
        report.timed("revenue_series", lambda: _revenue(db, config, out, report))
        if config.sequences:
            report.rows["activity_sequences"] = report.timed(
                "activity_sequences",
                lambda: _copy(
                    db,
                    "SELECT * FROM "
                    + snapshots.activity_sequences(
                        db, "deal_win_snapshots", max_len=config.sequence_max_len, touches=touches
                    ),
                    out / "activity_sequences.parquet",
                ),
            )
    return report


def _revenue(db: CRMDatabase, config: ScaleBuildConfig, out: Path, report: BuildReport) -> None:
    for level in config.revenue_levels:
        for freq in config.revenue_freqs:
            series = snapshots.revenue_series(db, freq=freq, by=level)  # type: ignore[arg-type]
            series.to_parquet(out / f"revenue_{level}_{freq}.parquet", index=False)
            report.rows[f"revenue_{level}_{freq}"] = len(series)


def _copy(db: CRMDatabase, query: str, path: Path) -> int:
    """Stream a query's rows to a Parquet file; returns how many were written."""
    db.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet, COMPRESSION zstd)")
    return db.rows(f"read_parquet('{path}')")
