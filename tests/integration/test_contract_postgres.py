"""A CRM database whose schema still has an old column name loads under the contract's name (declared alias)."""

from __future__ import annotations

import psycopg
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import PostgresSource, load_crm_into_postgres

pytestmark = pytest.mark.integration


def test_renamed_columns_in_postgres_load_through_aliases(pg_dsn):
    tables = simulate_crm(n_opportunities=40, n_companies=10, n_reps=3, seed=8).tables
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS contract_alias")
    load_crm_into_postgres(tables, pg_dsn, schema="contract_alias", if_exists="replace")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE contract_alias.opportunities RENAME COLUMN value TO amount")
        conn.execute("ALTER TABLE contract_alias.companies RENAME COLUMN size TO company_size")
    loaded = PostgresSource(pg_dsn, schema="contract_alias")()
    loaded = getattr(loaded, "tables", loaded)
    by_id = loaded.opportunities.set_index("id")["value"].astype(float)
    expected = tables.opportunities.set_index("id")["value"].astype(float)
    assert by_id.reindex(expected.index).tolist() == pytest.approx(expected.tolist())
    assert (
        loaded.companies.set_index("id")["size"].reindex(tables.companies["id"]).tolist()
        == tables.companies["size"].tolist()
    )
