"""Encoded training tensors written once as `.npy` files and read back memory-mapped, a batch at a time.

Why: at a million deals the snapshot frame has millions of rows; `BatchDictDataset` keeps a second, private
copy of every encoded column in RAM for the whole fit. Memory-mapped arrays leave that to the page cache:
a batch reads only its rows, and pages nobody reads again can be dropped under memory pressure. Each batch
is returned in the same layout as `BatchDictDataset` (same keys, dtypes and row order), so the loaders
(`datamodules/loaders.py`), the training step and warm start do not know the difference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def write_arrays(arrays: dict[str, np.ndarray], directory: str | Path) -> Path:
    """Write each array to `<directory>/<key>.npy`; each file is renamed into place when complete, so a
    crash never leaves a truncated array that a later read would take for data."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    lengths = {key: len(values) for key, values in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays of one dataset must have the same number of rows, got {lengths}")
    for key, values in arrays.items():
        if not key.isidentifier():
            raise ValueError(f"array name {key!r} is not a plain identifier (it becomes a file name)")
        partial = out / f"{key}.npy.partial"
        with open(partial, "wb") as handle:
            np.save(handle, np.ascontiguousarray(values))
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out / f"{key}.npy")
    return out


class MemmapBatchDataset(Dataset):
    """The arrays of `write_arrays`, memory-mapped; indexed by a list of row numbers, returns a whole batch."""

    def __init__(self, directory: str | Path) -> None:
        files = sorted(Path(directory).glob("*.npy"))
        if not files:
            raise FileNotFoundError(f"{directory} holds no .npy arrays")
        self.arrays = {file.stem: np.load(file, mmap_mode="r") for file in files}
        self.length = len(next(iter(self.arrays.values())))

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, rows: list[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(rows, dtype=np.int64)
        return {key: torch.from_numpy(np.asarray(values[index])) for key, values in self.arrays.items()}


def memmap_datasets(module: Any, directory: str | Path) -> dict[str, MemmapBatchDataset]:
    """Encode each split of a tabular datamodule (`module.spec`, `module.frames`, `module.target`) once into
    `<directory>/<split>/`, and return memory-mapped datasets over the files."""
    datasets = {}
    for split in module.frames:
        arrays = module.spec.encode(module.frames[split])
        arrays["target"] = module.target(split)
        datasets[split] = MemmapBatchDataset(write_arrays(arrays, Path(directory) / split))
    return datasets
