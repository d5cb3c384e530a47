"""`fulqrun-ml score`: score a whole Parquet/CSV table offline with a published version's model.onnx.

Why not Triton: a nightly re-score of every open deal is one big batch; onnxruntime in-process, fed by
Arrow, avoids the per-request overhead entirely and uses every core on large chunks.

How it stays fast and bounded in memory:
- the input is streamed with `pyarrow.dataset` in large chunks (Arrow reads ahead on its own threads);
- categorical columns are read dictionary-encoded, so turning them into the string tensors the graph
  expects is a `take` of a few distinct Python strings, not one new object per cell;
- each chunk is validated with the same `validate_frame` the training data passes (a bad field is
  named) and scored in one `InferenceSession.run`; results are appended to the output Parquet in order;
- parallelism is across chunks, not inside one: `workers` runs of a single-threaded session are in flight
  at once (ORT releases the GIL) while the main thread prepares the next chunk and writes finished ones.
  Independent runs need no per-operator barrier, so they scale better than intra-op threads and a
  preempted thread (a busy or shared machine) delays only its own chunk.
The output (input columns that are not features, e.g. ids, carried through, plus the graph's outputs:
`probability`, a regression's `prediction`, or a survival model's `close_probability_<t>d` per bin edge and
`expected_days`) is written to a temporary file next to the target and renamed into place: complete or absent.
Per-stage timings are returned so a benchmark can say where the time goes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from fulqrun_ml.errors import FieldValidationError, FulqrunMLError
from fulqrun_ml.features.spec import FittedFeatureSpec, validate_frame
from fulqrun_ml.registry.encryption import read_artifact
from fulqrun_ml.registry.store import METADATA_FILE, ModelVersion

log = logging.getLogger(__name__)
DEFAULT_CHUNK_ROWS = 131_072
OUTPUT_COLUMN = "probability"  # a binary model's one output (others are named by their graph, see _output_columns)
# Seconds the main thread spends per stage; "infer" is time spent *waiting* for inference, i.e. the part
# of ORT's work not hidden behind reading, validating, converting and writing.
STAGES = ("read", "validate", "convert", "infer", "write")


class ScoringError(FulqrunMLError):
    """The table cannot be scored: unreadable input, unsupported format, or a name clash in the output."""


@dataclass
class BulkScoreResult:
    """What a bulk run did: rows scored, wall time, output file, and seconds spent per stage."""

    rows: int
    seconds: float
    output: Path
    chunks: int
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def create_session(model_path: Path, intra_op_threads: int = 1) -> ort.InferenceSession:
    """A CPU session; `run` may be called from several threads at once (ORT sessions are thread-safe)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = read_artifact(Path(model_path))  # model.onnx, or model.onnx.enc decrypted in memory (encryption at rest)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _dataset(path: Path, categorical: Sequence[str]) -> ds.Dataset:
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".parquet", ".pq"):
        fmt = ds.ParquetFileFormat(read_options=ds.ParquetReadOptions(dictionary_columns=list(categorical)))
        return ds.dataset(path, format=fmt)
    if suffix == ".csv":
        fmt = ds.CsvFileFormat(
            read_options=pacsv.ReadOptions(block_size=64 << 20),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.dictionary(pa.int32(), pa.string()) for name in categorical}
            ),
        )
        return ds.dataset(path, format=fmt)
    raise ScoringError(f"{path}: unsupported input format '{suffix}' (use .parquet, a Parquet directory, or .csv)")


def _chunks(dataset: ds.Dataset, columns: list[str], chunk_rows: int, timings: dict[str, float]) -> Iterator[pa.Table]:
    """Arrow batches regrouped into tables of about `chunk_rows` rows (files may hold small row groups)."""
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    batches = iter(dataset.to_batches(columns=columns, batch_size=chunk_rows, use_threads=True))
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        timings["read"] += time.perf_counter() - t0
        if batch is not None and batch.num_rows:
            pending.append(batch)
            pending_rows += batch.num_rows
        if pending and (batch is None or pending_rows >= chunk_rows):
            yield pa.Table.from_batches(pending)
            pending, pending_rows = [], 0
        if batch is None:
            return


