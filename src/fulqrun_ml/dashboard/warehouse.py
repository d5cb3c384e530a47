"""The dashboard's aggregates, precomputed once in a DuckDB file from a CRM Parquet directory.

Why precomputed: a page must render in under 2 s on a 1M-opportunity CRM. Scanning 1M deals and 20M touches
per request cannot do that on two cores; grouping once into small tables (one row per organisation x region x
rep x segment x month x status) and answering every request from them can. The build reads the CRM through
`data.crm_duckdb.open_crm` (the same views as the scale builders), so it works on the flat export and the
sharded simulator alike, and is published atomically (temp file + rename): a reader sees the old file or the
new one, never half of one.

Tables written:
- `closed_monthly`: org x region x rep x segment x close month x outcome -> deals, value, cycle days;
- `funnel`: org x region x rep x segment x created month -> deals that reached each stage;
- `open_deals`: every open deal with its dimensions, stage, value, rep probability, age, days overdue;
- `leads_monthly`: org x region x rep x source x status x created month -> leads, mean CRM score;
- `dims`: the distinct filter values per organisation (what the filter menus offer);
- `accounts`: customers (a won deal) with owner, segment, won revenue in the last 365 days, open pipeline;
- `<table>_by_team`: closed_monthly, funnel and leads_monthly summed over reps, read when no rep is filtered;
- `meta`: extraction time, source directory, row counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from fulqrun_ml.data.crm_duckdb import DuckDBSettings, open_crm
from fulqrun_ml.errors import FulqrunMLError

STAGES = ("prospecting", "qualifying", "proposal", "negotiation", "closed_won")
OPEN_STAGES = STAGES[:4]
WAREHOUSE_VERSION = 4  # bump when a table's definition changes, so a cached file is rebuilt

_STAGE_INDEX = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STAGES))

_DEALS = """
CREATE TEMP TABLE deal_dims AS
SELECT o.id AS opportunity_id, o.company_id::VARCHAR AS company_id, o.organization_id::VARCHAR AS organization_id,
       org.name AS organization,
       coalesce(u.region, 'unknown') AS region, o.assigned_to::VARCHAR AS rep_id,
       'rep-' || substr(o.assigned_to::VARCHAR, 1, 8) AS rep, coalesce(c.industry, 'unknown') AS segment,
       o.stage, o.value, o.probability AS rep_probability, o.close_date, o.created_at, o.meddpicc_score,
       CASE WHEN o.stage = 'closed_won' THEN 'won' WHEN o.stage = 'closed_lost' THEN 'lost' ELSE 'open' END
         AS status
FROM opportunities o
JOIN organizations org ON org.id = o.organization_id
LEFT JOIN users u ON u.id = o.assigned_to
LEFT JOIN companies c ON c.id = o.company_id
"""

_CLOSED = """
CREATE TABLE wh.closed_monthly AS
SELECT organization_id, organization, region, rep_id, rep, segment, date_trunc('month', close_date)::DATE AS month,
       status, count(*) AS deals, sum(value) AS value,
       sum(date_diff('day', created_at, close_date)) AS cycle_days
FROM deal_dims WHERE status <> 'open'
GROUP BY ALL
"""

_FUNNEL = f"""
CREATE TABLE wh.funnel AS
WITH reached AS (
  SELECT opportunity_id, max(CASE to_stage {_STAGE_INDEX} ELSE -1 END) AS idx FROM stage_history GROUP BY 1
)
SELECT d.organization_id, d.organization, d.region, d.rep_id, d.rep, d.segment,
       date_trunc('month', d.created_at)::DATE AS month, count(*) AS created,
       {
    ", ".join(
        f"count(*) FILTER (WHERE greatest(coalesce(r.idx, 0), CASE d.stage {_STAGE_INDEX} ELSE 0 END) >= {i})"
        f" AS reached_{s}"
        for i, s in enumerate(STAGES)
    )
}
FROM deal_dims d LEFT JOIN reached r ON r.opportunity_id = d.opportunity_id
GROUP BY ALL
"""

_OPEN = """
CREATE TABLE wh.open_deals AS
SELECT opportunity_id::VARCHAR AS opportunity_id, organization_id, organization, region, rep_id, rep, segment,
       stage, value, rep_probability, close_date, created_at, meddpicc_score,
       date_diff('day', created_at, $extracted)::INTEGER AS age_days,
       greatest(date_diff('day', close_date, $extracted), 0)::INTEGER AS days_overdue
FROM deal_dims WHERE status = 'open'
"""

_LEADS = """
CREATE TABLE wh.leads_monthly AS
SELECT l.organization_id::VARCHAR AS organization_id, org.name AS organization, coalesce(u.region, 'unknown') AS region,
       l.assigned_to::VARCHAR AS rep_id, 'rep-' || substr(l.assigned_to::VARCHAR, 1, 8) AS rep,
       coalesce(c.industry, 'unknown') AS segment, l.source, l.status,
       date_trunc('month', l.created_at)::DATE AS month, count(*) AS leads, avg(l.score) AS mean_score
