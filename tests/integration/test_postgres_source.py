"""PostgreSQL source against a real server: `scripts/postgres.sh` starts a throwaway cluster on 127.0.0.1.

A tiny simulated CRM is loaded with the CRM's column names and types (uuid, timestamptz, numeric) and
read back identical; dirty rows in the database are caught by the same contract as any other source.
"""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from fulqrun_ml.data.contract import HISTORY_OF, TABLE_COLUMNS
from fulqrun_ml.data.schemas import CRM_SCHEMAS
from fulqrun_ml.data.simulator import SimulatedCRM
from fulqrun_ml.data.sources import PostgresSource, SimulatorSource, SourceError, load_crm_into_postgres
from fulqrun_ml.data.validation import validate_crm
from fulqrun_ml.errors import DataContractError
from tests.integration.cdc_helpers import fresh_database

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"


@pytest.fixture(scope="module")
def postgres_cluster(pg_cluster: tuple[str, str]) -> tuple[str, str]:
    """(DSN, data dir) of the session's cluster, started by the same script (tests/integration/conftest.py)."""
    return pg_cluster


@pytest.fixture(scope="module")
def postgres_dsn(pg_dsn: str) -> Iterator[str]:
    """A fresh database in that cluster for this module, dropped afterwards: nothing here meets another test."""
    yield from fresh_database(pg_dsn, "pgsource")


@pytest.fixture(scope="module")
def crm() -> SimulatedCRM:
    return SimulatorSource(n_opportunities=60, n_companies=15, n_reps=6, seed=21)()


def sorted_by_key(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    return frame.sort_values(list(CRM_SCHEMAS[name].key)).reset_index(drop=True)


def test_script_is_idempotent_and_binds_loopback(postgres_cluster):
    dsn, data_dir = postgres_cluster
    for command in ("start", "status"):
        again = subprocess.run([str(SCRIPT), command, "--data-dir", data_dir], capture_output=True, text=True)
        assert (again.returncode, again.stdout.strip()) == (0, dsn), again.stderr
    elsewhere = subprocess.run([str(SCRIPT), "status", "--data-dir", "/nonexistent"], capture_output=True, text=True)
    assert elsewhere.returncode == 1 and "not running" in elsewhere.stderr
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT inet_server_addr()::text").fetchone()[0].startswith("127.0.0.1")
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_load_and_read_back_identical(postgres_dsn, crm):
    tables = crm.tables
    written = load_crm_into_postgres(tables, postgres_dsn, schema="roundtrip")
    # Optional event tables are written only when they hold rows (lead_events and the lifecycle tables are opt-in).
    events = {name: frame for name, frame in tables.event_frames().items() if len(frame)}
    frames = {name: tables.table(name) for name in TABLE_COLUMNS} | tables.history_frames() | events
    assert written == {name: len(frames[name]) for name in frames}
    assert written["leads"] > 0 and written["activities"] > 0 and written["company_history"] > 0

    source = PostgresSource(postgres_dsn, schema="roundtrip", extracted_at=tables.extracted_at)
    loaded = source()
    assert source.report is not None and source.report.ok and loaded.extracted_at == tables.extracted_at
    for name in TABLE_COLUMNS:
        pd.testing.assert_frame_equal(
            sorted_by_key(loaded.table(name), name), sorted_by_key(tables.table(name), name), check_exact=True, obj=name
        )
    for name, frame in tables.history_frames().items():  # the versions point-in-time features read
        key = HISTORY_OF[name][1]
        pd.testing.assert_frame_equal(
            loaded.history(name).sort_values([key, "valid_from"], ignore_index=True),
            frame.sort_values([key, "valid_from"], ignore_index=True),
            check_exact=True,
            obj=name,
        )
    expected = validate_crm(tables).tables  # the optional event tables, typed as every source returns them
    for name, key in (("meddpicc_events", ["opportunity_id", "field", "changed_at"]), ("notes", ["id"])):
        assert len(getattr(loaded, name)) > 0
        pd.testing.assert_frame_equal(
            getattr(loaded, name).sort_values(key, ignore_index=True),
            getattr(expected, name).sort_values(key, ignore_index=True),
            check_exact=True,
            obj=name,
        )
    # without an explicit time, extraction is the read transaction's start
    assert PostgresSource(postgres_dsn, schema="roundtrip")().extracted_at > tables.extracted_at


def test_columns_have_the_crm_types(postgres_dsn, crm):
    load_crm_into_postgres(crm.tables, postgres_dsn, schema="types", if_exists="replace")
    with psycopg.connect(postgres_dsn) as conn:
        rows = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'types' AND table_name = 'opportunities'"
        ).fetchall()
    types = dict(rows)
    assert list(types) and set(types) == set(TABLE_COLUMNS["opportunities"])
    assert types["id"] == "uuid" and types["company_id"] == "uuid"
    assert types["created_at"] == "timestamp with time zone" and types["value"] == "numeric"
    assert types["stage"] == "text" and types["meddpicc_score"] == "bigint"


