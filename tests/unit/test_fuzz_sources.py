"""Hostile CRM exports (issue 19 item 7): hypothesis puts one hostile cell (NaN/inf, huge or NUL-holding text, a
BOM, a wrong type, a formula, a line break) into a valid CSV or Parquet table, or damages a whole file, and reads it
through the real file door (`read_table_file` + the contract's `check_table`, and a few times through the whole
`DirectorySource`). Every outcome is either accepted rows or an error that names the table, the file or the row and
field; never a raw pandas/pyarrow exception. The export directory is never written to.

Why the table-level door carries most examples: a whole `DirectorySource.load()` costs ~0.5 s (13 files + pandera),
the table door ~0.05 s, and the table door is where the bytes are parsed; the whole-source test checks the wiring.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fulqrun_ml.data.schemas import CRM_SCHEMAS
from fulqrun_ml.data.simulator import simulate_crm
from fulqrun_ml.data.source_files import SourceError, read_table_file
from fulqrun_ml.data.sources import DirectorySource, write_crm_directory
from fulqrun_ml.data.table_checks import check_table
from fulqrun_ml.data.validation import CRMValidationError
from fulqrun_ml.errors import FulqrunMLError

TABLE = "opportunities"
CONTRACT = CRM_SCHEMAS[TABLE]
FAST = settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

HOSTILE_CELLS = st.sampled_from(
    [
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e309",
        "-0",
        "9" * 400,
        "x" * 50_000,
        "a\x00b",
        "\x00",
        "\ufeffclosed_won",
        "=cmd|' /C calc'!A0",
        'he said "hi", then\nleft',
        "\u202eevil",
        "😀" * 50,
        "2024-13-45",
        "not a date",
        "12",
        "true",
        "",
        " ",
        "NULL",
        "../../../etc/passwd",
    ]
) | st.text(max_size=30)


@pytest.fixture(scope="module")
def crm_tables():
    return simulate_crm(n_opportunities=40, n_companies=10, n_reps=5, seed=4).tables


@pytest.fixture(scope="module")
def csv_text(crm_tables) -> str:
    return crm_tables.opportunities.to_csv(index=False)


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _check_outcome(file: Path, row: int, column: str, extracted_at: pd.Timestamp) -> None:
    """The one rule every hostile table must meet: rows accepted, or errors that say where."""
    try:
        frame = read_table_file(file, TABLE, dtype=str, keep_default_na=False, na_values=[""])
    except SourceError as err:
        assert TABLE in str(err) and str(file) in str(err), err
        return
    try:
        typed, problems = check_table(CONTRACT, frame, extracted_at)
    except FulqrunMLError as err:  # a whole-table refusal must still name the table
        assert f"'{TABLE}'" in str(err), err
        return
    for problem in problems:
        assert problem.table == TABLE
        # The rest of the table is the simulator's valid output: whatever is wrong is on the hostile row.
        assert problem.row == row, f"{problem} (hostile cell at row {row}, field {column})"
        assert problem.field is not None, problem
        assert len(str(problem)) < 2_000, "a message must not carry a huge value whole"
    if not problems:
        assert len(typed) == len(frame)


@FAST
@given(cell=HOSTILE_CELLS, column=st.sampled_from(list(CONTRACT.columns)), row=st.integers(0, 39))
@example(cell="a\x00b", column="value", row=3)
def test_one_hostile_csv_cell_is_accepted_or_located(csv_text, crm_tables, tmp_path_factory, cell, column, row):
    frame = pd.read_csv(io.StringIO(csv_text), dtype=str, keep_default_na=False)
    frame.loc[row, column] = cell
    folder = tmp_path_factory.mktemp("csv")
    file = folder / f"{TABLE}.csv"
    frame.to_csv(file, index=False)
    before = _tree(folder)
    _check_outcome(file, row, column, pd.Timestamp(crm_tables.extracted_at))
    assert _tree(folder) == before


PARQUET_VALUES = st.sampled_from(
    [math.nan, math.inf, -math.inf, 10**18, -1, 3.5, True, "x" * 50_000, "a\x00b", b"\xff"]
)


@FAST
@given(value=PARQUET_VALUES, column=st.sampled_from(list(CONTRACT.columns)), row=st.integers(0, 39))
def test_one_hostile_parquet_value_of_another_type_is_accepted_or_located(
    crm_tables, tmp_path_factory, value, column, row
):
    """Parquet carries types: a column of mixed Python objects is written as what pyarrow can make of it (or the
    column is stored as text), then read with the contract's types."""
    frame = crm_tables.opportunities.copy().astype(object)
    frame.loc[row, column] = value
    folder = tmp_path_factory.mktemp("parquet")
    file = folder / f"{TABLE}.parquet"
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        table = pa.Table.from_pandas(frame.astype({column: str}), preserve_index=False)
    pq.write_table(table, file)
    before = _tree(folder)
    _check_outcome(file, row, column, pd.Timestamp(crm_tables.extracted_at))
    assert _tree(folder) == before


