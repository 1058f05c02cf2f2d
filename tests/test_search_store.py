"""The vector stores (robustreid.search.store) against a slow exact loop."""

import numpy as np
import pytest

from robustreid.search.embedding import normalize_rows
from robustreid.search.store import STORES, load_store, make_store, top_k

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False


def slow_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scored = []
    for row, v in enumerate(vectors):
        scored.append((-sum(float(a) * float(b) for a, b in zip(v, query)), row))
    return [row for _, row in sorted(scored)[:k]]


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return normalize_rows(np.random.default_rng(seed).standard_normal((n, dim)))


def kinds():
    out = ["exact", "faiss-flat"]
    return [pytest.param(k, marks=pytest.mark.skipif(not HAVE_FAISS and k != "exact",
                                                     reason="faiss-cpu is not installed (robustreid[faiss])"))
            for k in out]


@pytest.mark.parametrize("kind", kinds())
def test_exact_kinds_match_a_slow_loop(kind):
    vectors, queries = unit_vectors(300, 16), unit_vectors(5, 16, seed=1)
    store = make_store(kind, 16)
    store.add(vectors[:100])
    store.add(vectors[100:])
    assert len(store) == 300
    scores, rows = store.search(queries, 10)
    assert rows.shape == scores.shape == (5, 10)
    for q, row in zip(queries, rows):
        assert row.tolist() == slow_top_k(vectors, q, 10)
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, rows, axis=1), atol=1e-5)


@pytest.mark.parametrize("kind", kinds())
def test_save_and_load_give_the_same_answers(kind, tmp_path):
    vectors = unit_vectors(50, 8)
    store = make_store(kind, 8)
    store.add(vectors)
    path = store.save(tmp_path / f"v{STORES[kind].suffix}")
    again = load_store(kind, path)
    assert len(again) == 50 and again.dim == 8
    np.testing.assert_array_equal(again.search(vectors[:3], 5)[1], store.search(vectors[:3], 5)[1])
    np.testing.assert_allclose(np.asarray(again.vectors), vectors, atol=1e-6)


@pytest.mark.skipif(not HAVE_FAISS, reason="faiss-cpu is not installed (robustreid[faiss])")
@pytest.mark.parametrize("kind", ["faiss-hnsw", "faiss-ivf"])
def test_approximate_stores_recall_on_a_small_set(kind, tmp_path):
    rng = np.random.default_rng(3)  # 100 "persons" of 20 tracklets each; queries near a person's tracklets
    centres = unit_vectors(100, 32, seed=4)
    vectors = normalize_rows(np.repeat(centres, 20, axis=0) + 0.2 * rng.standard_normal((2000, 32)))
    queries = normalize_rows(centres[:20] + 0.2 * rng.standard_normal((20, 32)))
    store = make_store(kind, 32)
    store.add(vectors[:1500])
    store.add(vectors[1500:])
    assert len(store) == 2000
    store = load_store(kind, store.save(tmp_path / f"v{STORES[kind].suffix}"))
    np.testing.assert_allclose(np.asarray(store.vectors)[1999], vectors[1999], atol=1e-6)
    _, rows = store.search(queries, 10)
    exact = top_k(queries @ vectors.T, 10)[1]
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows.tolist(), exact.tolist())])
    assert recall >= 0.95


def test_top_k_orders_ties_by_row_and_caps_k():
    scores = np.array([[0.5, 0.9, 0.5, 0.1]], np.float32)
    _, rows = top_k(scores, 3)
    assert rows.tolist() == [[1, 0, 2]]
    assert top_k(scores, 10)[1].tolist() == [[1, 0, 2, 3]]
    assert make_store("exact", 4).search(np.ones((1, 4)), 5)[1].shape == (1, 0)


def test_bad_inputs_are_value_errors(tmp_path):
    store = make_store("exact", 4)
    with pytest.raises(ValueError, match="expected 4 columns"):
        store.add(np.ones((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        store.add(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="k=0"):
        store.search(np.ones((1, 4)), 0)
    with pytest.raises(ValueError, match="store 'annoy'"):
        make_store("annoy", 4)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="bad.npy: not a readable exact vector file"):
        load_store("exact", tmp_path / "bad.npy")


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.skipif(
    not HAVE_FAISS and k != "exact", reason="faiss-cpu is not installed (robustreid[faiss])"))
    for k in STORES])
def test_one_stored_row_is_the_row_added(kind, tmp_path):
    vectors = unit_vectors(400, 8, seed=5)
    exact = make_store("exact", 8)
    exact.add(vectors)
    store = make_store(kind, 8)
    store.add(vectors[:300])
    for row in (0, 17, 299):  # the exact store's row, as added, bit for bit
        np.testing.assert_array_equal(store.vector(row), exact.vector(row))
    store.add(vectors[300:])  # after a later add too (the IVF kind's row map is kept up to date)
    np.testing.assert_array_equal(store.vector(350), vectors[350])
    store = load_store(kind, store.save(tmp_path / f"v{STORES[kind].suffix}"))
    for row in (0, 299, 300, 399):
        assert store.vector(row).dtype == np.float32
        np.testing.assert_array_equal(store.vector(row), vectors[row])
    for bad in (-1, 400, True):
        with pytest.raises(IndexError, match="rows 0..399"):
            store.vector(bad)