def _feature_frame(table: pa.Table, spec: FittedFeatureSpec) -> pd.DataFrame:
    """Only the feature columns, cheaply: numbers as numpy, categories as pandas Categoricals."""
    frame = {}
    for feat in spec.spec.numeric:
        frame[feat.name] = table.column(feat.name).to_numpy()
    for feat in spec.spec.categorical:
        column = table.column(feat.name)
        frame[feat.name] = column.to_pandas() if pa.types.is_dictionary(column.type) else column.to_numpy()
    return pd.DataFrame(frame, copy=False)


def _string_tensor(column: pa.ChunkedArray) -> np.ndarray:
    """[N, 1] object array of str for a categorical column, via its dictionary (few distinct strings)."""
    parts = []
    for chunk in column.chunks:
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        # str(): the spec's vocabularies hold str(value), exactly like `FittedFeatureSpec.encode`.
        values = np.array([str(v) for v in chunk.dictionary.to_pylist()] or [""], dtype=object)
        parts.append(values[chunk.indices.to_numpy(zero_copy_only=False)])
    return (np.concatenate(parts) if len(parts) != 1 else parts[0]).reshape(-1, 1)


def _feeds(table: pa.Table, frame: pd.DataFrame, spec: FittedFeatureSpec) -> dict[str, np.ndarray]:
    feeds = {f.name: np.asarray(frame[f.name], dtype=np.float32).reshape(-1, 1) for f in spec.spec.numeric}
    feeds.update({f.name: _string_tensor(table.column(f.name)) for f in spec.spec.categorical})
    return feeds


def _output_columns(session: ort.InferenceSession, edges: Sequence[float] | None) -> dict[str, list[str]]:
    """Graph output -> its table column(s): `[N]` / `[N, 1]` outputs keep their name, a `[N, K]` output becomes
    K columns, named by the bin edges the version's metadata declares (`close_probability_7d`, ...)."""
    columns = {}
    for output in session.get_outputs():
        width = output.shape[1] if len(output.shape) == 2 and isinstance(output.shape[1], int) else 1
        if width == 1:
            columns[output.name] = [output.name]
        elif edges is not None and len(edges) - 1 == width:
            columns[output.name] = [f"{output.name}_{edge:g}d" for edge in edges[1:]]
        else:
            columns[output.name] = [f"{output.name}_{k}" for k in range(width)]
    return columns


def _read_metadata(version_dir: Path) -> dict[str, Any]:
    """A version directory's metadata.json; a bare directory (model.onnx + feature_spec.json) has none."""
    path = version_dir / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _check_schema(dataset: ds.Dataset, spec: FittedFeatureSpec, keep: Sequence[str], outputs: list[str]) -> None:
    """Fail before reading any row: missing feature columns or non-numeric types, named by field."""
    validate_frame(spec.spec, dataset.schema.empty_table().to_pandas())
    missing = [c for c in keep if c not in dataset.schema.names]
    if missing:
        raise FieldValidationError(missing[0], "requested in keep_columns but not in the input")
    clash = [c for c in outputs if c in keep]
    if clash:
        raise ScoringError(f"the input already has a '{clash[0]}' column; drop it or leave it out of keep_columns")


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """Dictionary-encode only columns that arrive dictionary-encoded (categories): ids and probabilities
    are (nearly) unique, where a dictionary attempt triples the write time and grows the file."""
    dictionary = [f.name for f in schema if pa.types.is_dictionary(f.type)]
    return pq.ParquetWriter(path, schema, use_dictionary=dictionary or False)


