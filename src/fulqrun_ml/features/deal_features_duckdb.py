"""The deal-win features (`deal_features.DEAL_WIN_FEATURES`) executed in DuckDB, for CRMs too large for pandas.

`deal_features.compute_deal_features` is THE definition; this module is a second execution of it over a
CRM Parquet directory (`data/crm_duckdb.py`), proven equal on every feature by
tests/unit/test_data_scale.py. Where pandas recomputes everything per as_of date, this computes each
source once and looks values up with ASOF joins (the newest row at or before as_of):
- stage, days in stage, stage changes: the stage span holding as_of (`snapshots_duckdb.create_stage_spans`);
- touch counts (all, calls, emails, meetings) and the last touch: running counts per deal, looked up at
  as_of; touches in the last 14 days = count at as_of minus count at as_of - 14 days;
- rep record: running wins and closes per rep over closes in time order, looked up at as_of;
- value, company and rep fields: plain joins (fixed at creation, as in the pandas definition).
It also returns, per row and feature group, the newest source timestamp it read, and `audit_leakage` checks
them in SQL (the `features/audit.py` rule: nothing newer than as_of) without pulling rows into Python.
"""

from __future__ import annotations

import pandas as pd

from fulqrun_ml.data.crm_duckdb import CRMDatabase
from fulqrun_ml.data.snapshots_duckdb import DAY_US, create_stage_spans, create_touch_counts
from fulqrun_ml.features.audit import LeakageError
from fulqrun_ml.features.deal_features import DEAL_WIN_FEATURES, FEATURE_SOURCE, KEYS, REP_PRIOR_DEALS, REP_PRIOR_WINS

SOURCE_GROUPS = sorted(set(FEATURE_SOURCE.values()))


def _days_between(later: str, earlier: str) -> str:
    return f"((epoch_us({later}) - epoch_us({earlier})) / {DAY_US})"


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
    spans = spans or create_stage_spans(db, f"{name}_spans")
    touches = touches or create_touch_counts(db, index_table, "opportunity_id", f"{name}_touches")
    age = _days_between("i.as_of", "o.created_at")
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
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
                   c.employee_count, c.annual_revenue, c.industry, c.size, c.country, c.created_at AS company_created,
                   u.region, u.created_at AS rep_created,
                   coalesce(r.closed, 0) AS rep_closed, coalesce(r.wins, 0) AS rep_wins, r.closed_at AS rep_last_close
            FROM idx i
            JOIN opportunities o ON o.id = i.opportunity_id
            ASOF LEFT JOIN {spans} s ON s.opportunity_id = i.opportunity_id AND i.as_of >= s.entered_at
            ASOF LEFT JOIN touch_at a ON a.related_id = i.opportunity_id AND i.as_of >= a.created_at
            ASOF LEFT JOIN touch_at b ON b.related_id = i.opportunity_id AND i.as_of_14d_ago >= b.created_at
            LEFT JOIN companies c ON c.id = o.company_id
            LEFT JOIN users u ON u.id = o.assigned_to
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
               rep_closed::DOUBLE AS rep_closed_deals,
               stage, industry, size AS company_size, region, country,
               deal_created AS source__deal_created, entered_at AS source__stage,
               last_touch AS source__activities, company_created AS source__company,
               rep_created AS source__rep_user, rep_last_close AS source__rep_record
        FROM joined
        ORDER BY 2, 1
        """
    )
    return name


def feature_frame(db: CRMDatabase, features_table: str) -> pd.DataFrame:
    """KEYS + DEAL_WIN_FEATURES columns as a DataFrame (for small builds and parity checks)."""
    columns = ", ".join(f'"{c}"' for c in [*KEYS, *DEAL_WIN_FEATURES.names])
    return db.sql(f"SELECT {columns} FROM {features_table} ORDER BY as_of, opportunity_id").df()


def source_times_frame(db: CRMDatabase, features_table: str) -> pd.DataFrame:
    """Per row and feature, the newest source timestamp it read: `compute_deal_features(with_sources=True)`."""
    columns = ", ".join(f'source__{group} AS "{feature}"' for feature, group in FEATURE_SOURCE.items())
    return db.sql(f"SELECT {', '.join(KEYS)}, {columns} FROM {features_table} ORDER BY as_of, opportunity_id").df()


def audit_leakage(db: CRMDatabase, features_table: str) -> dict:
    """The point-in-time audit in SQL: raise LeakageError naming each feature that read a row stamped after
    its as_of; otherwise return the same summary as `audit.audit_point_in_time`."""
    late = ", ".join(f"count(*) FILTER (WHERE source__{g} > as_of) AS {g}" for g in SOURCE_GROUPS)
    counts = db.sql(f"SELECT count(*) AS rows, {late} FROM {features_table}").df().iloc[0]
    leaks = {
        feature: f"{int(counts[group])} rows read data after as_of"
        for feature, group in FEATURE_SOURCE.items()
        if counts[group] > 0
    }
    if leaks:
        raise LeakageError("point-in-time violation: " + "; ".join(f"'{f}': {why}" for f, why in leaks.items()))
    return {"features_audited": len(FEATURE_SOURCE), "rows_audited": int(counts["rows"]), "violations": 0}
