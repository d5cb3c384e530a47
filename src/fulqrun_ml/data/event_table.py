"""A user's event table (one row per event) and label table (one row per entity and as_of), validated.

`data=events` reads two files: events (`entity_col`, `time_col` and any other columns) and labels
(`entity_col`, `as_of_col`, `target`). Nothing here is a CRM, so there is no contract: the rules are the
ones a point-in-time sequence model needs, and each breach is an `EventTableError` naming the file, the
column and the first offending row (data rows counted from 1, header excluded), never a stack trace:

- the named columns exist; entity and time values are filled and times parse as dates (UTC);
- within an entity, events are in time order (`sort_events=True` sorts them instead) and no two share a
  timestamp (`allow_duplicate_times=True` keeps them, in file order);
- every label's entity has events, and at least one of them at or before its as_of (otherwise the model
  would score an empty history it never saw in training); (entity, as_of) pairs are unique;
- the target is filled and binary (two distinct values) or numeric.

Other event columns are typed by the same inference as user tables (`infer_column_kind`): numeric,
categorical, timestamp (used as days relative to the event), free text and ids (not used; listed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from fulqrun_ml.data.sources import SourceError
from fulqrun_ml.data.user_tables import ColumnKind, _read_user_table, _to_utc_datetime, infer_column_kind

TargetKind = Literal["binary", "regression"]
ENTITY, TIME = "__entity__", "__time__"  # the internal names, so no user column can collide with them


class EventTableError(SourceError):
    """An event or label table breaks a rule; the message names the file, the column and the row."""


@dataclass(frozen=True)
class EventColumns:
    """How the event columns are used: categorical and numeric event attributes, timestamps (as days relative
    to the event's own time), and what was left out with the reason."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    timestamps: tuple[str, ...]
    ignored: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        return {
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "timestamps": list(self.timestamps),
            "ignored": dict(self.ignored),
        }

    @classmethod
    def from_dict(cls, data: dict) -> EventColumns:
        return cls(tuple(data["categorical"]), tuple(data["numeric"]), tuple(data["timestamps"]), data["ignored"])


@dataclass(frozen=True)
class EventTable:
    """Events sorted by (entity, time) with `ENTITY` (str) and `TIME` (UTC) columns plus the typed attributes."""

    events: pd.DataFrame
    columns: EventColumns
    source: str


def read_table(path: str | Path, role: str) -> pd.DataFrame:
    """A CSV or Parquet file as a frame; an unreadable file is an error naming it and its role."""
    path = Path(str(path))
    try:
        return _read_user_table(path)
    except SourceError as exc:
        raise EventTableError(f"{role} file: {exc}") from exc
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise EventTableError(f"{role} file {path.name} cannot be read as a table ({type(exc).__name__})") from exc


def require_columns(frame: pd.DataFrame, named: dict[str, str], file: str) -> None:
    """Every configured column (key: the data.* option naming it) is in the file."""
    for option, column in named.items():
        if column not in frame.columns:
            raise EventTableError(
                f"{file}: column '{column}' (data.{option}) is missing; the file has {list(map(str, frame.columns))}"
            )


def parse_times(values: pd.Series, file: str, column: str) -> pd.Series:
    """UTC datetimes; an empty or unparseable value is an error naming its row."""
    empty = values.isna()
    if empty.any():
        raise EventTableError(f"{file} row {_row(values, empty)}: column '{column}' is empty")
    parsed = _to_utc_datetime(values)
    if parsed is None:
        coerced = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        bad = coerced.isna()
        row = _row(values, bad) if bad.any() else 1
        shown = values[bad].iloc[0] if bad.any() else values.iloc[0]
        raise EventTableError(f"{file} row {row}: column '{column}' value {shown!r} is not a date or time")
    return parsed


def _row(values: pd.Series, mask: pd.Series | np.ndarray) -> int:
    """1-based data row of the first True in `mask` (the frame keeps the file's order in its index)."""
    position = int(np.flatnonzero(np.asarray(mask))[0])
    return int(values.index[position]) + 1


def load_events(
    path: str | Path,
    entity_col: str,
    time_col: str,
    sort_events: bool = False,
    allow_duplicate_times: bool = False,
    max_categories: int = 50,
    columns: EventColumns | None = None,
) -> EventTable:
    """The validated event table (see the module docstring for the rules). `columns` (a trained model's) reads
    each attribute as that model did instead of inferring kinds anew from this file."""
    frame = read_table(path, "events").reset_index(drop=True)
    file = Path(str(path)).name
    require_columns(frame, {"entity_col": entity_col, "time_col": time_col}, file)
    if frame.empty:
        raise EventTableError(f"{file}: the event table has no rows")
    entity = frame[entity_col]
    if entity.isna().any():
        raise EventTableError(f"{file} row {_row(entity, entity.isna())}: column '{entity_col}' is empty")
    times = parse_times(frame[time_col], file, time_col)
    keys = entity.astype(str)
    if sort_events:
        order = np.lexsort((times.to_numpy(), keys.to_numpy()))
    else:
        order = _check_sorted(keys, times, file, time_col)
    frame = frame.iloc[order]
    keys, times = keys.iloc[order], times.iloc[order]
    if not allow_duplicate_times:
        same = (keys.to_numpy()[1:] == keys.to_numpy()[:-1]) & (times.to_numpy()[1:] == times.to_numpy()[:-1])
        if same.any():
            i = int(np.flatnonzero(same)[0])
            rows = sorted(int(r) + 1 for r in frame.index[[i, i + 1]])
            raise EventTableError(
                f"{file} rows {rows[0]} and {rows[1]}: entity '{keys.iloc[i]}' has two events at the same "
                f"'{time_col}' {times.iloc[i]}; their order is unknown (set data.allow_duplicate_times=true to "
                "keep file order)"
            )
    attributes = frame.drop(columns=[entity_col, time_col])
    if columns is None:
        columns, typed = _infer_columns(attributes, file, max_categories)
    else:
        typed = _coerce_columns(attributes, columns, file)
    events = pd.DataFrame({ENTITY: keys.to_numpy(), TIME: times.to_numpy()})
    for name, values in typed.items():
        events[name] = values.to_numpy()
    return EventTable(events.reset_index(drop=True), columns, file)


def _check_sorted(keys: pd.Series, times: pd.Series, file: str, time_col: str) -> np.ndarray:
    """The order that groups entities while keeping each entity's file order, after checking that order is
    non-decreasing in time (an entity's rows need not be contiguous)."""
    order = np.argsort(keys.to_numpy(), kind="stable")
    k, t = keys.to_numpy()[order], times.to_numpy()[order]
    back = (k[1:] == k[:-1]) & (t[1:] < t[:-1])
    if back.any():
        i = int(np.flatnonzero(back)[0])
        earlier, later = int(order[i]) + 1, int(order[i + 1]) + 1
        raise EventTableError(
            f"{file} row {later}: entity '{k[i]}' has '{time_col}' {times.iloc[order[i + 1]]} before its previous "
            f"event (row {earlier}, {times.iloc[order[i]]}); sort the file by entity and time, or set "
            "data.sort_events=true"
        )
    return order


def _infer_columns(frame: pd.DataFrame, file: str, max_categories: int) -> tuple[EventColumns, dict[str, pd.Series]]:
    categorical, numeric, timestamps, ignored = [], [], [], {}
    typed: dict[str, pd.Series] = {}
    for column in map(str, frame.columns):
        kind, values, why = infer_column_kind(frame[column], column, max_categories)
        if kind is ColumnKind.NUMERIC:
            numeric.append(column)
            typed[column] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        elif kind is ColumnKind.CATEGORICAL:
            categorical.append(column)
            typed[column] = values.astype(object).where(values.notna(), "__missing__").astype(str)
        elif kind is ColumnKind.DATETIME:
            timestamps.append(column)
            typed[column] = values
        else:
            ignored[column] = f"{kind}: {why}"
    return EventColumns(tuple(categorical), tuple(numeric), tuple(timestamps), ignored), typed


def _coerce_columns(frame: pd.DataFrame, columns: EventColumns, file: str) -> dict[str, pd.Series]:
    """Attributes read as a trained model reads them; a missing column or a value that is not a number or a
    date where one is expected is an error naming it and its row."""
    missing = [c for c in (*columns.categorical, *columns.numeric, *columns.timestamps) if c not in frame.columns]
    if missing:
        raise EventTableError(
            f"{file}: event column(s) {missing} the model was trained on are missing; the file has "
            f"{list(map(str, frame.columns))}"
        )
    typed: dict[str, pd.Series] = {}
    for column in columns.categorical:
        values = frame[column]
        typed[column] = values.astype(object).where(values.notna(), "__missing__").astype(str)
    for column in columns.numeric:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if bad.any():
            raise EventTableError(
                f"{file} row {_row(frame[column], bad)}: column '{column}' value {frame[column][bad].iloc[0]!r} is "
                "not a number (the model reads it as numeric)"
            )
        typed[column] = numbers.astype(np.float64)
    for column in columns.timestamps:
        values = frame[column]
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="mixed")
        bad = parsed.isna() & values.notna()
        if bad.any():
            raise EventTableError(
                f"{file} row {_row(values, bad)}: column '{column}' value {values[bad].iloc[0]!r} is not a date"
            )
        typed[column] = parsed
    return typed