WHOLE_FILE_DAMAGE = st.sampled_from(
    [
        lambda b: b"\xef\xbb\xbf" + b,  # a UTF-8 byte-order mark
        lambda b: b.replace(b",", b"\x00", 3),  # NUL bytes where separators were
        lambda b: b[: len(b) // 2],  # truncated mid-row
        lambda b: b"\x00" * 64,
        lambda b: b.replace(b"\n", b"\r", 5),
        lambda b: b.split(b"\n", 1)[1],  # no header row
        lambda b: b + b'"unterminated,quote\n',
        lambda b: b"\xff\xfe" + b.decode().encode("utf-16-le"),  # UTF-16
        lambda b: b"PAR1" + b[:100],
    ]
)


@settings(max_examples=9, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(damage=WHOLE_FILE_DAMAGE)
def test_a_damaged_csv_file_is_read_or_refused_naming_the_file(csv_text, crm_tables, tmp_path_factory, damage):
    folder = tmp_path_factory.mktemp("damaged")
    file = folder / f"{TABLE}.csv"
    file.write_bytes(damage(csv_text.encode()))
    before = _tree(folder)
    try:
        frame = read_table_file(file, TABLE, dtype=str, keep_default_na=False, na_values=[""])
        _, problems = check_table(CONTRACT, frame, pd.Timestamp(crm_tables.extracted_at))
    except SourceError as err:
        assert TABLE in str(err) and str(file) in str(err), err
    except FulqrunMLError as err:
        assert f"'{TABLE}'" in str(err), err
    else:
        assert all(p.table == TABLE for p in problems)
    assert _tree(folder) == before


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(cell=HOSTILE_CELLS, table=st.sampled_from(["users", "companies", "opportunities", "activities"]))
def test_the_whole_directory_source_refuses_naming_table_and_row_and_writes_nothing(
    crm_tables, tmp_path_factory, cell, table
):
    folder = tmp_path_factory.mktemp("export")
    write_crm_directory(crm_tables, folder, "csv")
    file = folder / f"{table}.csv"
    frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    frame.loc[1, CRM_SCHEMAS[table].columns[0]] = cell  # the id column: any change breaks the contract
    frame.to_csv(file, index=False)
    before = _tree(folder)
    with pytest.raises((CRMValidationError, SourceError)) as caught:
        DirectorySource(folder).load()
    assert table in str(caught.value)
    if isinstance(caught.value, CRMValidationError):
        assert any(p.table == table and p.row == 1 for p in caught.value.report.problems), str(caught.value)
    assert _tree(folder) == before


@pytest.mark.parametrize("path", ["../../../etc", "/etc/passwd", "export\x00/../x", "../" * 40 + "nope"])
def test_an_export_path_that_is_not_an_export_directory_is_one_source_error(path):
    """`../../../etc` from the repository root is /etc: a directory, but not an export (no tables)."""
    with pytest.raises(SourceError, match=r"does not exist|is missing"):
        DirectorySource(path, extracted_at="2024-01-01").load()
