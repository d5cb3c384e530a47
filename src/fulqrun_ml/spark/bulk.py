"""Bulk scoring on Spark: `scoring.bulk`'s chunk path (validate, tensors, one `InferenceSession.run`) inside
`mapInPandas`, so a table too large for one machine is scored by every executor with the same code.

Why mapInPandas: Arrow batches reach Python without per-row conversion, and one ONNX session per Python worker
(cached in this module, created on the first batch) serves every batch that worker sees. The model directory
must be readable at the same path on every executor (a shared filesystem; `spark-submit --files` for a
bare directory); the output is written to a temporary directory and renamed into place: complete or absent.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from fulqrun_ml.errors import FieldValidationError
from fulqrun_ml.features.spec import FittedFeatureSpec, validate_frame
from fulqrun_ml.scoring.bulk import (
    ScoringError,
    _feature_frame,
    _feeds,
    _output_columns,
    _read_metadata,
    create_session,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

_SESSIONS: dict[str, tuple] = {}  # per Python worker: model path -> (session, spec, output columns)


def _loaded(version_dir: str) -> tuple:
    if version_dir not in _SESSIONS:
        path = Path(version_dir)
        session = create_session(path / "model.onnx")
        spec = FittedFeatureSpec.load(path / "feature_spec.json")
        _SESSIONS[version_dir] = (session, spec, _output_columns(session, _read_metadata(path).get("bin_edges")))
    return _SESSIONS[version_dir]


def score_batches(batches: Iterator[pd.DataFrame], version_dir: str, keep: Sequence[str]) -> Iterator[pd.DataFrame]:
    """The mapInPandas function: each pandas batch scored in one run; keep columns carried through."""
    session, spec, output_columns = _loaded(version_dir)
    for batch in batches:
        table = pa.Table.from_pandas(batch, preserve_index=False)
        frame = _feature_frame(table, spec)
        validate_frame(spec.spec, frame)
        results = session.run(list(output_columns), _feeds(table, frame, spec))
        out = batch[list(keep)].reset_index(drop=True)
        for values, columns in zip(results, output_columns.values(), strict=True):
            matrix = values.reshape(len(values), -1).astype(np.float32, copy=False)
            for j, column in enumerate(columns):
                out[column] = matrix[:, j]
        yield out


def score_dataframe(frame: DataFrame, version_dir: str | Path, keep_columns: Sequence[str] | None = None) -> DataFrame:
    """A Spark DataFrame of the features (and ids) -> keep columns + the graph's outputs (float)."""
    version_dir = str(Path(version_dir).resolve())
    _, spec, output_columns = _loaded(version_dir)
    features = spec.spec.names
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise FieldValidationError(missing[0], "is a model feature but not a column of the input")
    keep = list(keep_columns) if keep_columns is not None else [c for c in frame.columns if c not in features]
    absent = [c for c in keep if c not in frame.columns]
    if absent:
        raise FieldValidationError(absent[0], "requested in keep_columns but not in the input")
    outputs = [c for cols in output_columns.values() for c in cols]
    clash = [c for c in outputs if c in keep]
    if clash:
        raise ScoringError(f"the input already has a '{clash[0]}' column; drop it or leave it out of keep_columns")
    schema = ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in frame.schema if f.name in keep])
    schema = ", ".join(filter(None, [schema, *(f"`{c}` float" for c in outputs)]))
    selected = frame.select(*dict.fromkeys([*features, *keep]))
    return selected.mapInPandas(lambda batches: score_batches(batches, version_dir, keep), schema)


def score_table_spark(
    spark: SparkSession,
    version_dir: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    keep_columns: Sequence[str] | None = None,
) -> int:
    """`scoring.bulk.score_table` on Spark: Parquet in, a Parquet directory out (published atomically on a
    local/shared filesystem). Returns the rows scored."""
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise ScoringError(f"input {input_path} does not exist")
    scored = score_dataframe(spark.read.parquet(str(input_path)), version_dir, keep_columns)
    tmp = output_path.with_name(f".{output_path.name}.tmp-{uuid.uuid4().hex}")
    try:
        scored.write.parquet(str(tmp))
        rows = spark.read.parquet(str(tmp)).count()
        if output_path.exists():
            shutil.rmtree(output_path) if output_path.is_dir() else output_path.unlink()
        os.replace(tmp, output_path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        named = _field_error(exc)
        if named is not None:
            raise named from None
        raise
    return rows


def _field_error(exc: BaseException) -> FieldValidationError | None:
    """A bad field found inside an executor arrives as a Python worker traceback: name the field again."""
    match = re.search(r"FieldValidationError: field '([^']+)': ([^\n]+)", str(exc))
    return FieldValidationError(match.group(1), match.group(2)) if match else None
