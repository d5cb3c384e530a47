"""What a snapshot engine (pandas or DuckDB) hands the tabular datamodule's `setup`.

Its own module so that the DuckDB engine (datamodules/duckdb_frame.py) and the datamodule that calls it
(datamodules/tabular.py) both import it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ORACLE_COLUMN = "oracle_probability"


class SnapshotEngineError(ValueError):
    """A datamodule, task or source that the DuckDB snapshot engine does not build."""


@dataclass
class BuiltFrame:
    """The snapshot rows with features (and the oracle), the as_of grid, the leakage audit, fairness group columns
    aligned with the rows, today's scoring rows and source counts.
    `tensor_dir`: where the engine wants the encoded tensors memory-mapped (None: in memory)."""

    frame: pd.DataFrame
    dates: list[pd.Timestamp]
    leakage_audit: dict[str, int]
    groups: dict[str, np.ndarray]
    scoring_rows: pd.DataFrame
    counts: dict[str, int]
    tensor_dir: Path | None = None
