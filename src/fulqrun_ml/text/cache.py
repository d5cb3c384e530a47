"""An on-disk cache of embeddings, one file per scrubbed-text hash.

Why per hash: the same note, summary or MEDDPICC answer recurs across snapshots of a deal and across
retraining runs; encoding it again costs ~5-20 ms of CPU each time, reading it back ~0.1 ms. The key is
the SHA-256 of the *scrubbed* text plus the model tag, so (a) the cache never holds a hash of a raw text
with a person's email in it (a guessable hash is a PII leak), and (b) a new model never reads old vectors.

Writes are atomic (temporary sibling, fsync, rename): a reader sees a complete vector or none, and two
processes writing the same key write the same bytes.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np

from fulqrun_ml.crypto.atomic import atomic_write_bytes


def text_key(text: str, model_tag: str) -> str:
    """The cache key of one (already scrubbed) text under one model."""
    return hashlib.sha256(f"{model_tag}\x00{text}".encode()).hexdigest()


class EmbeddingCache:
    """`get`/`put` float32 vectors by key under `root/<model_tag>/<2 hex>/<key>.npy`."""

    def __init__(self, root: str | Path, model_tag: str, dim: int) -> None:
        self.root = Path(root) / model_tag
        self.model_tag = model_tag
        self.dim = dim

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The vector, or None when absent or unreadable (a damaged file is recomputed, not trusted)."""
        path = self._path(key)
        try:
            vector = np.load(path, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None
        if vector.shape != (self.dim,) or vector.dtype != np.float32:
            return None
        return vector

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store one vector atomically."""
        vector = np.asarray(vector, dtype=np.float32)
        if vector.shape != (self.dim,):
            raise ValueError(f"embedding must have shape ({self.dim},), got {vector.shape}")
        buffer = io.BytesIO()
        np.save(buffer, vector, allow_pickle=False)
        atomic_write_bytes(self._path(key), buffer.getvalue())

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.npy")) if self.root.exists() else 0
