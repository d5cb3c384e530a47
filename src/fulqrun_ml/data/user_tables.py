"""Any user CSV/Parquet table with a target column, typed by inference: `TableSource(path, target)()`.

Not a CRM, so there is no contract to validate against: every column's kind (numeric, categorical, datetime,
free text, id) is inferred from its values and name (`infer_column_kind`), reported with the evidence for it
(`UserTable.report()`, no values since they may be PII), and the datamodule (`datamodules/table.py`) turns each
kind into features. A time column, when named, is parsed as UTC and used for a time split.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

import pandas as pd

from fulqrun_ml.data.schemas import UUID_PATTERN
from fulqrun_ml.data.sources import SourceError


class ColumnKind(StrEnum):
    """How a column of a user table can be used."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    DATETIME = "datetime"
    TEXT = "text"  # free text: words, not labels
    ID = "id"  # identifies a row or an entity; never a feature


@dataclass(frozen=True)
class ColumnReport:
    """The inferred kind of one column and the evidence for it (no values: they may be PII)."""

    column: str
    kind: ColumnKind
    dtype: str
    n_missing: int
    n_unique: int
    why: str


@dataclass(frozen=True)
class UserTable:
    """A researcher's table: the frame (datetimes parsed as UTC, numeric text as numbers) and its kinds."""

    frame: pd.DataFrame
    target: str
    columns: tuple[ColumnReport, ...]
    time_col: str | None = None
    id_col: str | None = None

    @property
    def kinds(self) -> dict[str, ColumnKind]:
        return {c.column: c.kind for c in self.columns}

    @property
    def feature_columns(self) -> dict[str, ColumnKind]:
        """Columns a model may read: everything but the target, the id, the time column and ids."""
        skip = {self.target, self.time_col, self.id_col}
        return {c.column: c.kind for c in self.columns if c.column not in skip and c.kind is not ColumnKind.ID}

    @property
    def target_kind(self) -> Literal["binary", "multiclass", "regression"]:
        report = next(c for c in self.columns if c.column == self.target)
        if report.n_unique == 2:
            return "binary"
        return "regression" if report.kind is ColumnKind.NUMERIC else "multiclass"

    def report(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(c) for c in self.columns]).assign(kind=lambda f: f["kind"].map(str))


class TableSource:
    """Any CSV or Parquet table with a target column, typed by inference (see `infer_column_kind`).

    `time_col` is parsed as UTC datetimes and `id_col` must be unique; a value that breaks either is an
    error naming the column, not a silent NaT or drop. Rows with a missing target are kept and counted in
    the target's report (`n_missing`), since what to do with them is the task's decision.
    """

    def __init__(
        self,
        path: str | Path,
        target: str,
        time_col: str | None = None,
        id_col: str | None = None,
        max_categories: int = 50,
    ) -> None:
        self.path = Path(path)
        self.target = target
        self.time_col = time_col
        self.id_col = id_col
        self.max_categories = max_categories

    def load(self) -> UserTable:
        frame = _read_user_table(self.path)
        for role, column in (("target", self.target), ("time_col", self.time_col), ("id_col", self.id_col)):
            if column is not None and column not in frame.columns:
                raise SourceError(
                    f"{role} '{column}' is not a column of {self.path.name}; it has {list(frame.columns)}"
                )
        if frame[self.target].isna().all():
            raise SourceError(f"target '{self.target}' in {self.path.name} has no values")
        if self.id_col is not None:
            duplicated = frame[self.id_col].duplicated(keep=False) & frame[self.id_col].notna()
            if duplicated.any() or frame[self.id_col].isna().any():
                raise SourceError(
                    f"id_col '{self.id_col}' must be unique and filled: {int(duplicated.sum())} duplicated, "
                    f"{int(frame[self.id_col].isna().sum())} missing"
                )
        reports = []
        for column in frame.columns:
            column = str(column)
            if column == self.time_col:
                frame[column] = _parse_time_column(frame[column], column)
                kind, why = ColumnKind.DATETIME, "given as time_col"
            elif column == self.id_col:
                kind, why = ColumnKind.ID, "given as id_col"
            else:
                kind, converted, why = infer_column_kind(frame[column], column, self.max_categories)
                frame[column] = converted
            values = frame[column]
            reports.append(
                ColumnReport(column, kind, str(values.dtype), int(values.isna().sum()), int(values.nunique()), why)
            )
        return UserTable(frame, self.target, tuple(reports), self.time_col, self.id_col)

    def __call__(self) -> UserTable:
        return self.load()


