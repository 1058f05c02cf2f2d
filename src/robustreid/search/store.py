"""The vector store: unit descriptors in, the ``k`` nearest by cosine out, behind one small interface.

Every store holds float32 row vectors with ids ``0..len-1`` (the row order of :meth:`add`), so the SQLite
metadata of :mod:`robustreid.search.index` refers to a descriptor by its row. The interface:

* ``add(vectors)`` appends rows; ``search(queries, k) -> (scores, rows)``, each ``(Q, min(k, len))``, best
  first, ``scores`` the inner products (the cosine on unit vectors); ``vector(row)``, one stored row as it
  was added (without reconstructing the others); ``len(store)``;
* ``save(path)`` writes one file (atomically, :mod:`robustreid.atomicfile`); ``STORES[kind].load(path)``.

Kinds (``STORES``):

* ``exact``: a NumPy matrix and one matrix-vector product per query; no dependency, no build, exact. The file
  is a ``.npy`` opened memory-mapped, so a server starts at once and the page cache shares it.
* ``faiss-flat``: FAISS's ``IndexFlatIP`` (exact as well; its BLAS kernels); the FAISS kinds need
  ``pip install 'robustreid[faiss]'``.
* ``faiss-hnsw``: FAISS's ``IndexHNSWFlat`` on the inner product (approximate; ``M`` links per node,
  ``ef_search`` candidates per query). An add inserts the new vectors into the loaded graph and the whole
  graph is saved again as the new generation's file; each add loads and writes all of it.
* ``faiss-ivf``: FAISS's ``IndexIVFFlat`` (approximate; ``nlist`` k-means lists trained at the first add, a
  query scans ``nprobe`` of them); memory about that of the flat matrix; docs/SEARCH.md has its build time.
* ``milvus``: the vectors in a Milvus collection (an existing distributed engine), embedded Milvus Lite in the
  index folder by default, a Milvus server by URI in production; the saved file is a JSON pointer to the
  collection with the committed row count (:mod:`robustreid.search.milvus_store`); needs
  ``pip install 'robustreid[milvus]'``.

Which kind is the default is decided by ``benchmarks/bench_search.py`` (docs/SEARCH.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..atomicfile import atomic_write
from .checks import check_k, check_row, check_vectors
from .milvus_store import MilvusStore

__all__ = [
    "DEFAULT_STORE",
    "STORES",
    "ExactStore",
    "FaissFlatStore",
    "FaissHNSWStore",
    "FaissIVFStore",
    "MilvusStore",
    "load_store",
    "make_store",
    "store_suffix",
    "top_k",
]

DEFAULT_STORE = "exact"


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest of each row of ``scores`` ``(Q, N)``, best first (ties: the smaller row first)."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.empty((len(scores), 0), np.float32), np.empty((len(scores), 0), np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (len(scores), 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return np.take_along_axis(scores, rows, axis=1).astype(np.float32), rows


class ExactStore:
    """Exact inner-product search with NumPy (module docstring)."""

    kind = "exact"
    suffix = ".npy"

    def __init__(self, dim: int, vectors: np.ndarray | None = None):
        self.dim = int(dim)
        self._vectors = np.empty((0, self.dim), np.float32) if vectors is None else vectors

    def __len__(self) -> int:
        return len(self._vectors)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    def vector(self, row: int) -> np.ndarray:
        return np.array(self._vectors[check_row(row, len(self))], dtype=np.float32)

    def add(self, vectors) -> None:
        v = check_vectors(vectors, self.dim)
        self._vectors = np.concatenate([np.asarray(self._vectors), v]) if len(self._vectors) else v

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = check_vectors(queries, self.dim), check_k(k)
        return top_k(q @ np.asarray(self._vectors).T, k)

    def save(self, path) -> Path:
        return atomic_write(path, lambda f: np.save(f, np.asarray(self._vectors), allow_pickle=False))

    @classmethod
    def load(cls, path) -> ExactStore:
        vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        if vectors.ndim != 2 or vectors.dtype != np.float32:
            raise ValueError(f"{path}: expected a float32 (N, D) matrix, got {vectors.dtype} {vectors.shape}")
        return cls(vectors.shape[1], vectors)


def _faiss():
    import faiss  # optional: robustreid[faiss]

    return faiss


class _FaissStore:
    """What the FAISS kinds share: the index object, its (de)serialisation, and search."""

    kind = ""
    suffix = ".faiss"

    def __init__(self, dim: int, index=None):
        self.dim = int(dim)
        self._index = index if index is not None else self._new_index()

    def _new_index(self):
        raise NotImplementedError

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def vectors(self) -> np.ndarray:
        return self._index.reconstruct_n(0, len(self)) if len(self) else np.empty((0, self.dim), np.float32)

    def vector(self, row: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(check_row(row, len(self))), dtype=np.float32)

    def add(self, vectors) -> None:
        self._index.add(check_vectors(vectors, self.dim))

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, k = check_vectors(queries, self.dim), check_k(k)
        k = min(k, len(self))
        if k == 0:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        scores, rows = self._index.search(q, k)
        return scores.astype(np.float32), rows.astype(np.int64)

    def save(self, path) -> Path:
        data = _faiss().serialize_index(self._index)
        return atomic_write(path, lambda f: f.write(data.tobytes()))

    @classmethod
    def load(cls, path):
        faiss = _faiss()
        index = faiss.deserialize_index(np.fromfile(path, dtype=np.uint8))
        return cls(index.d, index)


class FaissFlatStore(_FaissStore):
    """FAISS ``IndexFlatIP``: exact, FAISS's kernels."""

    kind = "faiss-flat"

    def _new_index(self):
        return _faiss().IndexFlatIP(self.dim)


