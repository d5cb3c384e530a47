"""The point-in-time snapshot builders, executed in DuckDB over a CRM Parquet directory (`crm_duckdb.py`).

These are second executions of the pandas definitions in `snapshots.py` and `task_snapshots.py`, not new
definitions: same rows, same labels, same label times (tests/unit/test_data_scale.py proves parity). They
exist because the pandas builders loop over as_of dates in memory, which does not reach 1M deals and 20M
activities on two cores; here each builder is one set-based query that DuckDB streams and spills.

How the per-as_of loops become joins:
- a deal's stage at as_of: each stage-history row is a span [changed_at, next change) per deal; a deal is
  in that stage at every grid date inside the span (ties broken in table order, like pandas' stable sort);
- "the last k touches before as_of": touches are numbered per entity in time order and each (entity, as_of)
  row takes numbers (n - k, n], where n counts touches at or before as_of (an ASOF join on a running count);
- a lead is open from created_at until its decision, a company is a customer from its first win: both are
  range joins against the date grid.
Every result is a TEMP table (named by the caller), so later stages reuse it and large ones spill to disk.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from fulqrun_ml.data.crm_duckdb import CRMDatabase
from fulqrun_ml.data.task_snapshots import CHANNEL_OF, CHANNELS, DECIDED_LEAD_STATUSES
from fulqrun_ml.data.vocabulary import ACTIVITY_DIRECTIONS, ACTIVITY_TYPES, OPEN_STAGES, STAGE_DEFAULT_PROBABILITY

CLOSED = "('closed_won', 'closed_lost')"
DAY_US = 86_400_000_000.0


def _text_list(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def snapshot_dates(db: CRMDatabase, every_days: int, warmup_days: int, horizon_days: int) -> list[pd.Timestamp]:
    """`snapshots.snapshot_dates` on the database: the same grid from the first deal and the extraction time."""
    # As epoch microseconds: fetching a TIMESTAMPTZ as a Python object would need pytz.
    first_us = db.sql("SELECT epoch_us(min(created_at)) FROM opportunities").fetchone()[0]  # type: ignore[index]
    first = pd.Timestamp(first_us, unit="us", tz="UTC").normalize() + pd.Timedelta(days=warmup_days)
    last = db.extracted_at - pd.Timedelta(days=horizon_days)
    return list(pd.date_range(first, last, freq=f"{every_days}D"))


def create_grid(db: CRMDatabase, name: str, as_of_dates: list[pd.Timestamp]) -> str:
    """A one-column TEMP table `as_of` holding the dates (UTC)."""
    frame = pd.DataFrame({"as_of": pd.DatetimeIndex(as_of_dates).tz_convert("UTC").astype("datetime64[us, UTC]")})
    db.con.register("_grid_frame", frame)
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT as_of FROM _grid_frame")
    db.con.unregister("_grid_frame")
    return name


def stage_spans_sql() -> str:
    """The query behind `create_stage_spans`, as text: the one definition that Spark also runs
    (`fulqrun_ml.spark.dialect` translates the DuckDB spellings)."""
    return """
        SELECT opportunity_id, stage, entered_at, left_at, stage_changes FROM (
            SELECT opportunity_id, to_stage AS stage, changed_at AS entered_at,
                   lead(changed_at) OVER w AS left_at,
                   (row_number() OVER w - 1)::DOUBLE AS stage_changes
            FROM stage_history
            WINDOW w AS (PARTITION BY opportunity_id ORDER BY changed_at, _pos)
        ) WHERE left_at IS NULL OR left_at > entered_at
        """


def create_stage_spans(db: CRMDatabase, name: str = "stage_spans") -> str:
    """One row per stage-history row that is ever the latest at some instant: the deal's stage from
    `entered_at` until `left_at` (NULL: still in it), and how many changes came before (`stage_changes`).

    Rows tied in time with a later row of the same deal (in table order) are never the latest, so they are
    dropped; that makes the spans of a deal disjoint and an ASOF join on `entered_at` unambiguous."""
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {stage_spans_sql()}")
    return name


def _check_one_close_per_deal(db: CRMDatabase) -> None:
    twice = db.sql(
        f"SELECT opportunity_id FROM stage_history WHERE to_stage IN {CLOSED} GROUP BY 1 HAVING count(*) > 1 LIMIT 1"
    ).fetchall()
    if twice:
        raise ValueError(f"stage_history: opportunity {twice[0][0]} has more than one close row; one is expected")


def deal_win_sql(grid: str, spans: str, horizon_days: int) -> str:
    """The query behind `deal_win_snapshots`, as text over a date grid and `stage_spans_sql` spans: the one
    definition that Spark also runs (`fulqrun_ml.spark.dialect` translates the DuckDB spellings)."""
    stage_meta = ", ".join(
        f"('{stage}', {i}, {STAGE_DEFAULT_PROBABILITY[stage]!r})" for i, stage in enumerate(OPEN_STAGES)
    )
    return f"""
        WITH closes AS (
            SELECT opportunity_id, to_stage AS outcome, changed_at AS closed_at
            FROM stage_history WHERE to_stage IN {CLOSED}
        ),
        meta(stage, stage_index, rep_probability) AS (VALUES {stage_meta})
        SELECT s.opportunity_id::VARCHAR AS opportunity_id, g.as_of, m.stage_index::BIGINT AS stage_index,
               m.rep_probability::DOUBLE AS rep_probability,
               (c.outcome = 'closed_won')::FLOAT AS label, c.closed_at AS label_time,
               s.stage, s.entered_at AS stage_entered_at, s.stage_changes
        FROM {grid} g
        JOIN {spans} s ON s.entered_at <= g.as_of AND g.as_of < coalesce(s.left_at, 'infinity'::TIMESTAMPTZ)
        JOIN meta m ON m.stage = s.stage
        JOIN closes c ON c.opportunity_id = s.opportunity_id
        WHERE c.closed_at <= g.as_of + INTERVAL {int(horizon_days)} DAY
        ORDER BY 2, 1
        """


def deal_win_snapshots(
    db: CRMDatabase, as_of_dates: list[pd.Timestamp], horizon_days: int, name: str = "deal_win_snapshots"
) -> str:
    """`snapshots.deal_win_snapshots`: deals open at each as_of that close within the horizon, with
    stage_index, rep_probability, label (1.0 won) and label_time; also `stage`, `stage_entered_at` and
    `stage_changes` for the feature builder. Ordered by (as_of, opportunity_id)."""
    _check_one_close_per_deal(db)
    grid = create_grid(db, f"{name}_grid", as_of_dates)
    spans = create_stage_spans(db, f"{name}_spans")
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {deal_win_sql(grid, spans, horizon_days)}")
    return name


def open_deals(db: CRMDatabase, as_of: pd.Timestamp, spans: str, name: str = "open_deals") -> str:
    """`snapshots.open_deals_as_of`: deals in an open stage at `as_of` (the scoring rows at extraction time) with
    stage_index and rep_probability, over `stage_spans_sql` spans (unordered: see `create_first_seen`)."""
    stage_meta = ", ".join(
        f"('{stage}', {i}, {STAGE_DEFAULT_PROBABILITY[stage]!r})" for i, stage in enumerate(OPEN_STAGES)
    )
    grid = create_grid(db, f"{name}_grid", [as_of])
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH meta(stage, stage_index, rep_probability) AS (VALUES {stage_meta})
        SELECT s.opportunity_id::VARCHAR AS opportunity_id, g.as_of, m.stage_index::BIGINT AS stage_index,
               m.rep_probability::DOUBLE AS rep_probability
        FROM {grid} g
        JOIN {spans} s ON s.entered_at <= g.as_of AND g.as_of < coalesce(s.left_at, 'infinity'::TIMESTAMPTZ)
        JOIN meta m ON m.stage = s.stage
        """
    )
    return name


