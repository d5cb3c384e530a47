"""The packed request layout of a raw-record model: one FP32 `[N, k]` tensor of its numeric fields and one BYTES
`[N, m]` tensor of its categorical fields, in a column order the model's Triton config publishes.

Why: Triton's Python backend pays per input tensor, per request (parsing, shared-memory hand-off, one numpy view
each). A one-record request in the named layout carries ~20 tensors; packed it carries two, so the server does
the per-request work of two tensors and the backend gets the two matrices it scores directly. The named layout
(one `[N, 1]` tensor per field) stays for any KServe client: both are optional inputs of the same model, the
same FeatureSpec and graph serve both (the backend slices the packed matrices into the graph's named inputs).

The column order comes from the version's metadata (its inputs, numeric then categorical, each in metadata
order) and travels as the config parameters `packed_numeric_columns` / `packed_categorical_columns` (JSON
lists), so a client reads it from `GET /v2/models/<name>/config` and the backend maps a bad column's index back
to its field name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PACKED_NUMERIC = "packed_numeric"
PACKED_CATEGORICAL = "packed_categorical"
NUMERIC_COLUMNS = "packed_numeric_columns"
CATEGORICAL_COLUMNS = "packed_categorical_columns"
COLUMN_DTYPES = ("float32", "string")  # a raw-record field is a number or a category


@dataclass(frozen=True)
class PackedColumns:
    """Which field each column of the two packed tensors holds."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    def inputs(self) -> list[tuple[str, str, int]]:
        """(input name, dtype, width) of each packed tensor; a group without fields has no tensor (Triton refuses
        a zero-width dimension)."""
        widths = ((PACKED_NUMERIC, "float32", self.numeric), (PACKED_CATEGORICAL, "string", self.categorical))
        return [(name, dtype, len(columns)) for name, dtype, columns in widths if columns]

    def parameters(self) -> dict[str, str]:
        """The config parameters that publish the column order."""
        return {
            NUMERIC_COLUMNS: json.dumps(list(self.numeric)),
            CATEGORICAL_COLUMNS: json.dumps(list(self.categorical)),
        }


def packed_columns(metadata: Mapping[str, Any]) -> PackedColumns | None:
    """The packed layout of a raw-record version (one `[batch, 1]` column per field, FP32 or BYTES), or None
    when its inputs are tensors or of another type (those keep their own layout)."""
    inputs: Sequence[Mapping[str, Any]] = metadata["inputs"]
    if not inputs or any("shape" in entry or entry["dtype"] not in COLUMN_DTYPES for entry in inputs):
        return None
    names = {entry["name"] for entry in inputs}
    clash = names & {PACKED_NUMERIC, PACKED_CATEGORICAL}
    if clash:
        raise ValueError(f"field name(s) {sorted(clash)} collide with the packed layout's input names")
    numeric = tuple(entry["name"] for entry in inputs if entry["dtype"] == "float32")
    categorical = tuple(entry["name"] for entry in inputs if entry["dtype"] == "string")
    return PackedColumns(numeric, categorical)


def columns_from_parameters(parameters: Mapping[str, str]) -> PackedColumns | None:
    """The packed layout a served model publishes in its config parameters; None when it has none."""
    if NUMERIC_COLUMNS not in parameters and CATEGORICAL_COLUMNS not in parameters:
        return None
    return PackedColumns(
        tuple(json.loads(parameters.get(NUMERIC_COLUMNS) or "[]")),
        tuple(json.loads(parameters.get(CATEGORICAL_COLUMNS) or "[]")),
    )