def score_table(
    version: ModelVersion | Path,
    input_path: Path,
    output_path: Path,
    keep_columns: Sequence[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int | None = None,
    model_file: Path | None = None,
) -> BulkScoreResult:
    """Score every row of `input_path` (Parquet file/directory or CSV) into `output_path` (Parquet).

    `version` is a published ModelVersion or its directory (model.onnx + feature_spec.json).
    `keep_columns`: input columns copied to the output next to the model outputs; default: every input column
    that is not a model feature (ids, labels, ...). `workers`: chunks scored at once (default: one per
    core). `model_file` swaps in another graph of the same version (e.g. the ORT-optimised or INT8 one
    from `fulqrun_ml.export.optimize`)."""
    version_dir = version.path if isinstance(version, ModelVersion) else Path(version)
    metadata = version.metadata if isinstance(version, ModelVersion) else _read_metadata(version_dir)
    spec = FittedFeatureSpec.load(version_dir / "feature_spec.json")
    input_path, output_path = Path(input_path), Path(output_path)
    if chunk_rows < 1:
        raise ScoringError(f"chunk_rows must be >= 1, got {chunk_rows}")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ScoringError(f"workers must be >= 1, got {workers}")
    if not input_path.exists():
        raise ScoringError(f"input {input_path} does not exist")
    categorical = [f.name for f in spec.spec.categorical]
    dataset = _dataset(input_path, categorical)
    features = spec.spec.names
    session = create_session(model_file or version_dir / "model.onnx")
    output_columns = _output_columns(session, metadata.get("bin_edges"))
    output_names = [c for cols in output_columns.values() for c in cols]
    keep = list(keep_columns) if keep_columns is not None else [c for c in dataset.schema.names if c not in features]
    _check_schema(dataset, spec, keep, output_names)

    timings = dict.fromkeys(STAGES, 0.0)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.tmp-{uuid.uuid4().hex}")
    rows = chunks = 0
    writer: pq.ParquetWriter | None = None
    in_flight: deque[tuple[pa.Table, Future]] = deque()

    def write_oldest() -> None:
        nonlocal writer
        kept, future = in_flight.popleft()
        t0 = time.perf_counter()
        results = future.result()
        t1 = time.perf_counter()
        out = kept
        for values, columns in zip(results, output_columns.values(), strict=True):
            matrix = values.reshape(len(values), -1).astype(np.float32, copy=False)
            for j, column in enumerate(columns):
                out = out.append_column(column, pa.array(matrix[:, j]))
        if writer is None:
            writer = _writer(tmp, out.schema)
        writer.write_table(out)
        timings["infer"] += t1 - t0
        timings["write"] += time.perf_counter() - t1

    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bulk-score") as pool:
            try:
                for table in _chunks(dataset, list(dict.fromkeys(features + keep)), chunk_rows, timings):
                    t0 = time.perf_counter()
                    frame = _feature_frame(table, spec)
                    try:
                        validate_frame(spec.spec, frame)
                    except FieldValidationError as exc:
                        where = f"rows {rows}..{rows + len(frame) - 1}"
                        raise FieldValidationError(exc.field, f"{exc.reason} (in {where})") from None
                    t1 = time.perf_counter()
                    feeds = _feeds(table, frame, spec)
                    timings["validate"] += t1 - t0
                    timings["convert"] += time.perf_counter() - t1
                    in_flight.append((table.select(keep), pool.submit(session.run, list(output_columns), feeds)))
                    rows += table.num_rows
                    chunks += 1
                    while len(in_flight) > workers:
                        write_oldest()
                while in_flight:
                    write_oldest()
            finally:
                for _, future in in_flight:
                    future.cancel()
        t0 = time.perf_counter()
        if writer is None:  # an empty input still yields a (valid, empty) output with the right columns
            outputs = [pa.field(c, pa.float32()) for c in output_names]
            schema = pa.schema([dataset.schema.field(c) for c in keep] + outputs)
            writer = _writer(tmp, schema)
        writer.close()
        writer = None
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, output_path)
        timings["write"] += time.perf_counter() - t0
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    log.info("scored %d rows in %.2f s (%.0f rows/s) -> %s", rows, seconds, rows / max(seconds, 1e-9), output_path)
    return BulkScoreResult(
        rows=rows,
        seconds=seconds,
        output=output_path,
        chunks=chunks,
        timings={k: round(v, 4) for k, v in timings.items()},
    )