def create_first_seen(db: CRMDatabase, name: str = "first_seen") -> str:
    """Per deal, the rank of its first stage-history row in (changed_at, table) order. The pandas builders list
    a date's deals in that order (a stable sort by time, then groupby in order of appearance); ordering by
    (as_of, first_seen) gives a DuckDB-built frame the same rows in the same order, so content hashes agree."""
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        SELECT opportunity_id::VARCHAR AS opportunity_id, min(rank) AS first_seen FROM (
            SELECT opportunity_id, row_number() OVER (ORDER BY changed_at, _pos) AS rank FROM stage_history
        ) GROUP BY 1
        """
    )
    return name


def lead_conversion_sql(grid: str, horizon_days: int) -> str:
    """The query behind `lead_conversion_snapshots`, as text over a date grid: the one definition that Spark
    also runs (`fulqrun_ml.spark.dialect` translates the DuckDB spellings)."""
    decided = ", ".join("'" + s.replace("'", "''") + "'" for s in sorted(DECIDED_LEAD_STATUSES))
    horizon_end = f"g.as_of + INTERVAL {int(horizon_days)} DAY"
    return f"""
        WITH l AS (
            SELECT id, status, created_at, CASE WHEN status IN ({decided}) THEN updated_at END AS decided_at
            FROM leads
        )
        SELECT l.id::VARCHAR AS lead_id, g.as_of,
               (l.status = 'converted' AND coalesce(l.decided_at <= {horizon_end}, false))::FLOAT AS label,
               CASE WHEN l.decided_at <= {horizon_end} THEN l.decided_at ELSE {horizon_end} END AS label_time
        FROM {grid} g
        JOIN l ON l.created_at <= g.as_of AND g.as_of < coalesce(l.decided_at, 'infinity'::TIMESTAMPTZ)
        ORDER BY 2, 1
        """


def usable_dates(extracted_at: pd.Timestamp, as_of_dates: list[pd.Timestamp], horizon_days: int) -> list[pd.Timestamp]:
    """The as_of dates whose horizon ends by the extraction (the lead and account labels are fully observed)."""
    return [d for d in as_of_dates if d + pd.Timedelta(days=horizon_days) <= extracted_at]


def lead_conversion_snapshots(
    db: CRMDatabase, as_of_dates: list[pd.Timestamp], horizon_days: int, name: str = "lead_conversion_snapshots"
) -> str:
    """`task_snapshots.lead_conversion_snapshots`: leads undecided at as_of (dates whose horizon ends after
    extraction are skipped); label 1.0 if converted within the horizon; label_time the decision or the
    horizon's end. Ordered by (as_of, lead_id)."""
    grid = create_grid(db, f"{name}_grid", usable_dates(db.extracted_at, as_of_dates, horizon_days))
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {lead_conversion_sql(grid, horizon_days)}")
    return name