@dataclass(frozen=True)
class LabelTable:
    """One row per (entity, as_of): `entity` (str), `as_of` (UTC), `label` (0/1 or a number), and `row` (the
    label file's 1-based row, for messages)."""

    labels: pd.DataFrame
    target: str
    kind: TargetKind
    classes: tuple[str, ...] = ()


def load_queries(path: str | Path, entity_col: str, as_of_col: str) -> LabelTable:
    """(entity, as_of) rows to score, validated like labels but without a target."""
    frame = read_table(path, "queries").reset_index(drop=True)
    file = Path(str(path)).name
    require_columns(frame, {"entity_col": entity_col, "as_of_col": as_of_col}, file)
    if frame.empty:
        raise EventTableError(f"{file}: the query table has no rows")
    if frame[entity_col].isna().any():
        raise EventTableError(
            f"{file} row {_row(frame[entity_col], frame[entity_col].isna())}: column '{entity_col}' is empty"
        )
    as_of = parse_times(frame[as_of_col], file, as_of_col)
    queries = pd.DataFrame({"entity": frame[entity_col].astype(str).to_numpy(), "as_of": as_of.to_numpy()})
    queries["label"] = np.nan
    queries["row"] = np.arange(1, len(queries) + 1)
    return LabelTable(queries, "", "binary")


