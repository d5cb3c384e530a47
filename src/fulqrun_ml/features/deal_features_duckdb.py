"""The deal-win features (`deal_features.DEAL_WIN_FEATURES`) executed in DuckDB, for CRMs too large for pandas.

`deal_features.compute_deal_features` is THE definition; this module is a second execution of it over a
CRM Parquet directory (`data/crm_duckdb.py`), proven equal on every feature by
tests/unit/test_data_scale.py. Where pandas recomputes everything per as_of date, this computes each
source once and looks values up with ASOF joins (the newest row at or before as_of):
- stage, days in stage, stage changes: the stage span holding as_of (`snapshots_duckdb.create_stage_spans`);
- touch counts (all, calls, emails, meetings) and the last touch: running counts per deal, looked up at
  as_of; touches in the last 14 days = count at as_of minus count at as_of - 14 days;
- rep record: running wins and closes per rep over closes in time order, looked up at as_of;
- value: a plain join (fixed at creation, as in the pandas definition);
- company firmographics and the rep's region: an ASOF join on `company_history` / `user_history` (the version
  valid at as_of), falling back to the current row, flagged, where no version is (`data/history.py`'s rule).
  The history views come from `<table>/part-*.parquet` or `<table>.parquet` in the CRM directory when present
  (`create_history_views`), else are empty.
It also returns, per row and feature group, the newest source timestamp it read (anchored on the deal or the
rep where an aggregate read no rows, as in pandas), and `audit_leakage` checks them in SQL with the rules of
`features/audit.py` (every spec feature declared, no NULL time, nothing newer than as_of) without pulling
rows into Python.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS
from fulqrun_ml.data.crm_duckdb import CRMDatabase
from fulqrun_ml.data.snapshots_duckdb import DAY_US, create_stage_spans, create_touch_counts
from fulqrun_ml.features.audit import LeakageError, current_value_column
from fulqrun_ml.features.deal_features import (
    DEAL_WIN_FEATURES,
    FEATURE_SOURCE,
    KEYS,
    REP_PRIOR_DEALS,
    REP_PRIOR_WINS,
    VERSIONED_GROUPS,
)

SOURCE_GROUPS = sorted(set(FEATURE_SOURCE.values()))
HISTORY_TYPES = {
    "company_id": "UUID",
    "user_id": "UUID",
    "annual_revenue": "DOUBLE",
    "employee_count": "BIGINT",
    "valid_from": "TIMESTAMPTZ",
}


def create_history_views(db: CRMDatabase) -> dict[str, int]:
    """Views `company_history` / `user_history` over the directory's history files (sharded or flat), or empty
    typed views where an export has none; returns the rows of each (0: builders read the current rows)."""
    rows = {}
    for name, columns in HISTORY_COLUMNS.items():
        parts = sorted((Path(db.directory) / name).glob("part-*.parquet"))
        flat = Path(db.directory) / f"{name}.parquet"
        files = parts or ([flat] if flat.is_file() else [])
        typed = ", ".join(f'CAST("{c}" AS {HISTORY_TYPES.get(c, "VARCHAR")}) AS "{c}"' for c in columns)
        if files:
            scans = " UNION ALL ".join(
                f"SELECT {typed}, ({k}::BIGINT << 32) + file_row_number AS _pos "
                f"FROM read_parquet('{file}', file_row_number = true)"
                for k, file in enumerate(files)
            )
        else:
            nulls = ", ".join(f'NULL::{HISTORY_TYPES.get(c, "VARCHAR")} AS "{c}"' for c in columns)
            scans = f"SELECT {nulls}, NULL::BIGINT AS _pos LIMIT 0"
        db.execute(f'CREATE OR REPLACE VIEW "{name}" AS {scans}')
        rows[name] = db.rows(name)
    return rows


def _days_between(later: str, earlier: str) -> str:
    return f"((epoch_us({later}) - epoch_us({earlier})) / {DAY_US})"


def deal_features_sql(index_table: str, spans: str, touches: str) -> str:
    """The query behind `create_deal_features`, as text over the index, stage spans and touch counts: the one
    definition that Spark also runs (`fulqrun_ml.spark.dialect` translates the DuckDB spellings, ASOF joins
    included). Reads the views `opportunities`, `stage_history`, `companies`, `users` and the history views."""
    age = _days_between("i.as_of", "o.created_at")
    return f"""
        WITH idx AS (
            SELECT DISTINCT opportunity_id::UUID AS opportunity_id, as_of, as_of - INTERVAL 14 DAY AS as_of_14d_ago
            FROM {index_table}
        ),
        touch_at AS (
            SELECT related_id, created_at, max(n_total) AS n_total, max(n_call) AS n_call, max(n_email) AS n_email,
                   max(n_meeting) AS n_meeting, max(n_inbound) AS n_inbound
            FROM {touches} GROUP BY 1, 2
        ),
        rep_closes AS (
            SELECT o.assigned_to AS rep, h.changed_at AS closed_at, (h.to_stage = 'closed_won')::INT AS won
            FROM stage_history h JOIN opportunities o ON o.id = h.opportunity_id
            WHERE h.to_stage IN ('closed_won', 'closed_lost')
        ),
        company_version AS (  -- one row per (company, valid_from): ties keep the later row, as pandas does
            SELECT * FROM company_history
            QUALIFY row_number() OVER (PARTITION BY company_id, valid_from ORDER BY _pos DESC) = 1
        ),
        user_version AS (
            SELECT * FROM user_history
            QUALIFY row_number() OVER (PARTITION BY user_id, valid_from ORDER BY _pos DESC) = 1
        ),
        rep_record AS (
            SELECT DISTINCT rep, closed_at,
                   count(*) OVER peers AS closed, sum(won) OVER peers AS wins
            FROM rep_closes
            WINDOW peers AS (PARTITION BY rep ORDER BY closed_at RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        ),
        joined AS (
            SELECT i.opportunity_id, i.as_of, o.value, o.created_at AS deal_created, o.assigned_to,
                   {age} AS age_days,
                   s.stage, s.entered_at, s.stage_changes,
                   coalesce(a.n_total, 0) AS n_total, coalesce(b.n_total, 0) AS n_total_14d_ago,
                   coalesce(a.n_call, 0) AS n_call, coalesce(a.n_email, 0) AS n_email,
                   coalesce(a.n_meeting, 0) AS n_meeting, coalesce(a.n_inbound, 0) AS n_inbound,
                   a.created_at AS last_touch,
                   CASE WHEN cv.valid_from IS NULL THEN c.employee_count ELSE cv.employee_count END AS employee_count,
                   CASE WHEN cv.valid_from IS NULL THEN c.annual_revenue ELSE cv.annual_revenue END AS annual_revenue,
                   CASE WHEN cv.valid_from IS NULL THEN c.industry ELSE cv.industry END AS industry,
                   CASE WHEN cv.valid_from IS NULL THEN c.size ELSE cv.size END AS size,
                   CASE WHEN cv.valid_from IS NULL THEN c.country ELSE cv.country END AS country,
                   coalesce(cv.valid_from, c.created_at) AS company_source, cv.valid_from IS NULL AS company_current,
                   CASE WHEN uv.valid_from IS NULL THEN u.region ELSE uv.region END AS region,
                   coalesce(uv.valid_from, u.created_at) AS rep_user_source, uv.valid_from IS NULL AS rep_user_current,
                   u.created_at AS rep_created,
                   coalesce(r.closed, 0) AS rep_closed, coalesce(r.wins, 0) AS rep_wins, r.closed_at AS rep_last_close
            FROM idx i
            JOIN opportunities o ON o.id = i.opportunity_id
            ASOF LEFT JOIN {spans} s ON s.opportunity_id = i.opportunity_id AND i.as_of >= s.entered_at
            ASOF LEFT JOIN touch_at a ON a.related_id = i.opportunity_id AND i.as_of >= a.created_at
            ASOF LEFT JOIN touch_at b ON b.related_id = i.opportunity_id AND i.as_of_14d_ago >= b.created_at
            LEFT JOIN companies c ON c.id = o.company_id
            LEFT JOIN users u ON u.id = o.assigned_to
            ASOF LEFT JOIN company_version cv ON cv.company_id = o.company_id AND i.as_of >= cv.valid_from
            ASOF LEFT JOIN user_version uv ON uv.user_id = o.assigned_to AND i.as_of >= uv.valid_from
            ASOF LEFT JOIN rep_record r ON r.rep = o.assigned_to AND i.as_of >= r.closed_at
        )
        SELECT opportunity_id::VARCHAR AS opportunity_id, as_of,
               value::DOUBLE AS value,
               age_days AS deal_age_days,
               {_days_between("as_of", "entered_at")} AS days_in_stage,
               stage_changes::DOUBLE AS stage_changes,
               n_total::DOUBLE AS activities_total,
               (n_total - n_total_14d_ago)::DOUBLE AS activities_last_14d,
               n_call::DOUBLE AS calls_total,
               n_email::DOUBLE AS emails_total,
               n_meeting::DOUBLE AS meetings_total,
               n_inbound::DOUBLE AS inbound_total,
               7.0 * n_total / greatest(age_days, 1.0) AS activities_per_week,
               coalesce({_days_between("as_of", "last_touch")}, age_days) AS days_since_last_activity,
               employee_count::DOUBLE AS employee_count,
               annual_revenue::DOUBLE AS annual_revenue,
               (rep_wins + {REP_PRIOR_WINS!r}) / (rep_closed + {REP_PRIOR_DEALS!r}) AS rep_win_rate,
               stage, industry, size AS company_size, region, country,
               deal_created AS source__deal_created, entered_at AS source__stage,
               greatest(coalesce(last_touch, deal_created), deal_created) AS source__activities,
               company_source AS source__company, company_current AS current__company,
               rep_user_source AS source__rep_user, rep_user_current AS current__rep_user,
               greatest(coalesce(rep_last_close, rep_created), rep_created) AS source__rep_record
        FROM joined
        ORDER BY 2, 1
        """


def create_deal_features(
    db: CRMDatabase,
    index_table: str,
    name: str = "deal_win_features",
    spans: str | None = None,
    touches: str | None = None,
) -> str:
    """A TEMP table with KEYS, every DEAL_WIN_FEATURES column (same names, values and missing values as
    `compute_deal_features`), and `source__<group>` columns: the newest timestamp each feature group read.
    Rows follow (as_of, opportunity_id). `spans` / `touches`: tables from `create_stage_spans` /
    `create_touch_counts` (covering the index's deals) to reuse instead of building them again."""
    create_history_views(db)
    spans = spans or create_stage_spans(db, f"{name}_spans")
    touches = touches or create_touch_counts(db, index_table, "opportunity_id", f"{name}_touches")
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {deal_features_sql(index_table, spans, touches)}")
    return name


def feature_frame(db: CRMDatabase, features_table: str) -> pd.DataFrame:
    """KEYS + DEAL_WIN_FEATURES columns as a DataFrame (for small builds and parity checks)."""
    columns = ", ".join(f'"{c}"' for c in [*KEYS, *DEAL_WIN_FEATURES.names])
    return db.sql(f"SELECT {columns} FROM {features_table} ORDER BY as_of, opportunity_id").df()


def source_times_frame(db: CRMDatabase, features_table: str) -> pd.DataFrame:
    """Per row and feature, the newest source timestamp it read, and the current-value flags of the versioned
    features: the columns of `compute_deal_features(with_sources=True)`."""
    columns = [f'source__{group} AS "{feature}"' for feature, group in FEATURE_SOURCE.items()]
    columns += [
        f'current__{group} AS "{current_value_column(feature)}"'
        for feature, group in FEATURE_SOURCE.items()
        if group in VERSIONED_GROUPS
    ]
    return db.sql(
        f"SELECT {', '.join(KEYS)}, {', '.join(columns)} FROM {features_table} ORDER BY as_of, opportunity_id"
    ).df()


def audit_leakage(db: CRMDatabase, features_table: str, features: list[str] | None = None) -> dict:
    """The point-in-time audit in SQL, with the rules of `audit.audit_point_in_time`: raise LeakageError naming
    each feature of `features` (default: every DEAL_WIN_FEATURES name) that is not declared in FEATURE_SOURCE,
    has rows with no source time, or read a row stamped after its as_of; otherwise return the same summary."""
    counts = db.sql(audit_counts_sql(features_table)).df().iloc[0]
    return audit_from_counts(counts, features)


def audit_counts_sql(features_table: str) -> str:
    """The audit's one query (rows; per source group, rows that read after as_of or report no time; rows on
    current values): also run by Spark over its feature table (`fulqrun_ml.spark.features`)."""
    checks = [f"count(*) FILTER (WHERE source__{g} > as_of) AS late__{g}" for g in SOURCE_GROUPS]
    checks += [f"count(*) FILTER (WHERE source__{g} IS NULL) AS null__{g}" for g in SOURCE_GROUPS]
    checks += [f"count(*) FILTER (WHERE current__{g}) AS current__{g}" for g in VERSIONED_GROUPS]
    return f"SELECT count(*) AS rows, {', '.join(checks)} FROM {features_table}"


def audit_from_counts(counts: pd.Series, features: list[str] | None = None) -> dict:
    """`audit_leakage`'s verdict from the counts of `audit_counts_sql` (whichever engine ran it)."""
    features = list(DEAL_WIN_FEATURES.names) if features is None else features
    leaks, current = {}, {}
    for feature in features:
        group = FEATURE_SOURCE.get(feature)
        if group is None:
            leaks[feature] = "declares no sources (not in FEATURE_SOURCE)"
            continue
        problems = []
        if counts[f"null__{group}"] > 0:
            problems.append(f"{int(counts[f'null__{group}'])} rows report no source time (NULL)")
        if counts[f"late__{group}"] > 0:
            problems.append(f"{int(counts[f'late__{group}'])} rows read data after as_of")
        if problems:
            leaks[feature] = "; ".join(problems)
        if group in VERSIONED_GROUPS and counts[f"current__{group}"] > 0:
            current[feature] = int(counts[f"current__{group}"])
    if leaks:
        raise LeakageError("point-in-time violation: " + "; ".join(f"'{f}': {why}" for f, why in leaks.items()))
    return {
        "features_audited": len(features),
        "rows_audited": int(counts["rows"]),
        "violations": 0,
        "not_point_in_time": current,
    }
