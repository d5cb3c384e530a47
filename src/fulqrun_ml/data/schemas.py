"""Typed schemas for every CRM table (../shared/CRM_DATA.md): the one declaration of every table's columns.

Each table is a `TableContract`: its fields with a kind (id, text, category, timestamp, money, ...),
nullability, allowed values and foreign keys, plus the table-level rules (which timestamp is the creation
time, which may not precede it). One declaration serves every user:

- `contract.TABLE_COLUMNS` and `CRMTables`: the column lists, read from here;
- `table_checks.py`: compiles each contract to pandera schemas (one that coerces every column to its
  canonical dtype, one with every per-table rule) that `validation.py` runs;
- the PostgreSQL loader (`sources.py`), which derives column types (uuid, timestamptz, numeric, ...).

This module is plain data (no pandera), so reading the column lists costs nothing. Foreign keys cross tables,
which pandera does not model; `validation.py` checks them from `references`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from fulqrun_ml.data.vocabulary import (
    ACTIVITY_DIRECTIONS,
    ACTIVITY_TYPES,
    LEAD_EVENT_TYPES,
    LEAD_STATUSES,
    LIFECYCLE_STAGES,
    MEDDPICC_FIELDS,
    NOTE_KINDS,
    NOTE_RELATED_TYPES,
    PEAK_STAGES,
    RELATED_TABLE_OF,
    RELATED_TYPES,
    STAGES,
    USER_ROLES,
)

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


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
    """The typed contract of one CRM table (`table_checks.py` compiles it to pandera schemas)."""

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
        """The table's columns in contract order: the one list every reader of the CRM uses."""
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
            # Optional in exports (v3): who the deal competes against and why a lost deal was lost. Open sets,
            # because every organization names its own competitors and reasons; missing -> "unknown".
            Field("competitor", Kind.CATEGORY, nullable=True),
            Field("loss_reason", Kind.CATEGORY, nullable=True),
            # Optional in exports (v4): the product line the deal sells (open set; missing -> "unknown").
            Field("product", Kind.CATEGORY, nullable=True),
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

# Optional event tables: a CRM export may lack them (then they are empty and the features that read them are
# absent, `features/meddpicc_features.py` says so). Why separate from CRM_SCHEMAS: every reader that walks the
# required tables (validation order, CDC, the online mirror) keeps working unchanged on exports without them.
# - meddpicc_events: each change of one MEDDPICC element of a deal (a 0-10 score and/or the rep's text), so the
#   qualification can be read as it stood at any as_of; the opportunities row keeps only the latest value.
# - notes: free-text notes, call summaries and emails on a deal or a lead (may name people: scrub before use).
# - lead_events: what a lead did (site visit, content download, email open or reply, form fill) and when (v6).
OPTIONAL_SCHEMAS: dict[str, TableContract] = {
    "meddpicc_events": TableContract(
        "meddpicc_events",
        (
            _id("opportunity_id", "opportunities"),
            Field("field", Kind.CATEGORY, allowed=MEDDPICC_FIELDS),
            Field("score", Kind.INTEGER, nullable=True, minimum=0, maximum=10),
            Field("text", Kind.TEXT, nullable=True),
            Field("changed_at", Kind.TIMESTAMP, event_time=True),
            _id("changed_by", "users", nullable=True),
        ),
        key=("opportunity_id", "field", "changed_at"),
        after_parent=(("changed_at", "opportunity_id", "created_at"),),
    ),
    "notes": TableContract(
        "notes",
        (
            _id(),
            _id("organization_id", "organizations"),
            Field("related_type", Kind.CATEGORY, allowed=NOTE_RELATED_TYPES),
            _id("related_id"),
            _id("author", "users", nullable=True),
            Field("kind", Kind.CATEGORY, allowed=NOTE_KINDS),
            Field("body", Kind.TEXT),
            _created(),
        ),
        polymorphic=("related_type", "related_id", {t: RELATED_TABLE_OF[t] for t in NOTE_RELATED_TYPES}),
    ),
    "lead_events": TableContract(
        "lead_events",
        (
            _id(),
            _id("organization_id", "organizations"),
            _id("lead_id", "leads"),
            Field("type", Kind.CATEGORY, allowed=LEAD_EVENT_TYPES),
            Field("occurred_at", Kind.TIMESTAMP, event_time=True),
        ),
        after_parent=(("occurred_at", "lead_id", "created_at"),),
    ),
    # Each change of a customer account's lifecycle stage (customer success's record; v7), like stage_history.
    "account_states": TableContract(
        "account_states",
        (
            _id("company_id", "companies"),
            Field("from_stage", Kind.CATEGORY, nullable=True, allowed=LIFECYCLE_STAGES),
            Field("to_stage", Kind.CATEGORY, allowed=LIFECYCLE_STAGES),
            Field("changed_at", Kind.TIMESTAMP, event_time=True),
        ),
        key=("company_id", "changed_at"),
    ),
    # CSAT survey answers of customer accounts (1-5; v7); the comment is free text (scrub before use).
    "surveys": TableContract(
        "surveys",
        (
            _id(),
            _id("organization_id", "organizations"),
            _id("company_id", "companies"),
            Field("score", Kind.INTEGER, minimum=1, maximum=5),
            Field("comment", Kind.TEXT, nullable=True),
            Field("responded_at", Kind.TIMESTAMP, event_time=True),
        ),
    ),
}