FROM leads l JOIN organizations org ON org.id = l.organization_id
LEFT JOIN users u ON u.id = l.assigned_to LEFT JOIN companies c ON c.id = l.company_id
GROUP BY ALL
"""

# Customers (a company with a won deal: the account models' entity), with the owner of its newest deal as its
# region / rep (what the filters scope by), its won revenue over the last 365 days (what churn takes away) and
# its open pipeline.
_ACCOUNTS = """
CREATE TABLE wh.accounts AS
SELECT company_id, arg_max(organization_id, created_at) AS organization_id,
       arg_max(organization, created_at) AS organization, arg_max(region, created_at) AS region,
       arg_max(rep_id, created_at) AS rep_id, arg_max(rep, created_at) AS rep, arg_max(segment, created_at) AS segment,
       coalesce(sum(value) FILTER (WHERE status = 'won' AND close_date > $extracted - INTERVAL 365 DAY), 0)
         AS won_value_365d,
       count(*) FILTER (WHERE status = 'won') AS won_deals,
       coalesce(sum(value) FILTER (WHERE status = 'open'), 0) AS open_value
FROM deal_dims GROUP BY company_id HAVING count(*) FILTER (WHERE status = 'won') > 0
"""

_DIMS = """
CREATE TABLE wh.dims AS
SELECT DISTINCT organization_id, organization, region, rep_id, rep, segment FROM deal_dims
"""


@dataclass(frozen=True)
class WarehouseInfo:
    """Where the aggregates came from: shown on every page so a number can be traced to its CRM."""

    path: Path
    crm_dir: Path
    extracted_at: pd.Timestamp
    build_seconds: float
    rows: dict[str, int]


def warehouse_path(cache_dir: Path, crm_dir: Path) -> Path:
    """One file per CRM directory and definition version; a changed export gets a new manifest time."""
    manifest = Path(crm_dir) / "crm_export.json"
    stamp = manifest.stat().st_mtime_ns if manifest.is_file() else 0
    key = hashlib.sha256(f"{Path(crm_dir).resolve()}|{stamp}|{WAREHOUSE_VERSION}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"dashboard-{key}.duckdb"


def build_warehouse(crm_dir: Path, out: Path, settings: DuckDBSettings | None = None) -> WarehouseInfo:
    """Group the CRM into the dashboard's tables in `out` (atomic: written to a temp file, then renamed)."""
    t0 = time.perf_counter()
    try:
        db = open_crm(crm_dir, settings)
    except (FileNotFoundError, ValueError) as exc:
        raise FulqrunMLError(f"--crm-dir {crm_dir}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{os.getpid()}-{out.name}")
    tmp.unlink(missing_ok=True)
    with db:
        con = db.con
        con.execute(f"ATTACH '{tmp}' AS wh")
        con.execute(_DEALS)
        for statement in (_CLOSED, _FUNNEL, _DIMS, _LEADS):
            con.execute(statement)
        for table in ROLLUPS:  # the same sums without the rep: ~1/200 of the rows when no rep is filtered
            columns = [r[0] for r in con.sql(f"DESCRIBE wh.{table}").fetchall() if r[0] not in ("rep_id", "rep")]
            keys = [c for c in columns if c in ROLLUP_KEYS]
            sums = ", ".join(f"sum({c}) AS {c}" for c in columns if c not in ROLLUP_KEYS and c != "mean_score")
            extra = ", sum(leads * mean_score) / sum(leads) AS mean_score" if table == "leads_monthly" else ""
            con.execute(
                f"CREATE TABLE wh.{table}_by_team AS SELECT {', '.join(keys)}, {sums}{extra} FROM wh.{table} "
                f"GROUP BY {', '.join(keys)}"
            )
        con.execute(_OPEN, {"extracted": db.extracted_at.to_pydatetime()})
        con.execute(_ACCOUNTS, {"extracted": db.extracted_at.to_pydatetime()})
        rows = {t: int(con.sql(f"SELECT count(*) FROM wh.{t}").fetchone()[0]) for t in TABLES}  # type: ignore[index]
        rows["opportunities"] = int(con.sql("SELECT count(*) FROM deal_dims").fetchone()[0])  # type: ignore[index]
        meta = {"extracted_at": db.extracted_at.isoformat(), "crm_dir": str(crm_dir), "rows": rows}
        con.execute("CREATE TABLE wh.meta AS SELECT ? AS info", [json.dumps(meta)])
        con.execute("DETACH wh")
    os.replace(tmp, out)
    return WarehouseInfo(out, Path(crm_dir), db.extracted_at, time.perf_counter() - t0, rows)


TABLES = ("closed_monthly", "funnel", "open_deals", "leads_monthly", "dims", "accounts")
ROLLUPS = ("closed_monthly", "funnel", "leads_monthly")
ROLLUP_KEYS = ("organization_id", "organization", "region", "segment", "month", "status", "source")


def open_warehouse(path: Path) -> tuple[duckdb.DuckDBPyConnection, WarehouseInfo]:
    """A read-only connection to a built warehouse, and what it was built from."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    meta = json.loads(con.sql("SELECT info FROM meta").fetchone()[0])  # type: ignore[index]
    info = WarehouseInfo(Path(path), Path(meta["crm_dir"]), pd.Timestamp(meta["extracted_at"]), 0.0, meta["rows"])
    return con, info


def ensure_warehouse(crm_dir: Path, cache_dir: Path, settings: DuckDBSettings | None = None) -> Path:
    """The warehouse for `crm_dir`, built on first use and reused until the export changes."""
    path = warehouse_path(cache_dir, crm_dir)
    if not path.is_file():
        build_warehouse(crm_dir, path, settings)
    return path
