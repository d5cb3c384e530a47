"""The serving benchmark's requests: the same records as each benchmarked model takes them.

Why a module: the model and its same-input identity get the records in the layout under test (packed, the SDK's
default: two tensors, serving/packed.py; or named, one tensor per field as a KServe client sends), the one-tensor
floor one FP32 tensor of as many values. Building all three from the same records keeps the comparison fair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fulqrun_ml.benchmarks.serving_report import FLOOR_INPUT
from fulqrun_ml.errors import FulqrunMLError
from fulqrun_ml.registry.store import ModelVersion
from fulqrun_ml.serving.packed import PACKED_CATEGORICAL, PACKED_NUMERIC, packed_columns

DATATYPES = {"float32": "FP32", "string": "BYTES", "int64": "INT64"}
BODIES_PER_POINT = 16  # distinct request bodies rotated by every client
Payload = tuple[list[tuple[str, str]], list[dict[str, np.ndarray]]]  # (inputs, request columns)


def model_inputs(version: ModelVersion) -> list[tuple[str, str]]:
    """The named layout: (field, KServe datatype) per metadata input."""
    return [(i["name"], DATATYPES[i["dtype"]]) for i in version.metadata["inputs"]]


def request_columns(records: pd.DataFrame, rows: int, count: int = BODIES_PER_POINT) -> list[dict[str, np.ndarray]]:
    """`count` different requests of `rows` consecutive records each (wrapping around the records)."""
    out = []
    for k in range(count):
        index = np.arange(k * rows, (k + 1) * rows) % len(records)
        out.append({c: records[c].to_numpy()[index] for c in records.columns})
    return out


def layout_payloads(version: ModelVersion, records: pd.DataFrame, rows: int, layout: str) -> dict[str, Payload]:
    """Per benchmarked model kind ("model", "identity", "floor"), its inputs and request columns for `rows`
    records per request: the model and its identity get the records in `layout`; the floor one FP32 tensor of
    as many values (the numbers, 1.0 for each category: any numbers do, the floor only echoes)."""
    inputs = model_inputs(version)
    named = request_columns(records[[n for n, _ in inputs]], rows)
    packed = packed_columns(version.metadata)
    if layout == "packed" and packed is not None:
        groups = [(PACKED_NUMERIC, "FP32", packed.numeric), (PACKED_CATEGORICAL, "BYTES", packed.categorical)]
        groups = [g for g in groups if g[2]]
        requests = [
            {
                name: np.stack([c[n] for n in fields], axis=1).astype(np.float32 if datatype == "FP32" else str)
                for name, datatype, fields in groups
            }
            for c in named
        ]
        requests = [{k: v if v.dtype == np.float32 else v.astype(object) for k, v in r.items()} for r in requests]
        model: Payload = ([(name, datatype) for name, datatype, _ in groups], requests)
    elif layout == "named":
        model = (inputs, named)
    else:
        raise FulqrunMLError(f"layout '{layout}' does not apply to '{version.name}'; choose packed or named")
    floor = [{FLOOR_INPUT: np.stack([_floor_values(c[n], t) for n, t in inputs], axis=1)} for c in named]
    return {"model": model, "identity": model, "floor": ([(FLOOR_INPUT, "FP32")], floor)}


def _floor_values(values: np.ndarray, datatype: str) -> np.ndarray:
    """The floor's column for one field: the number itself, or 1.0 for a category (the floor only echoes)."""
    return values.astype(np.float32) if datatype == "FP32" else np.ones(len(values), np.float32)