def account_snapshots_sql(grid: str, horizon_days: int) -> str:
    """The query behind `account_snapshots`, as text over a date grid: the one definition that Spark also runs
    (`fulqrun_ml.spark.dialect` translates the DuckDB spellings, its ASOF join included)."""
    return f"""
        WITH wins AS (
            SELECT o.company_id, h.changed_at
            FROM stage_history h JOIN opportunities o ON o.id = h.opportunity_id
            WHERE h.to_stage = 'closed_won'
        ),
        customers AS (
            SELECT w.company_id, g.as_of, g.as_of + INTERVAL {int(horizon_days)} DAY AS horizon_end
            FROM (SELECT company_id, min(changed_at) AS first_win FROM wins GROUP BY 1) w
            JOIN {grid} g ON w.first_win <= g.as_of
        ),
        labelled AS (
            SELECT c.company_id, c.as_of, c.horizon_end, n.changed_at AS next_win
            FROM customers c ASOF LEFT JOIN wins n ON n.company_id = c.company_id AND c.as_of < n.changed_at
        )
        SELECT company_id::VARCHAR AS company_id, as_of,
               coalesce(next_win <= horizon_end, false)::FLOAT AS expansion,
               CASE WHEN next_win <= horizon_end THEN next_win ELSE horizon_end END AS label_time,
               1.0::FLOAT - coalesce(next_win <= horizon_end, false)::FLOAT AS churn
        FROM labelled
        ORDER BY 2, 1
        """


def account_snapshots(
    db: CRMDatabase, as_of_dates: list[pd.Timestamp], horizon_days: int, name: str = "account_snapshots"
) -> str:
    """`task_snapshots.account_snapshots`: companies with a win at or before as_of; expansion 1.0 if another
    win follows within the horizon (label_time: that win, else the horizon's end); churn = 1 - expansion."""
    grid = create_grid(db, f"{name}_grid", usable_dates(db.extracted_at, as_of_dates, horizon_days))
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {account_snapshots_sql(grid, horizon_days)}")
    return name