def load_labels(path: str | Path, entity_col: str, as_of_col: str, target: str) -> LabelTable:
    """The validated label table: binary (two distinct values; the later-sorted one is 1) or numeric target."""
    frame = read_table(path, "labels").reset_index(drop=True)
    file = Path(str(path)).name
    require_columns(frame, {"entity_col": entity_col, "as_of_col": as_of_col, "target": target}, file)
    if frame.empty:
        raise EventTableError(f"{file}: the label table has no rows")
    for column in (entity_col, target):
        if frame[column].isna().any():
            raise EventTableError(f"{file} row {_row(frame[column], frame[column].isna())}: column '{column}' is empty")
    as_of = parse_times(frame[as_of_col], file, as_of_col)
    values = frame[target]
    distinct = values.unique()
    classes: tuple[str, ...] = ()
    if len(distinct) == 2:
        kind: TargetKind = "binary"
        ordered = sorted(distinct, key=str)
        classes = tuple(str(c) for c in ordered)
        label = (values.to_numpy() == ordered[1]).astype(np.float32)
    elif len(distinct) < 2:
        raise EventTableError(f"{file}: target '{target}' has one value ({distinct[0]!r}) in every row")
    else:
        numbers = pd.to_numeric(values, errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            raise EventTableError(
                f"{file} row {_row(values, bad)}: target '{target}' value {values[bad].iloc[0]!r} is not a number; "
                f"a target is binary (two distinct values) or numeric, this one has {len(distinct)} distinct values"
            )
        kind, label = "regression", numbers.to_numpy(dtype=np.float64)
    labels = pd.DataFrame(
        {"entity": frame[entity_col].astype(str).to_numpy(), "as_of": as_of.to_numpy(), "label": label}
    )
    labels["row"] = np.arange(1, len(labels) + 1)
    duplicated = labels.duplicated(["entity", "as_of"], keep="first")
    if duplicated.any():
        row = labels.loc[duplicated, "row"].iloc[0]
        raise EventTableError(
            f"{file} row {row}: entity '{labels.loc[duplicated, 'entity'].iloc[0]}' has two labels at the same "
            f"'{as_of_col}'"
        )
    return LabelTable(labels, target, kind, classes)


def check_label_histories(events: EventTable, labels: LabelTable, file: str, as_of_col: str) -> None:
    """Every label's entity has events, at least one of them at or before its as_of."""
    first = events.events.groupby(ENTITY, sort=False)[TIME].min()
    start = labels.labels["entity"].map(first)
    none = start.isna()
    if none.any():
        row = labels.labels.loc[none, "row"].iloc[0]
        entity = labels.labels.loc[none, "entity"].iloc[0]
        raise EventTableError(f"{file} row {row}: entity '{entity}' has no events in {events.source}")
    early = labels.labels["as_of"] < start
    if early.any():
        row = labels.labels.loc[early, "row"].iloc[0]
        entity = labels.labels.loc[early, "entity"].iloc[0]
        raise EventTableError(
            f"{file} row {row}: '{as_of_col}' {labels.labels.loc[early, 'as_of'].iloc[0]} precedes every event of "
            f"entity '{entity}' (the first is at {start[early].iloc[0]}): there is no history to score"
        )