class FaissHNSWStore(_FaissStore):
    """FAISS ``IndexHNSWFlat`` on the inner product: approximate (``M`` links, ``ef_search`` candidates)."""

    kind = "faiss-hnsw"
    M = 32
    EF_CONSTRUCTION = 80
    EF_SEARCH = 128

    def _new_index(self):
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(self.dim, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.EF_CONSTRUCTION
        index.hnsw.efSearch = self.EF_SEARCH
        return index

    @classmethod
    def load(cls, path):
        store = super().load(path)
        store._index.hnsw.efSearch = cls.EF_SEARCH
        return store


class FaissIVFStore(_FaissStore):
    """FAISS ``IndexIVFFlat`` on the inner product: approximate. The first add trains ``nlist`` centroids
    (about ``4 sqrt(N)``, on at most ``TRAIN_POINTS`` of its vectors); a query scans the ``nprobe`` nearest
    lists (``nlist / NPROBE_DIVISOR``, at least ``MIN_NPROBE``). Later adds keep the first add's centroids."""

    kind = "faiss-ivf"
    TRAIN_POINTS = 100_000
    NPROBE_DIVISOR = 16
    MIN_NPROBE = 16

    _has_direct_map = False

    def _new_index(self):
        return None  # made at the first add, when the number of lists can be chosen

    def __len__(self) -> int:
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def vectors(self) -> np.ndarray:
        if not len(self):
            return np.empty((0, self.dim), np.float32)
        self._direct_map()
        return self._index.reconstruct_n(0, len(self))

    def vector(self, row: int) -> np.ndarray:
        row = check_row(row, len(self))
        self._direct_map()
        return super().vector(row)

    def _direct_map(self) -> None:
        """Row -> list entry, which ``reconstruct`` needs; made once (later adds keep it up to date)."""
        if not self._has_direct_map:
            self._index.make_direct_map()
            self._has_direct_map = True

    def add(self, vectors) -> None:
        v = check_vectors(vectors, self.dim)
        if self._index is None:
            if not len(v):
                return
            faiss = _faiss()
            nlist = int(np.clip(4 * np.sqrt(len(v)), 1, max(1, len(v) // 39)))
            # the factory's index owns its quantizer (one made here would be freed by Python under it)
            index = faiss.index_factory(self.dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            sample = v if len(v) <= self.TRAIN_POINTS else v[np.random.default_rng(0).choice(
                len(v), self.TRAIN_POINTS, replace=False)]
            index.train(sample)
            self._index = index
            self._set_nprobe()
        self._index.add(v)

    def _set_nprobe(self) -> None:
        self._index.nprobe = max(self.MIN_NPROBE, self._index.nlist // self.NPROBE_DIVISOR)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._index is None:
            q, _ = check_vectors(queries, self.dim), check_k(k)
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        return super().search(queries, k)

    def save(self, path) -> Path:
        if self._index is None:  # nothing trained yet: an empty flat index stands for it
            data = _faiss().serialize_index(_faiss().IndexFlatIP(self.dim))
            return atomic_write(path, lambda f: f.write(data.tobytes()))
        return super().save(path)

    @classmethod
    def load(cls, path):
        store = super().load(path)
        if store._index.ntotal == 0 and not hasattr(store._index, "nlist"):
            store._index = None
        else:
            store._set_nprobe()
        return store


STORES = {cls.kind: cls for cls in (ExactStore, FaissFlatStore, FaissHNSWStore, FaissIVFStore,
                                         MilvusStore)}


def _check_kind(kind: str) -> type:
    if kind not in STORES:
        raise ValueError(f"store {kind!r}: expected one of {', '.join(STORES)}")
    return STORES[kind]


def make_store(kind: str, dim: int):
    """An empty store of ``kind`` (``STORES``) for ``dim``-dimensional vectors."""
    return _check_kind(kind)(dim)


def store_suffix(kind: str) -> str:
    return _check_kind(kind).suffix


def load_store(kind: str, path: str | os.PathLike):
    """The store of ``kind`` saved in ``path``."""
    cls = _check_kind(kind)
    try:
        return cls.load(path)
    except (ValueError, OSError, EOFError, RuntimeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a readable {kind} vector file ({err})") from None