def revenue_series(
    db: CRMDatabase,
    freq: Literal["W", "M"] = "W",
    by: Literal["organization", "region", "rep"] = "organization",
) -> pd.DataFrame:
    """`task_snapshots.revenue_series`: booked revenue per group per complete calendar week (Monday start) or
    month, zeros included, in (group, period) order. Small (groups x periods), so returned as a DataFrame."""
    if freq not in ("W", "M") or by not in ("organization", "region", "rep"):
        raise ValueError(f"freq must be 'W' or 'M' and by one of organization/region/rep, got {freq!r}, {by!r}")
    unit = "week" if freq == "W" else "month"
    group = {"organization": "o.organization_id", "rep": "o.assigned_to", "region": "u.region"}[by]
    pandas_freq = "W-SUN" if freq == "W" else "M"
    last_complete = db.extracted_at.tz_localize(None).to_period(pandas_freq) - 1
    last_start = pd.Timestamp(last_complete.start_time).tz_localize("UTC")
    frame = db.sql(
        f"""
        WITH bookings AS (
            SELECT ({group})::VARCHAR AS "group", date_trunc('{unit}', h.changed_at::TIMESTAMP) AS period,
                   o.value AS revenue
            FROM stage_history h
            JOIN opportunities o ON o.id = h.opportunity_id
            LEFT JOIN users u ON u.id = o.assigned_to
            WHERE h.to_stage = 'closed_won'
        ),
        totals AS (SELECT "group", period, sum(revenue) AS revenue FROM bookings GROUP BY 1, 2),
        periods AS (
            SELECT unnest(generate_series(
                (SELECT date_trunc('{unit}', min(created_at)::TIMESTAMP) FROM opportunities),
                $last_start::TIMESTAMP, INTERVAL 1 {unit})) AS period
        ),
        groups AS (SELECT DISTINCT "group" FROM bookings WHERE "group" IS NOT NULL)
        SELECT g."group", coalesce(t.revenue, 0.0)::DOUBLE AS revenue, p.period AS period_start
        FROM groups g CROSS JOIN periods p
        LEFT JOIN totals t ON t."group" = g."group" AND t.period = p.period
        ORDER BY g."group", p.period
        """,
        params={"last_start": last_start.tz_localize(None).to_pydatetime()},
    ).df()
    periods = pd.PeriodIndex(pd.DatetimeIndex(frame["period_start"]), freq=pandas_freq)
    frame["period_start"] = periods.start_time.tz_localize("UTC")
    frame["period_end"] = periods.end_time.tz_localize("UTC")
    return frame.assign(level=by, freq=freq)


def touch_counts_sql(entity_table: str, entity_column: str) -> str:
    """The query behind `create_touch_counts`, as text: the one definition that Spark also runs
    (`fulqrun_ml.spark.dialect` translates the DuckDB spellings)."""
    running = ", ".join(f"count(*) FILTER (WHERE type = '{t}') OVER peers AS n_{t}" for t in ACTIVITY_TYPES)
    return f"""
        SELECT related_id, created_at, type, direction,
               row_number() OVER ordered AS seq, lag(created_at) OVER ordered AS previous_at,
               count(*) OVER peers AS n_total, {running},
               count(*) FILTER (WHERE direction = 'inbound') OVER peers AS n_inbound
        FROM activities
        WHERE related_id IN (SELECT DISTINCT {entity_column}::UUID FROM {entity_table})
        WINDOW ordered AS (PARTITION BY related_id ORDER BY created_at, _pos),
               peers AS (PARTITION BY related_id ORDER BY created_at
                         RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
        """


def create_touch_counts(db: CRMDatabase, entity_table: str, entity_column: str, name: str) -> str:
    """Touches of the entities in `entity_table`, numbered per entity in time order (ties in table order),
    with running counts per type (ties counted together, so a count means "at or before this instant")."""
    db.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {touch_counts_sql(entity_table, entity_column)}")
    return name


