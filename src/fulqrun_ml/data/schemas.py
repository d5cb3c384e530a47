"""Typed schemas for every CRM table (../shared/CRM_DATA.md), declared once and compiled to pandera.

Each table is a `TableContract`: its fields with a kind (id, text, category, timestamp, money, ...),
nullability, allowed values and foreign keys, plus the table-level rules (which timestamp is the creation
time, which may not precede it). One declaration serves three users:

- `type_schema()`: a pandera schema that only coerces every column to its canonical dtype, so a value
  that cannot be read as its type (a word in `value`, a bad date) is found per row;
- `rule_schema(extracted_at)`: the pandera schema with every per-table check (enumerations, UUID ids,
  duplicate ids, negative money, ranges, timestamps after extraction or before creation);
- the PostgreSQL loader (`sources.py`), which derives column types (uuid, timestamptz, numeric, ...).

Foreign keys cross tables, which pandera does not model; `validation.py` checks them from `references`.
Canonical dtypes: ids and text as pandas `str`, timestamps `datetime64[us, UTC]` (PostgreSQL's resolution;
finer digits are truncated, naive timestamps are read as UTC as the contract says), money and fractions
`float64`, counts nullable `Int64`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.engines import pandas_engine

from fulqrun_ml.data.contract import (
    ACTIVITY_DIRECTIONS,
    ACTIVITY_TYPES,
    LEAD_STATUSES,
    MEDDPICC_FIELDS,
    PEAK_STAGES,
    RELATED_TABLE_OF,
    RELATED_TYPES,
    STAGES,
    USER_ROLES,
)

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UTC_TIMESTAMP = pandas_engine.DateTime(unit="us", tz="UTC", to_datetime_kwargs={"format": "ISO8601", "utc": True})


class Kind(StrEnum):
    """What a column holds; decides its dtype, its default checks and its PostgreSQL type."""

    ID = "id"  # a UUID string
    TEXT = "text"  # free text or a name
    CATEGORY = "category"  # a label from a set (closed when `allowed` is given)
    TIMESTAMP = "timestamp"  # a UTC instant
    MONEY = "money"  # a non-negative amount in the organization's currency
    FRACTION = "fraction"  # a number in [0, 1]
    INTEGER = "integer"  # a whole number (nullable)
    NUMBER = "number"  # any finite real number


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
POSTGRES_TYPE = {
    Kind.ID: "uuid",
    Kind.TEXT: "text",
    Kind.CATEGORY: "text",
    Kind.TIMESTAMP: "timestamptz",
    Kind.MONEY: "numeric",
    Kind.FRACTION: "double precision",
    Kind.INTEGER: "bigint",
    Kind.NUMBER: "double precision",
}


class Reason(StrEnum):
    """Why a value or row breaks the contract. Reports and quarantine files count problems by these."""

    MISSING_TABLE = "missing_table"
    MISSING_COLUMN = "missing_column"
    WRONG_TYPE = "wrong_type"
    MISSING_VALUE = "missing_value"
    INVALID_ID = "invalid_id"
    UNKNOWN_VALUE = "unknown_value"
    DUPLICATE_ID = "duplicate_id"
    DANGLING_FOREIGN_KEY = "dangling_foreign_key"
    PARENT_REJECTED = "parent_rejected"
    FUTURE_TIMESTAMP = "future_timestamp"
    BEFORE_CREATION = "before_creation"
    NEGATIVE_MONEY = "negative_money"
    OUT_OF_RANGE = "out_of_range"


@dataclass(frozen=True)
class Field:
    """One column of a CRM table.

    `references` names the parent table whose `id` this column points to. `event_time` marks timestamps
    that record something that happened, so they cannot be later than the extraction (unlike
    `close_date` or `due_date`, which may lie in the future by design).
    """

    name: str
    kind: Kind
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    references: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    event_time: bool = False


@dataclass(frozen=True)
class NotBefore:
    """Row rule: `later` may not precede `earlier` (e.g. updated_at before created_at).

    With `by_day`, `later` is a calendar date compared with the day of `earlier`, because CRMs store
    close dates at midnight while the deal was created later that same day.
    """

    later: str
    earlier: str
    by_day: bool = False


@dataclass(frozen=True)
class TableContract:
    """The typed contract of one CRM table, compiled to pandera schemas on demand."""

    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ("id",)
    not_before: tuple[NotBefore, ...] = ()
    # Activities point at a lead, opportunity, company or contact: (type column, id column, type -> table).
    polymorphic: tuple[str, str, dict[str, str]] | None = None
    # Rows that may not precede their parent's creation: (our time, our fk column, parent time column).
    after_parent: tuple[tuple[str, str, str], ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"table '{self.name}' has no field '{name}'")

    @property
    def record_id_column(self) -> str:
        """The column that identifies a row in problem reports (`id`, or the owning deal for history)."""
        return self.key[0]

    def type_schema(self) -> pa.DataFrameSchema:
        """Coerce every contract column to its canonical dtype; no other checks (nulls allowed)."""
        columns = {f.name: pa.Column(PANDAS_DTYPE[f.kind], nullable=True, required=True) for f in self.fields}
        return pa.DataFrameSchema(columns, coerce=True, strict=False, name=self.name)

    def rule_schema(self, extracted_at: pd.Timestamp) -> pa.DataFrameSchema:
        """Every per-table rule, for frames already typed by `type_schema`: no dtype is declared here,
        since checking it again costs more than all the rules together."""
        single_key = len(self.key) == 1
        columns = {
            f.name: pa.Column(
                None,
                checks=_field_checks(f, extracted_at),
                nullable=f.nullable,
                unique=single_key and f.name == self.key[0],
                report_duplicates="exclude_first",
            )
            for f in self.fields
        }
        return pa.DataFrameSchema(
            columns,
            checks=[_not_before_check(rule) for rule in self.not_before],
            unique=None if single_key else list(self.key),
            report_duplicates="exclude_first",
            coerce=False,
            strict=False,
            name=self.name,
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


def _id(name: str = "id", references: str | None = None, nullable: bool = False) -> Field:
    return Field(name, Kind.ID, nullable=nullable, references=references)


def _created() -> Field:
    return Field("created_at", Kind.TIMESTAMP, event_time=True)


CRM_SCHEMAS: dict[str, TableContract] = {
    "organizations": TableContract(
        "organizations",
        (_id(), Field("name", Kind.TEXT), _created()),
    ),
    "users": TableContract(
        "users",
        (
            _id(),
            _id("organization_id", "organizations"),
            Field("role", Kind.CATEGORY, allowed=USER_ROLES),
            _id("manager_id", "users", nullable=True),
            Field("region", Kind.CATEGORY, nullable=True),
            _created(),
        ),
    ),
    "companies": TableContract(
        "companies",
        (
            _id(),
            _id("organization_id", "organizations"),
            Field("name", Kind.TEXT),
            Field("industry", Kind.CATEGORY, nullable=True),
            Field("size", Kind.CATEGORY, nullable=True),
            Field("annual_revenue", Kind.MONEY, nullable=True),
            Field("employee_count", Kind.INTEGER, nullable=True, minimum=0),
            Field("country", Kind.CATEGORY, nullable=True),
            _created(),
        ),
    ),
    "contacts": TableContract(
        "contacts",
        (
            _id(),
            _id("company_id", "companies"),
            Field("title", Kind.TEXT, nullable=True),
            Field("email", Kind.TEXT, nullable=True),
            Field("phone", Kind.TEXT, nullable=True),
            _created(),
        ),
    ),
    "leads": TableContract(
        "leads",
        (
            _id(),
            _id("organization_id", "organizations"),
            _id("company_id", "companies", nullable=True),
            Field("source", Kind.CATEGORY, nullable=True),
            Field("status", Kind.CATEGORY, allowed=LEAD_STATUSES),
            Field("score", Kind.NUMBER, nullable=True),
            _id("assigned_to", "users", nullable=True),
            _created(),
            Field("updated_at", Kind.TIMESTAMP, nullable=True, event_time=True),
        ),
        not_before=(NotBefore("updated_at", "created_at"),),
    ),
    "opportunities": TableContract(
        "opportunities",
        (
            _id(),
            _id("organization_id", "organizations"),
            _id("company_id", "companies"),
            _id("contact_id", "contacts", nullable=True),
            _id("assigned_to", "users"),
            Field("stage", Kind.CATEGORY, allowed=STAGES),
            Field("peak_stage", Kind.CATEGORY, nullable=True, allowed=PEAK_STAGES),
            Field("value", Kind.MONEY, nullable=True),
            Field("probability", Kind.FRACTION, nullable=True),
            Field("close_date", Kind.TIMESTAMP, nullable=True),
            _created(),
            Field("updated_at", Kind.TIMESTAMP, nullable=True, event_time=True),
            *(Field(name, Kind.TEXT, nullable=True) for name in MEDDPICC_FIELDS),
            Field("meddpicc_score", Kind.INTEGER, nullable=True, minimum=0, maximum=100),
        ),
        not_before=(NotBefore("updated_at", "created_at"), NotBefore("close_date", "created_at", by_day=True)),
    ),
    "activities": TableContract(
        "activities",
        (
            _id(),
            _id("organization_id", "organizations"),
            Field("type", Kind.CATEGORY, allowed=ACTIVITY_TYPES),
            Field("status", Kind.CATEGORY, nullable=True),
            Field("subject", Kind.TEXT, nullable=True),
            Field("description", Kind.TEXT, nullable=True),
            Field("related_type", Kind.CATEGORY, allowed=RELATED_TYPES),
            _id("related_id"),
            _id("created_by", "users"),
            Field("due_date", Kind.TIMESTAMP, nullable=True),
            _created(),
            # Optional in exports: validation fills a missing column or empty cell with "unknown" first.
            Field("direction", Kind.CATEGORY, allowed=ACTIVITY_DIRECTIONS),
        ),
        polymorphic=("related_type", "related_id", RELATED_TABLE_OF),
    ),
    "stage_history": TableContract(
        "stage_history",
        (
            _id("opportunity_id", "opportunities"),
            Field("from_stage", Kind.CATEGORY, nullable=True, allowed=STAGES),
            Field("to_stage", Kind.CATEGORY, allowed=STAGES),
            Field("changed_at", Kind.TIMESTAMP, event_time=True),
        ),
        key=("opportunity_id", "to_stage", "changed_at"),
        after_parent=(("changed_at", "opportunity_id", "created_at"),),
    ),
}
# Parents before children: the order to validate foreign keys and to load a database.
LOAD_ORDER: tuple[str, ...] = (
    "organizations",
    "users",
    "companies",
    "contacts",
    "leads",
    "opportunities",
    "activities",
    "stage_history",
)
