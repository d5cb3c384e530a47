"""The optional `lead_events` table (contract v6, the simulator's lead intent story) through PostgreSQL: written by
`load_crm_into_postgres`, read back by `PostgresSource` exactly as validation types it; absent, it loads empty."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from fulqrun_ml.data.contract import empty_events
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import PostgresSource, load_crm_into_postgres
from fulqrun_ml.data.validation import validate_crm

pytestmark = pytest.mark.integration


def test_lead_events_round_trip_through_postgres(pg_dsn):
    tables = simulate_crm(n_opportunities=60, n_companies=15, n_reps=6, n_leads=80, seed=21, lead_events=True).tables
    written = load_crm_into_postgres(tables, pg_dsn, schema="lead_events_roundtrip")
    assert written["lead_events"] == len(tables.lead_events) > 0
    loaded = PostgresSource(pg_dsn, schema="lead_events_roundtrip", extracted_at=tables.extracted_at)()
    expected = validate_crm(tables).tables.lead_events
    pd.testing.assert_frame_equal(
        loaded.lead_events.sort_values("id", ignore_index=True),
        expected.sort_values("id", ignore_index=True),
        check_exact=True,
    )
    without = dataclasses.replace(tables, lead_events=empty_events("lead_events"))
    load_crm_into_postgres(without, pg_dsn, schema="no_lead_events")
    assert PostgresSource(pg_dsn, schema="no_lead_events", extracted_at=tables.extracted_at)().lead_events.empty
