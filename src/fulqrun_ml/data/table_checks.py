"""Each CRM table's typed contract (`schemas.py`) compiled to pandera and run on one table.

Two schemas per table: `type_schema` only coerces every column to its canonical dtype, so a value that cannot
be read as its type (a word in `value`, a bad date) is found per row; `rule_schema(extracted_at)` holds every
per-table rule (enumerations, UUID ids, duplicate ids, negative money, ranges, timestamps after extraction or
before creation). `check_table` runs both and turns pandera's failure cases into `Problem`s naming the table,
row, id and field. Checks across tables (foreign keys) and the report are `validation.py`'s.

Canonical dtypes: ids and text as pandas `str`, timestamps `datetime64[us, UTC]` (PostgreSQL's resolution;
finer digits are truncated, naive timestamps are read as UTC as the contract says), money and fractions
`float64`, counts nullable `Int64`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.errors
import pandera.pandas as pa
from pandera.engines import pandas_engine

from fulqrun_ml.data.pii import scrub_text
from fulqrun_ml.data.schemas import UUID_PATTERN, Field, Kind, NotBefore, Reason, TableContract
from fulqrun_ml.errors import DataContractError

UTC_TIMESTAMP = pandas_engine.DateTime(unit="us", tz="UTC", to_datetime_kwargs={"format": "ISO8601", "utc": True})

PANDAS_DTYPE = {
    Kind.ID: str,
    Kind.TEXT: str,
    Kind.CATEGORY: str,
    Kind.TIMESTAMP: UTC_TIMESTAMP,
    Kind.MONEY: "float64",
    Kind.FRACTION: "float64",
    Kind.INTEGER: "Int64",
    Kind.NUMBER: "float64",
}


def type_schema(contract: TableContract) -> pa.DataFrameSchema:
    """Coerce every contract column to its canonical dtype; no other checks (nulls allowed)."""
    columns = {f.name: pa.Column(PANDAS_DTYPE[f.kind], nullable=True, required=True) for f in contract.fields}
    return pa.DataFrameSchema(columns, coerce=True, strict=False, name=contract.name)


def rule_schema(contract: TableContract, extracted_at: pd.Timestamp) -> pa.DataFrameSchema:
    """Every per-table rule, for frames already typed by `type_schema`: no dtype is declared here,
    since checking it again costs more than all the rules together."""
    single_key = len(contract.key) == 1
    columns = {
        f.name: pa.Column(
            None,
            checks=_field_checks(f, extracted_at),
            nullable=f.nullable,
            unique=single_key and f.name == contract.key[0],
            report_duplicates="exclude_first",
        )
        for f in contract.fields
    }
    return pa.DataFrameSchema(
        columns,
        checks=[_not_before_check(rule) for rule in contract.not_before],
        unique=None if single_key else list(contract.key),
        report_duplicates="exclude_first",
        coerce=False,
        strict=False,
        name=contract.name,
    )


def check_name(reason: Reason, field: str | None = None) -> str:
    """Checks are named `reason` or `reason|field`, so a failure maps back to a reason and a column."""
    return str(reason) if field is None else f"{reason}|{field}"


def parse_check_name(name: str | None) -> tuple[Reason | None, str | None]:
    if not name:
        return None, None
    reason, _, field = name.partition("|")
    try:
        return Reason(reason), field or None
    except ValueError:
        return None, None


def _field_checks(f: Field, extracted_at: pd.Timestamp) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if f.kind is Kind.ID:
        checks.append(
            pa.Check.str_matches(UUID_PATTERN, name=check_name(Reason.INVALID_ID), error="must be a UUID string")
        )
    if f.allowed is not None:
        checks.append(
            pa.Check.isin(f.allowed, name=check_name(Reason.UNKNOWN_VALUE), error=f"allowed values: {list(f.allowed)}")
        )
    if f.kind in (Kind.MONEY, Kind.FRACTION, Kind.NUMBER):
        checks.append(
            pa.Check(lambda s: np.isfinite(s), name=check_name(Reason.OUT_OF_RANGE), error="must be a finite number")
        )
    if f.kind is Kind.MONEY:
        checks.append(pa.Check.ge(0, name=check_name(Reason.NEGATIVE_MONEY), error="money may not be negative"))
    low, high = (0.0, 1.0) if f.kind is Kind.FRACTION else (f.minimum, f.maximum)
    if low is not None and high is not None:
        checks.append(
            pa.Check.in_range(low, high, name=check_name(Reason.OUT_OF_RANGE), error=f"must lie in [{low}, {high}]")
        )
    elif low is not None:
        checks.append(pa.Check.ge(low, name=check_name(Reason.OUT_OF_RANGE), error=f"must be >= {low}"))
    if f.event_time:
        checks.append(
            pa.Check.le(
                extracted_at,
                name=check_name(Reason.FUTURE_TIMESTAMP),
                error=f"later than the extraction time {extracted_at.isoformat()}",
            )
        )
    return checks


def _not_before_check(rule: NotBefore) -> pa.Check:
    def holds(frame: pd.DataFrame) -> pd.Series:
        later, earlier = frame[rule.later], frame[rule.earlier]
        if rule.by_day:
            earlier = earlier.dt.floor("D")
        return later.isna() | earlier.isna() | (later >= earlier)

    return pa.Check(
        holds,
        name=check_name(Reason.BEFORE_CREATION, rule.later),
        error=f"'{rule.later}' is before '{rule.earlier}'",
    )


@dataclass(frozen=True)
class Problem:
    """One contract violation. `row` is the 0-based position in the table as given (None: whole table);
    `record_id` is the row's `id` (for stage_history, its opportunity_id)."""

    table: str
    reason: Reason
    field: str | None
    row: int | None
    record_id: str | None
    value: str | None
    detail: str

    def __str__(self) -> str:
        where = self.table if self.row is None else f"{self.table} row {self.row}"
        if self.record_id:
            where += f" (id {self.record_id})"
        if self.field:
            where += f" field '{self.field}'"
        value = "" if self.value is None else f" {self.value!r}"
        return f"{where}: {self.reason}{value} ({self.detail})"