def activity_sequences(
    db: CRMDatabase,
    index_table: str,
    entity_column: str = "opportunity_id",
    max_len: int = 32,
    name: str = "activity_sequences",
    touches: str | None = None,
) -> str:
    """`task_snapshots.activity_sequences` as one row per (entity, as_of) of `index_table` with the last
    `max_len` touches at or before as_of as lists, oldest first: `event_type`, `channel`, `direction` (codes
    as in the pandas builder: 1-based, 0 is padding), `delta_days`, `age_days`, and `length`. Rows without
    touches have empty lists. `sequences_to_arrays` turns it into the pandas builder's padded arrays.
    `touches`: a table from `create_touch_counts` covering the index's entities, to reuse one built already."""
    touches = touches or create_touch_counts(db, index_table, entity_column, f"{name}_touches")
    type_code = "list_position(" + _text_list(ACTIVITY_TYPES) + ", t.type)"
    channel_of = (
        "CASE t.type "
        + " ".join(f"WHEN '{t}' THEN {CHANNELS.index(c) + 1}" for t, c in CHANNEL_OF.items())
        + f" ELSE {CHANNELS.index('internal') + 1} END"
    )
    direction_code = (
        "coalesce(list_position(" + _text_list(ACTIVITY_DIRECTIONS) + f", t.direction), {len(ACTIVITY_DIRECTIONS)})"
    )
    fields = ", ".join(
        f"coalesce(list_transform(e.events, x -> x.{key}), []) AS {key}"
        for key in ("event_type", "channel", "direction", "delta_days", "age_days")
    )
    db.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {name} AS
        WITH idx AS (
            SELECT i.entity, i.as_of, coalesce(c.seq, 0) AS last_seq
            FROM (SELECT DISTINCT {entity_column}::UUID AS entity, as_of FROM {index_table}) i
            ASOF LEFT JOIN (SELECT related_id, created_at, max(seq) AS seq FROM {touches} GROUP BY 1, 2) c
                ON c.related_id = i.entity AND i.as_of >= c.created_at
        ),
        events AS (
            SELECT i.entity, i.as_of,
                   -- ordered list aggregates are slow in DuckDB; sorting a list of structs by seq is not
                   list_sort(list({{
                       'seq': t.seq,
                       'event_type': coalesce({type_code}, 0),
                       'channel': {channel_of},
                       'direction': {direction_code},
                       'delta_days': CASE WHEN t.seq = greatest(i.last_seq - {int(max_len)} + 1, 1) THEN 0.0
                                     ELSE (epoch_us(t.created_at) - epoch_us(t.previous_at)) / {DAY_US} END,
                       'age_days': (epoch_us(i.as_of) - epoch_us(t.created_at)) / {DAY_US}
                   }})) AS events
            FROM idx i JOIN {touches} t
              ON t.related_id = i.entity AND t.seq > i.last_seq - {int(max_len)} AND t.seq <= i.last_seq
            GROUP BY i.entity, i.as_of
        )
        SELECT i.entity::VARCHAR AS {entity_column}, i.as_of,
               {fields},
               coalesce(len(e.events), 0)::BIGINT AS length
        FROM idx i LEFT JOIN events e ON e.entity = i.entity AND e.as_of = i.as_of
        ORDER BY 2, 1
        """
    )
    return name


def sequences_to_arrays(frame: pd.DataFrame, index: pd.DataFrame, entity_column: str, max_len: int) -> dict:
    """The list rows of `activity_sequences` as the pandas builder's left-padded arrays, in `index` order."""
    keyed = index[[entity_column, "as_of"]].merge(frame, on=[entity_column, "as_of"], how="left")
    n = len(keyed)
    out = {
        "event_type": np.zeros((n, max_len), dtype=np.int64),
        "channel": np.zeros((n, max_len), dtype=np.int64),
        "direction": np.zeros((n, max_len), dtype=np.int64),
        "delta_days": np.zeros((n, max_len), dtype=np.float32),
        "age_days": np.zeros((n, max_len), dtype=np.float32),
        "length": keyed["length"].fillna(0).to_numpy(dtype=np.int64),
    }
    for key in ("event_type", "channel", "direction", "delta_days", "age_days"):
        for row, values in enumerate(keyed[key]):
            if isinstance(values, (list, np.ndarray)) and len(values):
                out[key][row, -len(values) :] = values
    return out
