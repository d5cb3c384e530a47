"""Hostile rows in a real PostgreSQL CRM (issue 19 item 7): hypothesis writes one value the database accepts but the
contract may not (NaN and ±Infinity money, out-of-range fractions, `infinity` timestamps, unknown stages, huge or
bidirectional text, SQL-looking text) into one opportunity, then `PostgresSource` loads the CRM. Each outcome is the
validated CRM or one located error (table, row, field; or a SourceError naming table and column), never a raw
psycopg/pandas exception; the database is read-only to the source (its rows are unchanged by the load)."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import PostgresSource, SourceError, load_crm_into_postgres
from fulqrun_ml.data.validation import CRMValidationError

pytestmark = pytest.mark.integration
SCHEMA = "fuzz_rows"
ROW = 3  # ORDER BY id: the source's row position of the opportunity changed

HOSTILE = st.sampled_from(
    [
        ("value", "NaN"),
        ("value", "Infinity"),
        ("value", "-Infinity"),
        ("value", "-1e30"),
        ("value", "1e300"),
        ("probability", "7"),
        ("probability", "NaN"),
        ("meddpicc_score", "-5"),
        ("close_date", "infinity"),
        ("close_date", "-infinity"),
        ("close_date", "0001-01-01 00:00:00+00"),
        ("created_at", "9999-12-31 23:59:59+00"),
        ("stage", "closed_won'; DROP TABLE opportunities; --"),
        ("stage", "x" * 100_000),
        ("stage", ""),
        ("competitor", "\u202eevil"),
        ("product", "😀" * 1000),
        ("loss_reason", "a\tb\nc\\d"),
    ]
)


@pytest.fixture(scope="module")
def crm_in_postgres(pg_dsn):
    crm = simulate_crm(n_opportunities=40, n_companies=10, n_reps=5, seed=4)
    load_crm_into_postgres(crm.tables, pg_dsn, SCHEMA, if_exists="replace")
    with psycopg.connect(pg_dsn) as conn:
        target = conn.execute(
            sql.SQL("SELECT id FROM {} ORDER BY id OFFSET %s LIMIT 1").format(sql.Identifier(SCHEMA, "opportunities")),
            (ROW,),
        ).fetchone()[0]
    return pg_dsn, crm.tables.extracted_at, target


def _table_digest(conn: psycopg.Connection) -> str:
    query = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} t")
    return conn.execute(query.format(sql.Identifier(SCHEMA, "opportunities"))).fetchone()[0]


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(hostile=HOSTILE)
@example(hostile=("close_date", "infinity"))  # found by this test: was a bare psycopg DataError
def test_a_hostile_row_in_postgres_is_loaded_or_refused_naming_its_row_and_field(crm_in_postgres, hostile):
    dsn, extracted_at, target = crm_in_postgres
    column, value = hostile
    table = sql.Identifier(SCHEMA, "opportunities")
    with psycopg.connect(dsn, autocommit=True) as conn:
        old = conn.execute(
            sql.SQL("SELECT {}::text FROM {} WHERE id = %s").format(sql.Identifier(column), table), (target,)
        )
        original = old.fetchone()[0]
        set_value = sql.SQL("UPDATE {} SET {} = %s WHERE id = %s").format(table, sql.Identifier(column))
        conn.execute(set_value, (value, target))
        try:
            before = _table_digest(conn)
            try:
                PostgresSource(dsn, schema=SCHEMA, extracted_at=extracted_at).load()
            except CRMValidationError as err:
                located = [p for p in err.report.problems if p.table == "opportunities" and p.row == ROW]
                assert located and all(p.field for p in located), str(err)
                assert len(str(err)) < 20_000
            except SourceError as err:
                assert "opportunities" in str(err) and f"column '{column}'" in str(err), err
                if "infinity" in value:
                    assert f"row id {target}" in str(err), err
            assert _table_digest(conn) == before
        finally:
            conn.execute(set_value, (original, target))
