"""What a served tensor may look like, read from a version's metadata and companion files.

Split from serving/repository.py (which writes Triton configs from these rules): the shape normalisation and
the per-input rules the python-tensor backend enforces are one job, independent of Triton's config format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fulqrun_ml.registry.store import ModelVersion

DTYPE_NAMES = ("float32", "string", "int64")  # the metadata dtypes a served tensor may have
BATCH_AXIS = "batch"


def metadata_shape(entry: dict[str, Any]) -> list[int | str | None]:
    """A metadata input/output's shape, normalised: the batch axis first as "batch", then an int per fixed
    axis, a name per named variable axis, None per free axis. Exporters write -1 or a name for a dynamic axis;
    a tabular column (no `shape`) is [batch, 1]."""
    name = entry["name"]
    raw = entry.get("shape", [BATCH_AXIS, 1])
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"tensor '{name}': shape must be a non-empty list with the batch axis first, got {raw!r}")
    if not (raw[0] == -1 or isinstance(raw[0], str)):
        raise ValueError(f"tensor '{name}': the first axis must be the dynamic batch (-1 or a name), got {raw!r}")
    shape: list[int | str | None] = [BATCH_AXIS]
    for axis in raw[1:]:
        if isinstance(axis, str) or (isinstance(axis, int) and axis > 0):
            shape.append(axis)
        elif axis == -1:
            shape.append(None)
        else:
            raise ValueError(f"tensor '{name}': axis sizes are positive ints, -1 or a name, got {raw!r}")
    return shape


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def serving_spec(version: ModelVersion) -> dict[str, Any]:
    """What the python-tensor backend enforces per input: dtype, shape, NaN policy and value bounds.

    Bounds come from the files the version ships: tabular columns from feature_spec.json (NaN only where
    the graph imputes it, >= 0 where it takes log1p), event token indices from sequence_vocab.json
    (0 padding, 1 unknown, 2.. the values seen in training), the `series` index from series_index.json
    (0 unseen, 1..n the training series), the sequence length axis from the vocabulary's max_len. An index
    outside its table would make onnxruntime's Gather fail or read garbage, so it is refused up front."""
    meta = version.metadata
    features = _read_json(version.path / "feature_spec.json")
    numeric = {f["name"]: f for f in features.get("numeric", [])}
    vocabulary = _read_json(version.path / "sequence_vocab.json")
    known = vocabulary.get("known", {})
    series = _read_json(version.path / "series_index.json")
    inputs = []
    for entry in meta["inputs"]:
        name, dtype = entry["name"], entry["dtype"]
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"{version.name} input '{name}': dtype '{dtype}' is not one of {sorted(DTYPE_NAMES)}")
        rule: dict[str, Any] = {"name": name, "dtype": dtype, "shape": metadata_shape(entry)}
        if name in numeric:
            rule["allow_nan"] = bool(numeric[name].get("impute_missing"))
            if numeric[name].get("log1p"):
                rule["min"] = 0.0
        if dtype == "int64" and name in known:
            rule["min"], rule["max"] = 0, len(known[name]) + 1
        elif dtype == "int64" and name == "series" and "groups" in series:
            rule["min"], rule["max"] = 0, len(series["groups"])
        inputs.append(rule)
    named = {axis for rule in inputs for axis in rule["shape"][1:] if isinstance(axis, str)}
    max_len = vocabulary.get("max_len")
    axes = {axis: {"max": int(max_len) if axis == "length" and max_len else None} for axis in sorted(named)}
    return {"model": version.name, "version": version.version, "inputs": inputs, "axes": axes}