def show_value(value: Any) -> str | None:
    """A failing value as text for messages: missing -> None, truncated, emails and phone numbers scrubbed
    (messages get logged). The name heuristic is off here: it would hide values like 'Closed Won'."""
    if is_missing(value):
        return None
    text = value.isoformat() if isinstance(value, pd.Timestamp) else str(value)
    text = scrub_text(text, detect_names=False)
    return text if len(text) <= 80 else text[:77] + "..."


def record_id(contract: TableContract, frame: pd.DataFrame, row: int | None) -> str | None:
    if row is None:
        return None
    return show_value(frame[contract.record_id_column].iloc[row])


def is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def check_table(
    contract: TableContract, frame: pd.DataFrame, extracted_at: pd.Timestamp
) -> tuple[pd.DataFrame, list[Problem]]:
    """Type the table (finding unreadable values per row), then run its rules. Returns typed frame, problems."""
    typed, unreadable = _typed(contract, frame)
    problems: list[Problem] = []
    for column, rows in unreadable.items():
        kind = contract.field(column).kind
        for row in rows:
            problems.append(
                Problem(
                    contract.name,
                    Reason.WRONG_TYPE,
                    column,
                    row,
                    record_id(contract, frame, row),
                    show_value(frame[column].iloc[row]),
                    f"cannot be read as {kind} ({PANDAS_DTYPE[kind]})",
                )
            )
    extras = [c for c in typed.columns if c not in contract.columns]
    typed = typed[[*contract.columns, *extras]]  # contract order, so every source returns the same frame
    for f in contract.fields:
        if f.kind is Kind.ID:
            typed[f.name] = typed[f.name].str.lower()  # UUIDs are case-insensitive; PostgreSQL prints lowercase

    blanked = {(column, row) for column, rows in unreadable.items() for row in rows}
    schema = rule_schema(contract, extracted_at)
    try:
        schema.validate(typed, lazy=True)
    except pandera.errors.SchemaErrors as err:
        problems.extend(_rule_problems(contract, schema, err.failure_cases, frame, blanked))
    return typed, problems


