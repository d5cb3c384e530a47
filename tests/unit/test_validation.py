"""The CRM contract as code: one test per kind of problem, each asserting the table, row, id and field.

Dirty tables are made by editing a small simulated CRM, so every other row stays valid and each test
proves that exactly the planted problem is found.
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from fulqrun_ml.data.contract import TABLE_COLUMNS, CRMTables
from fulqrun_ml.data.schemas import CRM_SCHEMAS, Kind, Reason
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.simulator_dirt import inject_dirt
from fulqrun_ml.data.table_checks import Problem
from fulqrun_ml.data.validation import CRMValidationError, check_contract, validate_crm
from fulqrun_ml.data.vocabulary import RELATED_TABLE_OF
from fulqrun_ml.errors import DataContractError

MISSING_UUID = "00000000-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def crm() -> CRMTables:
    return simulate_crm(n_opportunities=60, n_companies=15, n_reps=6, seed=5).tables


def edit(tables: CRMTables, name: str, changes: dict[tuple[int, str], object]) -> CRMTables:
    """A copy of `tables` with cells of table `name` replaced ((row, column) -> value)."""
    frame = tables.table(name).copy()
    for column in {c for _, c in changes}:
        frame[column] = frame[column].astype(object)
    for (row, column), value in changes.items():
        frame.at[row, column] = value
    return dataclasses.replace(tables, **{name: frame})


def problems(tables: CRMTables) -> list[Problem]:
    with pytest.raises(CRMValidationError) as info:
        validate_crm(tables, on_error="fail")
    return info.value.report.problems


def only_problem(tables: CRMTables) -> tuple[Problem, str]:
    """The one planted problem (rows that point at the rejected row are reported as its consequences)."""
    with pytest.raises(CRMValidationError) as info:
        validate_crm(tables, on_error="fail")
    found = [p for p in info.value.report.problems if p.reason is not Reason.PARENT_REJECTED]
    assert len(found) == 1, [str(p) for p in found]
    return found[0], str(info.value)


def assert_names(problem: Problem, message: str, tables: CRMTables, table: str, row: int, field: str) -> None:
    record_column = CRM_SCHEMAS[table].record_id_column
    assert (problem.table, problem.row, problem.field) == (table, row, field)
    assert problem.record_id == str(tables.table(table)[record_column].iloc[row]).lower()
    assert f"{table} row {row}" in message and f"field '{field}'" in message and problem.record_id in message


def test_schemas_cover_every_contract_column():
    assert set(CRM_SCHEMAS) == set(TABLE_COLUMNS)
    for name, contract in CRM_SCHEMAS.items():
        assert contract.columns == TABLE_COLUMNS[name]


def test_simulator_output_validates_cleanly(tiny_crm):
    result = validate_crm(tiny_crm.tables)
    assert result.report.ok and result.report.counts() == {}
    for name in TABLE_COLUMNS:
        assert len(result.tables.table(name)) == len(tiny_crm.tables.table(name)), name
    opps = result.tables.opportunities
    assert str(opps["created_at"].dtype) == "datetime64[us, UTC]"
    assert opps["value"].dtype == "float64" and str(opps["meddpicc_score"].dtype) == "Int64"
    check_contract(tiny_crm.tables)  # the skeleton's entry point delegates to the same validation


def test_missing_column_is_named_and_cannot_be_quarantined(crm, tmp_path):
    broken = dataclasses.replace(crm, opportunities=crm.opportunities.drop(columns=["stage"]))
    problem, message = problems(broken)[0], ""
    with pytest.raises(CRMValidationError) as info:
        validate_crm(broken, on_error="quarantine", quarantine_dir=tmp_path)
    message = str(info.value)
    assert (problem.table, problem.field, problem.reason) == ("opportunities", "stage", Reason.MISSING_COLUMN)
    assert "opportunities" in message and "field 'stage'" in message and "missing_column" in message


@pytest.mark.parametrize(
    ("table", "column", "bad", "kind"),
    [
        ("opportunities", "value", "lots", Kind.MONEY),
        ("opportunities", "created_at", "not a date", Kind.TIMESTAMP),
        ("companies", "employee_count", 3.5, Kind.INTEGER),  # pandas cannot say which row: probed per value
    ],
)
def test_wrong_type_names_row_and_field(crm, table, column, bad, kind):
    dirty = edit(crm, table, {(2, column): bad})
    problem, message = only_problem(dirty)
    assert problem.reason is Reason.WRONG_TYPE and problem.value == str(bad)
    assert f"cannot be read as {kind}" in message
    assert_names(problem, message, crm, table, 2, column)


@pytest.mark.parametrize(
    ("table", "column", "bad"),
    [
        ("opportunities", "stage", "Closed Won"),
        ("opportunities", "peak_stage", "closing"),
        ("users", "role", "ceo"),
        ("leads", "status", "hot"),
        ("activities", "type", "fax"),
        ("activities", "related_type", "invoice"),
        ("stage_history", "to_stage", "won"),
    ],
)
def test_unknown_enum_value_is_named(crm, table, column, bad):
    problem, message = only_problem(edit(crm, table, {(1, column): bad}))
    assert problem.reason is Reason.UNKNOWN_VALUE and problem.value == bad
    assert_names(problem, message, crm, table, 1, column)
    assert "allowed values" in message


def test_id_that_is_not_a_uuid(crm):
    problem, message = only_problem(edit(crm, "opportunities", {(3, "contact_id"): "rep-42"}))
    assert (problem.reason, problem.value) == (Reason.INVALID_ID, "rep-42")  # reported once, not also as dangling
    assert_names(problem, message, crm, "opportunities", 3, "contact_id")
    assert "must be a UUID" in message


def test_duplicate_id_keeps_the_first_row(crm):
    first_id = crm.companies["id"].iloc[4]
    dirty = edit(crm, "companies", {(9, "id"): first_id})
    found = problems(dirty)
    duplicate = [p for p in found if p.reason is Reason.DUPLICATE_ID]
    assert [(p.table, p.row, p.field, p.record_id) for p in duplicate] == [("companies", 9, "id", first_id)]
    # the row that lost its id orphans what pointed at it: reported too, never silently kept
    orphaned = {p.table for p in found if p.reason is Reason.DANGLING_FOREIGN_KEY}
    assert "contacts" in orphaned


def test_dangling_foreign_key_is_named(crm):
    problem, message = only_problem(edit(crm, "opportunities", {(7, "company_id"): MISSING_UUID}))
    assert problem.reason is Reason.DANGLING_FOREIGN_KEY and problem.value == MISSING_UUID
    assert_names(problem, message, crm, "opportunities", 7, "company_id")
    assert "no such id in companies" in message


@pytest.mark.parametrize("related_type", ["opportunity", "lead"])
def test_dangling_polymorphic_reference(crm, related_type):
    row = int((crm.activities["related_type"] == related_type).to_numpy().nonzero()[0][0])
    problem, message = only_problem(edit(crm, "activities", {(row, "related_id"): MISSING_UUID}))
    assert problem.reason is Reason.DANGLING_FOREIGN_KEY
    assert_names(problem, message, crm, "activities", row, "related_id")
    assert f"no such id in {RELATED_TABLE_OF[related_type]}" in message


def test_children_of_a_rejected_row_are_rejected_too(crm, tmp_path):
    company_id = crm.companies["id"].iloc[0]
    dirty = edit(crm, "companies", {(0, "annual_revenue"): -1.0})
    result = validate_crm(dirty, on_error="quarantine", quarantine_dir=tmp_path)
    by_table = result.report.counts()
    assert by_table["companies"] == {"negative_money": 1}
    assert by_table["contacts"] == {"parent_rejected": 1}
    assert company_id not in set(result.tables.opportunities["company_id"])
    # the clean tables hold no dangling reference, all the way down
    validate_crm(result.tables)


def test_future_timestamp_is_named(crm):
    late = crm.extracted_at + pd.Timedelta(hours=1)
    problem, message = only_problem(edit(crm, "activities", {(11, "created_at"): late}))
    assert problem.reason is Reason.FUTURE_TIMESTAMP
    assert_names(problem, message, crm, "activities", 11, "created_at")
    assert "later than the extraction time" in message


def test_update_before_creation_is_named(crm):
    early = crm.opportunities["created_at"].iloc[3] - pd.Timedelta(days=1)
    problem, message = only_problem(edit(crm, "opportunities", {(3, "updated_at"): early}))
    assert problem.reason is Reason.BEFORE_CREATION
    assert_names(problem, message, crm, "opportunities", 3, "updated_at")


def test_stage_change_before_the_deal_existed(crm):
    history = crm.stage_history
    deal = history["opportunity_id"].iloc[0]
    created = crm.opportunities.set_index("id").loc[deal, "created_at"]
    problem, message = only_problem(edit(crm, "stage_history", {(0, "changed_at"): created - pd.Timedelta(days=2)}))
    assert problem.reason is Reason.BEFORE_CREATION and problem.record_id == deal
    assert "stage_history row 0" in message and "field 'changed_at'" in message


def test_close_date_earlier_the_same_day_is_fine(crm):
    created = crm.opportunities["created_at"].iloc[0]
    validate_crm(edit(crm, "opportunities", {(0, "close_date"): created.floor("D")}))


@pytest.mark.parametrize(("table", "column"), [("opportunities", "value"), ("companies", "annual_revenue")])
def test_negative_money_is_named(crm, table, column):
    problem, message = only_problem(edit(crm, table, {(4, column): -250.0}))
    assert problem.reason is Reason.NEGATIVE_MONEY and problem.value == "-250.0"
    assert_names(problem, message, crm, table, 4, column)


@pytest.mark.parametrize(("column", "bad"), [("probability", 1.5), ("meddpicc_score", 150), ("value", float("inf"))])
def test_out_of_range_is_named(crm, column, bad):
    problem, message = only_problem(edit(crm, "opportunities", {(6, column): bad}))
    assert problem.reason is Reason.OUT_OF_RANGE
    assert_names(problem, message, crm, "opportunities", 6, column)


def test_missing_required_value_is_named(crm):
    problem, message = only_problem(edit(crm, "opportunities", {(8, "assigned_to"): None}))
    assert problem.reason is Reason.MISSING_VALUE
    assert_names(problem, message, crm, "opportunities", 8, "assigned_to")


def test_every_problem_is_reported_with_a_readable_summary(crm):
    dirty = edit(
        crm,
        "opportunities",
        {(0, "stage"): "won", (0, "value"): -1.0, (1, "probability"): 2.0, (2, "assigned_to"): None},
    )
    with pytest.raises(DataContractError) as info:  # callers catching the base class still work
        validate_crm(dirty)
    report = info.value.report
    found = {(p.row, p.field, p.reason) for p in report.problems if p.table == "opportunities"}
    assert found == {
        (0, "stage", Reason.UNKNOWN_VALUE),
        (0, "value", Reason.NEGATIVE_MONEY),
        (1, "probability", Reason.OUT_OF_RANGE),
        (2, "assigned_to", Reason.MISSING_VALUE),
    }
    consequences = [p for p in report.problems if p.table != "opportunities"]
    assert consequences and {p.reason for p in consequences} == {Reason.PARENT_REJECTED}
    summary = str(info.value)
    assert summary.startswith(f"CRM data contract: {len(report.problems)} problem(s)")
    assert "field 'stage': unknown_value 'won'" in summary
    assert "opportunities: missing_value x1, negative_money x1, out_of_range x1, unknown_value x1" in summary


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_quarantine_round_trip(crm, tmp_path, fmt):
    dirty = edit(crm, "opportunities", {(2, "value"): "lots", (5, "stage"): "Closed Won"})
    dirty = edit(dirty, "activities", {(3, "type"): "fax"})
    result = validate_crm(dirty, on_error="quarantine", quarantine_dir=tmp_path, quarantine_format=fmt)
    report = result.report

    # nothing dropped silently: every input row is either kept or in the quarantine file with reasons
    for name in TABLE_COLUMNS:
        assert len(result.tables.table(name)) + report.rows_rejected[name] == len(dirty.table(name)), name
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    rejected = read(tmp_path / f"opportunities.rejected.{fmt}")
    assert rejected["_row"].tolist()[:2] == [2, 5]
    assert rejected["value"].astype(str).iloc[0] == "lots"  # the row as read, for fixing and reloading
    assert rejected["_reasons"].iloc[0] == "wrong_type(value)"
    assert rejected["_reasons"].iloc[1] == "unknown_value(stage)"
    kept_ids = set(result.tables.opportunities["id"])
    assert kept_ids.isdisjoint(rejected["id"]) and kept_ids | set(rejected["id"]) == set(dirty.opportunities["id"])

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["counts"] == report.counts()
    assert saved["counts"]["activities"]["unknown_value"] == 1
    assert saved["rows_rejected"]["opportunities"] == 2 + report.counts()["opportunities"].get("parent_rejected", 0)
    assert len(read(tmp_path / f"problems.{fmt}")) == len(report.problems)
    validate_crm(result.tables)  # what is returned is clean


def test_quarantine_of_clean_data_writes_an_empty_report(crm, tmp_path):
    result = validate_crm(crm, on_error="quarantine", quarantine_dir=tmp_path)
    assert result.report.ok
    assert json.loads((tmp_path / "report.json").read_text())["n_problems"] == 0
    assert not list(tmp_path.glob("*.rejected.*"))


def test_canonical_types_utc_and_lowercase_ids(crm):
    naive = crm.opportunities["created_at"].dt.tz_localize(None)
    upper = crm.opportunities["id"].str.upper()
    result = validate_crm(dataclasses.replace(crm, opportunities=crm.opportunities.assign(created_at=naive, id=upper)))
    opps = result.tables.opportunities
    assert (opps["created_at"] == crm.opportunities["created_at"].dt.floor("us")).all()  # naive = UTC
    assert opps["id"].tolist() == crm.opportunities["id"].str.lower().tolist()


def test_bad_arguments_are_named(crm):
    with pytest.raises(DataContractError, match="on_error"):
        validate_crm(crm, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(DataContractError, match="quarantine_dir"):
        validate_crm(crm, on_error="quarantine")
    with pytest.raises(DataContractError, match="extracted_at"):
        validate_crm(dataclasses.replace(crm, extracted_at=pd.NaT))


def test_the_simulators_dirt_is_caught_and_quarantined(crm, tmp_path):
    dirty = inject_dirt(crm, rate=0.1, seed=3)
    result = validate_crm(dirty, on_error="quarantine", quarantine_dir=tmp_path)
    counts = result.report.counts()
    assert counts["opportunities"]["unknown_value"] > 0  # "PROPOSAL" for "proposal"
    assert counts["opportunities"]["duplicate_id"] > 0
    assert counts["opportunities"]["before_creation"] > 0  # late-arriving updates
    assert counts["activities"]["unknown_value"] > 0  # "meetting"
    kept_and_rejected = len(result.tables.opportunities) + result.report.rows_rejected["opportunities"]
    assert kept_and_rejected == len(dirty.opportunities)
    validate_crm(result.tables)


def test_an_export_without_activity_direction_loads_as_unknown(crm):
    without = dataclasses.replace(crm, activities=crm.activities.drop(columns="direction"))
    loaded = validate_crm(without, on_error="fail").tables.activities
    assert list(loaded.columns) == list(TABLE_COLUMNS["activities"])
    assert (loaded["direction"] == "unknown").all() and len(loaded) == len(crm.activities)
    blank = edit(crm, "activities", {(0, "direction"): None})
    assert validate_crm(blank, on_error="fail").tables.activities.at[0, "direction"] == "unknown"
    assert "direction" in crm.activities.columns  # the caller's frame is not modified


def test_unknown_activity_direction_is_named(crm):
    tables = edit(crm, "activities", {(2, "direction"): "sideways"})
    problem, message = only_problem(tables)
    assert_names(problem, message, tables, "activities", 2, "direction")
    assert problem.reason is Reason.UNKNOWN_VALUE
