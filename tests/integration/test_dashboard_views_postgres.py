"""Custom views stored in a real PostgreSQL (the session cluster): same validation and atomic semantics as the file.

Each test uses its own table, so they share the cluster without seeing each other's views.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from fulqrun_ml.dashboard.view_store import FileViewStore, PostgresViewStore, open_view_store
from fulqrun_ml.dashboard.views import ViewError, validate

pytestmark = pytest.mark.integration
BY_REGION = {"name": "won by region", "metric": "won_revenue", "dimensions": ["month", "region"],
             "filters": {"period": "24m", "segment": ["retail"]}, "chart": "line"}  # fmt: skip


@pytest.fixture
def table() -> str:
    return f"views_{uuid.uuid4().hex[:8]}"


def test_a_view_saved_in_postgres_reloads_identically_to_the_file_store(pg_dsn, table, tmp_path):
    view = validate(BY_REGION)
    pg, file = PostgresViewStore(pg_dsn, table), FileViewStore(tmp_path / "views.json")
    for store in (pg, file):
        store.save(view)
        store.save(validate({"name": "leads", "metric": "leads", "dimensions": ["source"]}))
    assert pg.load() == file.load()
    assert pg.load()["won by region"] == view
    # a second store on the same table (another dashboard instance) sees the same views
    assert PostgresViewStore(pg_dsn, table).load() == file.load()


def test_saving_a_name_again_replaces_it_in_one_row(pg_dsn, table):
    store = PostgresViewStore(pg_dsn, table)
    store.save(validate(BY_REGION))
    store.save(validate({**BY_REGION, "chart": "bar"}))
    assert store.load()["won by region"].chart == "bar"
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 1


def test_a_bad_definition_is_refused_and_nothing_is_written(pg_dsn, table):
    store = PostgresViewStore(pg_dsn, table)
    store.save(validate(BY_REGION))
    bad = validate(BY_REGION)
    object.__setattr__(bad, "metric", "drop table")  # a definition that bypassed validation
    with pytest.raises(ViewError, match="field 'metric'"):
        store.save(bad)
    assert store.load() == {"won by region": validate(BY_REGION)}


def test_a_bad_stored_row_is_refused_naming_the_row(pg_dsn, table):
    store = PostgresViewStore(pg_dsn, table)
    with psycopg.connect(pg_dsn) as conn:
        conn.execute(f"INSERT INTO {table} (name, definition) VALUES ('oops', %s::jsonb)",
                     ('{"name": "oops", "metric": "revenue_per_lizard"}',))  # fmt: skip
    with pytest.raises(ViewError, match=rf"table {table} row 'oops': field 'metric'"):
        store.load()


def test_the_store_is_chosen_by_a_variable_name_and_errors_hide_the_password(pg_dsn, monkeypatch, tmp_path):
    monkeypatch.setenv("VIEWS_DSN", pg_dsn)
    assert isinstance(open_view_store(tmp_path / "v.json", "VIEWS_DSN"), PostgresViewStore)
    assert isinstance(open_view_store(tmp_path / "v.json", None), FileViewStore)
    monkeypatch.setenv("VIEWS_DSN", "")
    with pytest.raises(ViewError, match="VIEWS_DSN is unset or empty"):
        open_view_store(tmp_path / "v.json", "VIEWS_DSN")
    monkeypatch.setenv("VIEWS_DSN", "postgresql://u:s3cret-pw@127.0.0.1:1/nowhere")
    with pytest.raises(ViewError, match=r"127\.0\.0\.1:1/nowhere table dashboard_views: cannot connect") as info:
        open_view_store(tmp_path / "v.json", "VIEWS_DSN")
    assert "s3cret-pw" not in str(info.value)
