"""Bad CRM exports fail with one located message (file, table, line), never a raw pandas/pyarrow traceback."""

from __future__ import annotations

import dataclasses

import pytest

from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.sources import DirectorySource, SourceError, write_crm_directory
from fulqrun_ml.data.validation import CRMValidationError, validate_crm

SIM_ARGS = {"n_opportunities": 40, "n_companies": 10, "n_reps": 5, "seed": 4}


@pytest.fixture(scope="module")
def tables():
    return simulate_crm(**SIM_ARGS).tables


@pytest.fixture
def export(tables, tmp_path):
    write_crm_directory(tables, tmp_path, "csv")
    return tmp_path


def test_an_empty_csv_names_the_table_and_file(export):
    (export / "companies.csv").write_text("")
    with pytest.raises(SourceError, match=r"table 'companies' \(.*companies\.csv\) is empty: not even a header"):
        DirectorySource(export).load()


def test_a_non_utf8_byte_names_the_file_line_and_row(export):
    path = export / "users.csv"
    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3].replace(b",", b",\xff", 1)  # line 4 = data row 2
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(
        SourceError, match=r"table 'users' .*users\.csv.*byte 0xff .* line 4 \(data row 2\) is not UTF-8"
    ):
        DirectorySource(export).load()


def test_a_corrupt_parquet_names_the_file(tables, tmp_path):
    write_crm_directory(tables, tmp_path, "parquet")
    (tmp_path / "opportunities.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError, match=r"table 'opportunities' \(.*opportunities\.parquet\) cannot be read"):
        DirectorySource(tmp_path).load()


def test_an_empty_parent_table_is_one_problem_not_thousands_of_dangling_keys(tables):
    empty = dataclasses.replace(tables, opportunities=tables.opportunities.iloc[0:0])
    with pytest.raises(CRMValidationError) as caught:
        validate_crm(empty)
    problems = caught.value.report.problems
    assert [(p.table, p.row) for p in problems] == [("opportunities", None)]
    assert "table is empty (0 rows)" in str(caught.value)
    assert "dangling_foreign_key" not in str(caught.value)


def test_an_empty_table_nobody_references_still_loads(tables):
    """Only an empty table that rows point at is refused: a CRM without activities yet is valid."""
    quiet = dataclasses.replace(tables, activities=tables.activities.iloc[0:0])
    assert validate_crm(quiet).report.ok
