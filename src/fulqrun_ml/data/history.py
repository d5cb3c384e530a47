"""Slowly changing company and user attributes read as they were at as_of (SCD type-2 history tables).

Why this exists: the CRM overwrites a company's industry, size, head count and revenue, and a user's region,
in place. The `companies` / `users` rows therefore hold *today's* values, and a feature reading them for a
past snapshot reads the future while reporting the row's `created_at`, which the timestamp audit accepts.
With a history table (`contract.HISTORY_COLUMNS`), each entity's value at as_of is the newest version with
`valid_from <= as_of`, and the feature's source time is that version's `valid_from`: an honest timestamp.

The fallback rule, for exports without history: an entity with no version valid at as_of (no history at all,
or history that starts after as_of) reads the current row, reports its `created_at`, and is flagged
`point_in_time=False`; the audit summary lists such features as "current value, not point-in-time", so
the gap is visible instead of silently passing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fulqrun_ml.data.contract import HISTORY_COLUMNS, HISTORY_OF, CRMTables
from fulqrun_ml.errors import DataContractError

# The tracked fields of each history table (every column but the key and valid_from).
TRACKED_FIELDS: dict[str, tuple[str, ...]] = {
    name: tuple(c for c in columns if c not in (HISTORY_OF[name][1], "valid_from"))
    for name, columns in HISTORY_COLUMNS.items()
}
INTEGER_FIELDS = frozenset({"employee_count"})
NUMBER_FIELDS = frozenset({"annual_revenue", "value"})
TIMESTAMP_FIELDS = frozenset({"valid_from", "close_date"})


@dataclass(frozen=True)
class AttributesAsOf:
    """Tracked fields of some entities at one as_of, in the order asked for.

    `values`: one row per requested id (index = the ids), one column per tracked field; `source_time`: the
    `valid_from` of the version read, or the current row's `created_at` where it fell back (NaT for an
    unknown id); `point_in_time`: False where the current row was read."""

    values: pd.DataFrame
    source_time: pd.api.extensions.ExtensionArray
    point_in_time: np.ndarray


def attributes_as_of(tables: CRMTables, history_name: str, ids: np.ndarray, as_of: pd.Timestamp) -> AttributesAsOf:
    """The tracked fields of `ids` valid at `as_of` (the newest version at or before it; ties: the later row)."""
    table_name, key = HISTORY_OF[history_name]
    fields = list(TRACKED_FIELDS[history_name])
    current = tables.table(table_name).drop_duplicates("id").set_index("id").reindex(ids)
    history = tables.history(history_name)
    valid = history[history["valid_from"] <= as_of]
    latest = (
        valid.sort_values("valid_from", kind="stable").drop_duplicates(key, keep="last").set_index(key).reindex(ids)
    )
    found = latest["valid_from"].notna().to_numpy()
    values = current[fields].astype(object).copy()
    if found.any():
        values.loc[found, fields] = latest.loc[found, fields].astype(object).to_numpy()
    version_time = pd.Series(pd.to_datetime(latest["valid_from"], utc=True).array)
    row_time = pd.Series(pd.to_datetime(current["created_at"], utc=True).array)
    return AttributesAsOf(values, version_time.where(found, row_time).array, found)


def history_at(tables: CRMTables, history_name: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """The history as it stood at as_of: versions recorded later did not exist yet."""
    history = tables.history(history_name)
    return history[history["valid_from"] <= as_of].reset_index(drop=True)


def coerce_history(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A history table read from a file (CSV cells are text) with the contract's columns and dtypes.

    Raises DataContractError naming the table and field for a missing column or an unreadable value, since a
    history the builders cannot trust would silently turn into wrong point-in-time values."""
    if name not in HISTORY_COLUMNS:
        raise DataContractError(f"unknown history table '{name}'; the contract has {list(HISTORY_COLUMNS)}")
    missing = [c for c in HISTORY_COLUMNS[name] if c not in frame.columns]
    if missing:
        raise DataContractError(f"history table '{name}' lacks the column(s) {missing}")
    out = frame[list(HISTORY_COLUMNS[name])].copy()
    for column in out.columns:
        try:
            if column in TIMESTAMP_FIELDS:
                out[column] = pd.to_datetime(out[column], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
            elif column in INTEGER_FIELDS:
                numbers = pd.to_numeric(out[column])
                out[column] = numbers.astype("Int64" if numbers.isna().any() else np.int64)
            elif column in NUMBER_FIELDS:
                out[column] = pd.to_numeric(out[column]).astype(np.float64)
            else:
                out[column] = out[column].astype("str")
        except (ValueError, TypeError) as err:
            raise DataContractError(f"history table '{name}', field '{column}': unreadable value ({err})") from err
    if out["valid_from"].isna().any():
        raise DataContractError(
            f"history table '{name}', field 'valid_from': {int(out['valid_from'].isna().sum())} empty"
        )
    return out
