"""Inference cost per row: the timing rule every baseline and graph on the leaderboard is measured by.

One intra-op thread, as the serving config runs it (`ort_intra_op_threads: 1`), so the number is a per-core
cost that does not depend on how many cores the benchmark machine happens to have free. Timings are
medians over repeated calls after a warm-up; inputs are prepared up front so only `session.run` is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def median_microseconds_per_row(run: Callable[[Any], object], batches: Sequence[Any], rows: int, repeats: int) -> float:
    """Median wall time of `run(batch)` over `repeats` calls cycling through `batches`, per row, in µs."""
    for batch in batches[: min(5, len(batches))]:
        run(batch)  # warm-up: first calls allocate buffers and pick kernels
    timings = []
    for i in range(repeats):
        t0 = time.perf_counter()
        run(batches[i % len(batches)])
        timings.append(time.perf_counter() - t0)
    return float(np.median(timings)) * 1e6 / rows
