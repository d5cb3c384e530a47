"""Vector index: IVF recall against exact search, filters honoured on both paths, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fulqrun_ml.search.index import IndexConfig, VectorIndex, VectorIndexError, recall_at_k


def _data(n: int = 20_000, dim: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(200, 16))
    projection = rng.normal(size=(16, dim))

    def draw(m: int) -> np.ndarray:
        x = (topics[rng.integers(0, 200, m)] + 0.6 * rng.normal(size=(m, 16))) @ projection
        x += 0.5 * rng.normal(size=(m, dim))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    meta = pd.DataFrame({"org": rng.choice(["a", "b"], n), "outcome": rng.choice(["won", "lost", "open"], n)})
    return draw(n), draw(50), meta


@pytest.fixture(scope="module")
def indexes() -> tuple[VectorIndex, VectorIndex, np.ndarray]:
    vectors, queries, meta = _data()
    flat = VectorIndex(vectors, meta, IndexConfig(kind="flat"))
    ivf = VectorIndex(vectors, meta, IndexConfig(kind="ivf", nlist=64, nprobe=8))
    return flat, ivf, queries


def test_flat_is_exact(indexes) -> None:
    flat, _, queries = indexes
    scores, rows = flat.search(queries[:3], k=5)
    brute = queries[:3] @ flat.vectors.T
    np.testing.assert_array_equal(rows, np.argsort(-brute, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.sort(brute, axis=1)[:, ::-1][:, :5], atol=1e-5)


def test_ivf_recall_against_exact(indexes) -> None:
    flat, ivf, queries = indexes
    _, truth = flat.search(queries, k=10)
    _, found = ivf.search(queries, k=10)
    _, one_list = ivf.search(queries, k=10, nprobe=1)
    assert recall_at_k(found, truth) >= 0.9
    assert recall_at_k(one_list, truth) < recall_at_k(found, truth)  # nprobe is really passed through


@pytest.mark.parametrize("filters", [{"org": "a"}, {"org": "b", "outcome": ["won", "lost"]}, {"outcome": "won"}])
def test_filters_on_ivf_and_exact_subset(indexes, filters) -> None:
    flat, ivf, queries = indexes
    allowed = flat.mask(filters)
    assert allowed is not None
    for index in (flat, ivf):
        _, rows = index.search(queries, k=10, filters=filters)
        assert (rows >= 0).all() and allowed[rows].all()
    # Small filtered sets are searched exactly: the same rows as brute force over the allowed rows.
    _, rows = flat.search(queries[:5], k=10, filters=filters)
    subset = np.flatnonzero(allowed)
    brute = subset[np.argsort(-(queries[:5] @ flat.vectors[subset].T), axis=1)[:, :10]]
    np.testing.assert_array_equal(rows, brute)


def test_ivf_filter_with_selector_path(indexes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the exact-subset threshold the filter runs inside faiss (IDSelectorBitmap)."""
    import fulqrun_ml.search.index as module

    monkeypatch.setattr(module, "EXACT_SUBSET_BELOW", 10)
    vectors, queries, meta = _data(seed=1)
    ivf = VectorIndex(vectors, meta, IndexConfig(kind="ivf", nlist=64, nprobe=8))
    flat = VectorIndex(vectors, meta, IndexConfig(kind="flat"))
    _, found = ivf.search(queries, k=10, filters={"outcome": "won"})
    _, truth = flat.search(queries, k=10, filters={"outcome": "won"})
    assert (meta["outcome"].to_numpy()[found] == "won").all()
    assert recall_at_k(found, truth) >= 0.9


def test_fewer_allowed_rows_than_k(indexes) -> None:
    vectors, queries, meta = _data(n=30)
    index = VectorIndex(vectors, meta)
    _, rows = index.search(queries[0], k=20, filters={"org": "a"})
    assert (rows[0][: (meta["org"] == "a").sum()] >= 0).all() and (rows[0][(meta["org"] == "a").sum() :] == -1).all()
    _, none = index.search(queries[0], k=3, filters={"org": "nobody"})
    assert (none == -1).all()


def test_bad_input_is_a_clear_error(indexes) -> None:
    flat, _, queries = indexes
    with pytest.raises(VectorIndexError, match="filter 'segment' is not an indexed column"):
        flat.search(queries[0], filters={"segment": "smb"})
    with pytest.raises(VectorIndexError, match="query has 3 dimensions, the index 64"):
        flat.search(np.ones(3))
    with pytest.raises(VectorIndexError, match="metadata has 2 rows for 3 vectors"):
        VectorIndex(np.ones((3, 4)), pd.DataFrame({"org": ["a", "b"]}))