def _typed(contract: TableContract, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, list[int]]]:
    """The frame coerced to canonical dtypes, with unreadable cells blanked, and those cells' rows per column."""
    schema = type_schema(contract)
    try:
        return schema.validate(frame, lazy=True), {}
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
    cases = cases[cases["check"].astype(str).str.startswith(("coerce_dtype", "dtype"))]
    unreadable: dict[str, list[int]] = {}
    for column, group in cases.groupby("column", sort=False):
        column = str(column)
        if group["index"].isna().any():
            # pandas could not say which values failed (e.g. 3.5 for an integer column): probe each one.
            rows = _probe_each_value(frame[column], contract.field(column).kind)
        else:
            rows = sorted({int(i) for i in group["index"]})
        if rows:
            unreadable[column] = rows
    readable = frame.copy()
    for column, rows in unreadable.items():
        values = readable[column].astype(object)
        values.iloc[rows] = None
        readable[column] = values
    try:
        return schema.validate(readable, lazy=True), unreadable
    except pandera.errors.SchemaErrors as err:
        raise DataContractError(f"table '{contract.name}' could not be typed: {err.failure_cases.to_dict()}") from err


def _probe_each_value(values: pd.Series, kind: Kind) -> list[int]:
    dtype = pandas_engine.Engine.dtype(PANDAS_DTYPE[kind])
    failing: set[Any] = set()
    for value in pd.unique(values.dropna().astype(object)):
        try:
            dtype.coerce(pd.Series([value], dtype=object))
        except (TypeError, ValueError, OverflowError, pandera.errors.ParserError):
            failing.add(value)
    mask = values.astype(object).isin(list(failing)) & values.notna()
    return [int(i) for i in mask.to_numpy().nonzero()[0]]


def _rule_problems(
    contract: TableContract,
    schema: Any,
    cases: pd.DataFrame,
    frame: pd.DataFrame,
    blanked: set[tuple[str, int]],
) -> list[Problem]:
    problems: dict[tuple[int | None, str | None, Reason], Problem] = {}
    for case in cases.itertuples(index=False):
        row = None if pd.isna(case.index) else int(case.index)
        column = None if pd.isna(case.column) else str(case.column)
        check = str(case.check)
        if check == "not_nullable":
            if (column, row) in blanked:
                continue  # already reported as wrong_type
            reason, field_name, detail = Reason.MISSING_VALUE, column, "required, but empty"
        elif check in ("field_uniqueness", "multiple_fields_uniqueness"):
            key = ", ".join(contract.key)
            reason, field_name, detail = Reason.DUPLICATE_ID, contract.key[0], f"({key}) seen on an earlier row"
        elif not pd.isna(case.check_number):
            if case.schema_context == "Column":
                rule = schema.columns[column].checks[int(case.check_number)]
            else:
                rule = schema.checks[int(case.check_number)]
            reason, named_field = parse_check_name(rule.name)
            if reason is None:
                raise DataContractError(f"table '{contract.name}': unexpected check failure {case}")
            field_name, detail = named_field or column, str(rule.error)
        else:
            reason, field_name, detail = Reason.WRONG_TYPE, column, f"failed {check}"
        key = (row, field_name, reason)
        if key in problems:
            continue
        value = frame[field_name].iloc[row] if (row is not None and field_name in frame.columns) else None
        problems[key] = Problem(
            contract.name, reason, field_name, row, record_id(contract, frame, row), show_value(value), detail
        )
    return list(problems.values())
