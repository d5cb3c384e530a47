"""Inference cost per row through an exported ONNX graph (preprocessing included), in ONNX Runtime.

One intra-op thread, as the serving config runs it (`ort_intra_op_threads: 1`), so the number is a per-core
cost that does not depend on how many cores the benchmark machine happens to have free.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
import onnxruntime as ort
import pandas as pd

from fulqrun_ml.evaluation.latency import median_microseconds_per_row
from fulqrun_ml.export.onnx_export import OUTPUT_NAME, raw_feeds
from fulqrun_ml.features.spec import FittedFeatureSpec

BATCH_SIZES = (1, 1024)


def repeated_rows(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """At least `n` rows taken from `frame` (repeated if it is shorter), so a full batch can be timed."""
    reps = -(-n // len(frame))
    return pd.concat([frame] * reps, ignore_index=True).head(n)


def onnx_microseconds_per_row(
    graph: onnx.ModelProto,
    spec: FittedFeatureSpec,
    frame: pd.DataFrame,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    repeats: tuple[int, int] = (300, 30),
    outputs: Sequence[str] = (OUTPUT_NAME,),
) -> dict[str, float]:
    """{"batch_1": µs/row, "batch_1024": µs/row}: single-row calls (repeats[0]) and large batches (repeats[1]),
    fetching `outputs` (a binary graph's `probability`, a regression's `prediction`, a survival graph's two)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    result = {}
    for size in batch_sizes:
        n_batches = 50 if size == 1 else 1
        rows = repeated_rows(frame, size * n_batches)
        batches = [raw_feeds(spec, rows.iloc[i * size : (i + 1) * size]) for i in range(n_batches)]
        repeat = repeats[0] if size == 1 else repeats[1]
        result[f"batch_{size}"] = median_microseconds_per_row(
            lambda feeds: session.run(list(outputs), feeds), batches, size, repeat
        )
    return result