def _read_user_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SourceError(f"table file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise SourceError(f"{path.name}: only .csv and .parquet tables are supported")


def _parse_time_column(values: pd.Series, column: str) -> pd.Series:
    parsed = _to_utc_datetime(values)
    if parsed is None:
        bad = values.notna() & pd.to_datetime(values, utc=True, errors="coerce", format="mixed").isna()
        raise SourceError(f"time_col '{column}': {int(bad.sum())} value(s) are not dates or times")
    return parsed


def _to_utc_datetime(values: pd.Series) -> pd.Series | None:
    """All non-missing values as UTC datetimes, or None if any of them is not a date."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.dt.tz_localize("UTC")
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        return None
    present = values.notna()
    if not present.any():
        return None
    sample = values[present].head(200)
    if pd.to_datetime(sample, utc=True, errors="coerce", format="mixed").isna().any():
        return None  # cheap early exit: parsing a whole text column as dates is slow
    for fmt in ("ISO8601", "mixed"):
        try:
            parsed = pd.to_datetime(values, utc=True, errors="coerce", format=fmt)
        except (ValueError, TypeError):
            continue
        if not (parsed.isna() & present).any():
            return parsed
    return None


def infer_column_kind(values: pd.Series, name: str, max_categories: int = 50) -> tuple[ColumnKind, pd.Series, str]:
    """(kind, values converted to suit it, why). The rules, in order:

    1. booleans are categorical; 2. numbers are numeric, unless an integer column named `id`/`*_id` has
    a distinct value per row (an id); 3. datetimes, and text where every value parses as a date, are
    datetime (UTC); 4. text where every value parses as a number is numeric; 5. UUID-like text, or
    text with a distinct value per row in an `id`/`*_id` column, is an id; 6. text with at most
    `max_categories` distinct values, or one distinct value per 20 rows or fewer, is categorical;
    7. text averaging 3+ words or 30+ characters is free text; 8. short text that is (nearly) unique per
    row is an id (codes, emails, names); 9. anything else is a high-cardinality categorical.
    """
    present = values.dropna()
    n, n_unique = len(present), present.nunique()
    id_like_name = name.lower() == "id" or name.lower().endswith("_id")
    if n == 0:
        return ColumnKind.CATEGORICAL, values, "no values"
    if pd.api.types.is_bool_dtype(values.dtype):
        return ColumnKind.CATEGORICAL, values, "boolean"
    if pd.api.types.is_numeric_dtype(values.dtype):
        if id_like_name and pd.api.types.is_integer_dtype(values.dtype) and n_unique == n:
            return ColumnKind.ID, values, "integer id column with one value per row"
        return ColumnKind.NUMERIC, values, "numeric dtype"
    as_datetime = _to_utc_datetime(values)
    if as_datetime is not None and not pd.to_numeric(present, errors="coerce").notna().all():
        return ColumnKind.DATETIME, as_datetime, "every value parses as a date (UTC)"
    as_number = pd.to_numeric(values, errors="coerce")
    if as_number[values.notna()].notna().all():
        return ColumnKind.NUMERIC, as_number, "every value parses as a number"
    text = present.astype(str)
    if text.str.fullmatch(UUID_PATTERN).all():
        return ColumnKind.ID, values, "UUID strings"
    if id_like_name and n_unique == n:
        return ColumnKind.ID, values, "id column with one value per row"
    if n_unique <= max_categories or n_unique <= n / 20:
        return ColumnKind.CATEGORICAL, values, f"{n_unique} distinct values"
    if text.str.split().str.len().mean() >= 3 or text.str.len().mean() >= 30:
        return ColumnKind.TEXT, values, "long, many-word values"
    if n_unique >= 0.95 * n:
        return ColumnKind.ID, values, "short values, nearly one per row"
    return ColumnKind.CATEGORICAL, values, f"{n_unique} distinct short values"
