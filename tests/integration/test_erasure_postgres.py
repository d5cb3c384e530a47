"""`governance forget` and `scan` on PostgreSQL: a CRM read from PostgreSQL and the PostgreSQL prediction store,
on the session's real PostgreSQL cluster.

The checks after a forget do not use the erasure's code: every row of every table is read as JSON
(`row_to_json`) and searched for the subject's ids, emails and company name as plain substrings.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from fulqrun_ml.data.contract import CRMTables
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import PostgresSource, load_crm_into_postgres
from fulqrun_ml.erasure import forget as forget_module
from fulqrun_ml.erasure.cli import main
from fulqrun_ml.monitoring.prediction_store import PostgresStore
from tests.integration.erasure_setup import subject_secrets

EMAIL, PHONE, NAME = "maria.gomez@example.org", "+44 20 7946 0958", "Maria Gomez"
CRM_ENV, PREDICTION_ENV = "TEST_ERASURE_CRM_DSN", "TEST_ERASURE_PREDICTION_DSN"
SCHEMA, TABLE = "crm", "prediction_log"


@dataclass
class PgWorld:
    dsn: str
    schema: str
    table: str
    company: str
    other_company: str
    org: str
    empty: Path
    tables: CRMTables

    def args(self) -> list[str]:
        """The PostgreSQL stores only (empty directories stand in for the file stores' defaults)."""
        return [
            "--crm-dsn-env", CRM_ENV, "--crm-schema", self.schema,
            "--prediction-dsn-env", PREDICTION_ENV, "--prediction-table", self.table,
            "--prediction-logs", str(self.empty), "--embedding-cache", str(self.empty),
        ]  # fmt: skip


def _plant_world(tables: CRMTables, dsn: str) -> tuple[str, str]:
    """The CRM in schema `crm` and a prediction store table naming its deals and companies; (company, org)."""
    load_crm_into_postgres(tables, dsn, SCHEMA)
    opps = tables.opportunities
    with_notes = set(tables.notes.loc[tables.notes["related_type"] == "opportunity", "related_id"])
    company = next(c for c in opps["company_id"] if set(opps.loc[opps["company_id"] == c, "id"]) & with_notes)
    org = str(opps["organization_id"].iloc[0])
    records = [
        {
            "model": "deal_win", "request_id": f"r{i}", "row": 0, "version": 1,
            "time": pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
            "entity_id": f"@{org}/{deal}" if i % 2 else deal, "latency_ms": 1.0,
            "inputs": {"stage": "proposal", "company_id": company_id}, "outputs": {"probability": 0.5},
        }
        for i, (deal, company_id) in enumerate(zip(opps["id"], opps["company_id"], strict=True))
    ]  # fmt: skip
    PostgresStore(dsn, TABLE).commit(records, {})
    return company, org


@pytest.fixture(scope="session")
def pg_template(pg_dsn: str) -> tuple[str, CRMTables, str, str]:
    """A template database holding the planted stores, filled once (a small CRM: 60 deals), copied per test."""
    tables = simulate_crm(n_opportunities=60, n_companies=20, n_reps=4, seed=11).tables
    name = f"erasure_template_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    company, org = _plant_world(tables, make_conninfo(pg_dsn, dbname=name))
    return name, tables, company, org


@pytest.fixture
def pg_world(
    pg_template: tuple[str, CRMTables, str, str], pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PgWorld:
    """A fresh copy of the template database (CREATE DATABASE ... TEMPLATE: a file copy, no reload)."""
    template, tables, company, org = pg_template
    name = f"erasure_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    dsn = make_conninfo(pg_dsn, dbname=name)
    monkeypatch.setenv(CRM_ENV, dsn)
    monkeypatch.setenv(PREDICTION_ENV, dsn)
    opps = tables.opportunities
    other = next(c for c in opps["company_id"] if c != company)
    (tmp_path / "empty").mkdir()
    return PgWorld(dsn, SCHEMA, TABLE, company, other, org, tmp_path / "empty", tables)


def _rows_as_text(dsn: str, schema: str, tables: list[str] | None = None) -> dict[str, list[str]]:
    """Every row of every table of `schema` as JSON text, read without the erasure's code."""
    with psycopg.connect(dsn) as conn:
        names = tables or [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
            ).fetchall()
        ]
        return {
            name: [
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(schema, name))
                ).fetchall()
            ]
            for name in names
        }


def _forget(world: PgWorld, tmp_path: Path, *who: str) -> tuple[int, dict]:
    out = tmp_path / "reports"
    rc = main(["forget", *who, *world.args(), "--models-dir", str(tmp_path / "models"), "--out", str(out)])
    reports = sorted(out.glob("*.json"))
    return rc, (json.loads(reports[-1].read_text()) if reports else {})


def _hits(rows: dict[str, list[str]], secrets: set[str]) -> int:
    return sum(1 for values in rows.values() for row in values if any(s in row for s in secrets))


