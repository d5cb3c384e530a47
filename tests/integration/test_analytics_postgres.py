"""Pipeline and market analytics read from the CRM's PostgreSQL give the same reports as the same CRM in memory
(the optional opportunity_history, competitor and loss_reason travel through the database), and the CLI reads
the DSN from the environment."""

from __future__ import annotations

import json

import pytest

from fulqrun_ml.analytics.commands import main as analytics_main
from fulqrun_ml.analytics.market_report import market_report
from fulqrun_ml.analytics.pipeline_report import pipeline_report
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_competition import CompetitionScenario
from fulqrun_ml.data.sources import DSN_ENV, PostgresSource, load_crm_into_postgres
from fulqrun_ml.data.validation import validate_crm

pytestmark = pytest.mark.integration


def _rounded(value: object) -> object:
    """The report with floats to 9 significant digits: the database returns rows in another order, so sums
    differ in the last bits."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


REGIONS = {"north_america": ["US", "CA"], "emea": ["GB", "DE", "FR"], "apac": ["AU", "JP", "SG"], "latam": ["BR", "MX"]}


def test_reports_from_postgres_equal_the_in_memory_ones(pg_dsn, tmp_path, monkeypatch):
    crm = simulate_crm(n_opportunities=700, n_reps=6, n_companies=150, days=500, seed=11,
                       competition=CompetitionScenario())  # fmt: skip
    tables = validate_crm(crm.tables).tables
    load_crm_into_postgres(tables, pg_dsn, schema="analytics")
    loaded = PostgresSource(pg_dsn, schema="analytics", extracted_at=tables.extracted_at)()
    assert len(loaded.opportunity_history) == len(tables.opportunity_history)
    assert _rounded(pipeline_report(loaded)) == _rounded(pipeline_report(tables))
    assert _rounded(market_report(loaded, REGIONS)) == _rounded(market_report(tables, REGIONS))
    monkeypatch.setenv(DSN_ENV, pg_dsn)
    out = tmp_path / "pipeline.json"
    assert analytics_main(["pipeline", "--postgres", "--schema", "analytics", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["point_in_time"]["close_date_versions"] is True