def test_existing_tables_are_not_overwritten_by_default(postgres_dsn, crm):
    load_crm_into_postgres(crm.tables, postgres_dsn, schema="twice")
    with pytest.raises(SourceError, match="already exist in schema 'twice'"):
        load_crm_into_postgres(crm.tables, postgres_dsn, schema="twice")
    assert load_crm_into_postgres(crm.tables, postgres_dsn, schema="twice", if_exists="replace")["users"] > 0


def test_dirty_rows_in_the_database_are_quarantined(postgres_dsn, crm, tmp_path):
    load_crm_into_postgres(crm.tables, postgres_dsn, schema="dirty", if_exists="replace")
    with psycopg.connect(postgres_dsn) as conn:
        target = conn.execute("SELECT id FROM dirty.opportunities ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("UPDATE dirty.opportunities SET stage = 'Closed Won', value = -10 WHERE id = %s", (target,))
    source = PostgresSource(postgres_dsn, schema="dirty", on_error="quarantine", quarantine_dir=tmp_path)
    loaded = source()
    counts = source.report.counts()["opportunities"]  # type: ignore[union-attr]
    assert counts == {"negative_money": 1, "unknown_value": 1}
    assert str(target) not in set(loaded.opportunities["id"])
    assert (tmp_path / "opportunities.rejected.parquet").is_file()
    with pytest.raises(DataContractError, match="field 'stage': unknown_value 'Closed Won'"):
        PostgresSource(postgres_dsn, schema="dirty")()


def test_invalid_tables_never_reach_the_database(postgres_dsn, crm):
    opps = crm.tables.opportunities.assign(probability=2.0)
    broken = dataclasses.replace(crm.tables, opportunities=opps)
    with pytest.raises(DataContractError, match="probability"):
        load_crm_into_postgres(broken, postgres_dsn, schema="never")
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'never'").fetchone()[0] == 0


def test_missing_table_and_unreachable_server_are_named(postgres_dsn):
    with pytest.raises(SourceError, match=r"table 'empty\.organizations' does not exist"):
        PostgresSource(postgres_dsn, schema="empty")()
    with pytest.raises(SourceError, match="cannot connect to PostgreSQL"):
        PostgresSource("postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2")()


def test_training_data_from_postgres_matches_the_simulator(postgres_dsn, monkeypatch, tmp_path):
    """`data=crm_postgres`: the DSN comes from the environment, never the config, and the snapshot set
    built from the database is the one built from the same CRM in memory."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from fulqrun_ml.project import CONFIG_DIR

    crm = SimulatorSource(n_opportunities=600, n_companies=120, n_reps=6, seed=5)()
    load_crm_into_postgres(crm.tables, postgres_dsn, schema="training")
    monkeypatch.setenv("FULQRUN_CRM_DSN", postgres_dsn)
    overrides = [
        "data=crm_postgres",
        "data.source.schema=training",
        f"paths.output_dir={tmp_path}",
        f"data.source.extracted_at='{crm.tables.extracted_at.isoformat()}'",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    assert cfg.data.source.dsn is None
    from_db = instantiate(cfg.data)
    from_db.setup()
    in_memory = instantiate(cfg.data, source=lambda: crm)
    in_memory.setup()
    assert from_db.data_hash == in_memory.data_hash and from_db.sizes == in_memory.sizes