def test_scan_and_forget_on_the_postgres_crm_and_prediction_store(
    pg_world: PgWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = pg_world.tables
    rc = main(["scan", *pg_world.args(), "--json", str(tmp_path / "clean.json")])
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert rc == 0 and clean["stores"]["prediction_postgres"]["findings"] == {}
    assert clean["stores"]["crm"]["findings"]["email"] > 0 and clean["stores"]["crm"]["system_of_record"]
    plant = {
        "model": "deal_win", "request_id": "planted", "row": 0, "version": 1,
        "time": pd.Timestamp("2026-02-01", tz="UTC").to_pydatetime(), "entity_id": "x", "latency_ms": 1.0,
        "inputs": {"note": f"Spoke with {NAME}, reach her at {EMAIL} or {PHONE}"}, "outputs": {"probability": 0.5},
    }  # fmt: skip
    PostgresStore(pg_world.dsn, pg_world.table).commit([plant], {})
    capsys.readouterr()
    rc = main(["scan", *pg_world.args(), "--json", str(tmp_path / "found.json")])
    found = json.loads((tmp_path / "found.json").read_text())
    printed = capsys.readouterr().out
    assert rc == 1 and not found["clean"]
    assert {"email", "phone", "name"} <= set(found["stores"]["prediction_postgres"]["findings"])
    for secret in (EMAIL, PHONE, NAME, "Gomez", pg_world.dsn):
        assert secret not in printed and secret not in json.dumps(found)

    secrets = subject_secrets(tables, pg_world.company)
    assert _hits(_rows_as_text(pg_world.dsn, pg_world.schema), secrets) > 0
    logged_before = len(_rows_as_text(pg_world.dsn, "public", [pg_world.table])[pg_world.table])

    rc, report = _forget(pg_world, tmp_path, "--company", pg_world.company, "--org", pg_world.org)

    assert rc == 0 and report["erased"] is True
    for store in ("crm", "prediction_postgres"):
        assert report["stores"][store]["hits_before"] > 0 and report["stores"][store]["hits_after"] == 0, store
    assert _hits(_rows_as_text(pg_world.dsn, pg_world.schema), secrets) == 0
    logged = _rows_as_text(pg_world.dsn, "public", [pg_world.table])[pg_world.table]
    assert _hits({"log": logged}, secrets) == 0 and 0 < len(logged) < logged_before  # the subject's rows only
    after = PostgresSource(pg_world.dsn, pg_world.schema).load()  # still a valid CRM
    other = tables.opportunities["company_id"] == pg_world.other_company
    assert (after.opportunities["company_id"] == pg_world.other_company).sum() == other.sum()
    assert pg_world.company not in json.dumps(report) and pg_world.dsn not in json.dumps(report)


@pytest.mark.extended  # ~4 forgets; the fast test above covers the PostgreSQL erasure and scan themselves
def test_the_proof_can_fail_a_refused_statement_rolls_back_and_a_rerun_finishes(
    pg_world: PgWorld, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """(1) The PostgreSQL erasure disabled: the re-scan must still see the subject. (2) A real trigger refuses
    the company row's DELETE: the whole CRM transaction rolls back. (3) A rerun finishes; (4) a third refuses."""
    with monkeypatch.context() as patched:
        patched.setattr(forget_module.PostgresTables, "erase", lambda self, subject, matcher: {})
        rc, report = _forget(pg_world, tmp_path, "--company", pg_world.company)
    assert rc == 1 and report["erased"] is False
    for store in ("crm", "prediction_postgres"):
        assert report["stores"][store]["hits_after"] == report["stores"][store]["hits_before"] > 0, store

    before = _rows_as_text(pg_world.dsn, pg_world.schema)
    with psycopg.connect(pg_world.dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no'; END $$"
        )
        conn.execute(
            sql.SQL("CREATE TRIGGER refuse BEFORE DELETE ON {} FOR EACH ROW EXECUTE FUNCTION refuse()").format(
                sql.Identifier(pg_world.schema, "companies")
            )
        )
    capsys.readouterr()
    rc, _ = _forget(pg_world, tmp_path / "refused", "--company", pg_world.company)
    err = capsys.readouterr().err
    assert rc == 2 and "nothing was changed" in err and "Traceback" not in err and pg_world.company not in err
    assert not (tmp_path / "refused").exists()  # no report
    assert _rows_as_text(pg_world.dsn, pg_world.schema) == before  # not one row of the CRM changed
    with psycopg.connect(pg_world.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TRIGGER refuse ON {}").format(sql.Identifier(pg_world.schema, "companies")))

    rc, report = _forget(pg_world, tmp_path, "--company", pg_world.company)
    assert rc == 0 and report["erased"] is True
    assert report["stores"]["prediction_postgres"]["hits_before"] == 0  # erased by the refused run already
    assert _hits(_rows_as_text(pg_world.dsn, pg_world.schema), subject_secrets(pg_world.tables, pg_world.company)) == 0
    rc, _ = _forget(pg_world, tmp_path, "--company", pg_world.company)
    assert rc == 2  # nothing left to resolve


@pytest.mark.extended  # a second forget; the fast test covers the company case
def test_forget_a_contact_in_the_postgres_crm_keeps_the_companys_deal(pg_world: PgWorld, tmp_path: Path) -> None:
    """The deal stays with its company and loses the reference (an UPDATE ... SET NULL in the transaction)."""
    before = PostgresSource(pg_world.dsn, pg_world.schema).load()
    deal = before.opportunities[before.opportunities["contact_id"].notna()].iloc[0]
    email = before.contacts.set_index("id").loc[deal["contact_id"], "email"]
    rc, report = _forget(pg_world, tmp_path, "--contact", str(deal["contact_id"]))
    assert rc == 0 and report["stores"]["crm"]["hits_before"] > 0 and report["stores"]["crm"]["hits_after"] == 0
    kept = PostgresSource(pg_world.dsn, pg_world.schema).load().opportunities.set_index("id").loc[deal["id"]]
    assert pd.isna(kept["contact_id"]) and kept["company_id"] == deal["company_id"]
    assert _hits(_rows_as_text(pg_world.dsn, pg_world.schema), {str(deal["contact_id"]), email}) == 0
