"""The optional MEDDPICC / notes tables through exports and validation: a CSV round trip keeps them, an export
without them loads them empty, and bad rows are named by table, row and field (each rule broken on purpose)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.validation import CRMValidationError, validate_crm


@pytest.fixture(scope="module")
def tables():
    return simulate_crm(n_opportunities=200, n_companies=60, n_reps=4, n_leads=60, seed=2).tables


def test_csv_round_trip_keeps_the_event_tables(tables, tmp_path):
    expected = validate_crm(tables).tables
    write_crm_directory(tables, tmp_path, format="csv")
    loaded = DirectorySource(tmp_path).load()
    for name in ("meddpicc_events", "notes"):
        assert len(getattr(expected, name)) > 0
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(expected, name), check_dtype=False)
    assert loaded.meddpicc_events["changed_at"].dtype == "datetime64[us, UTC]"


def test_an_export_without_them_loads_them_empty(tables, tmp_path):
    write_crm_directory(tables, tmp_path, format="parquet")
    for name in ("meddpicc_events", "notes"):
        (tmp_path / f"{name}.parquet").unlink()
    loaded = DirectorySource(tmp_path).load()
    assert loaded.meddpicc_events.empty and loaded.notes.empty and len(loaded.opportunities) == 200


@pytest.mark.parametrize(
    ("table", "column", "value", "reason"),
    [
        ("meddpicc_events", "field", "budget", "unknown_value"),
        ("meddpicc_events", "score", 11, "out_of_range"),
        ("meddpicc_events", "opportunity_id", "00000000-0000-4000-8000-000000000000", "dangling_foreign_key"),
        ("meddpicc_events", "changed_at", pd.Timestamp("2020-01-01", tz="UTC"), "before_creation"),
        ("notes", "kind", "tweet", "unknown_value"),
        ("notes", "related_id", "00000000-0000-4000-8000-000000000000", "dangling_foreign_key"),
        ("notes", "created_at", "not a date", "wrong_type"),
    ],
)
def test_bad_rows_are_named(tables, table, column, value, reason):
    frame = getattr(tables, table).copy()
    if isinstance(value, str) and column == "created_at":
        frame[column] = frame[column].astype(str)
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    broken = dataclasses.replace(tables, **{table: frame})
    with pytest.raises(CRMValidationError) as caught:
        validate_crm(broken)
    problems = [p for p in caught.value.report.problems if p.table == table]
    assert [(p.row, p.field, str(p.reason)) for p in problems] == [(3, column, reason)]
    assert table in str(caught.value) and column in str(caught.value)
