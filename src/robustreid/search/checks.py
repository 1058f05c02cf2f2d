"""The checks every vector store makes of its inputs (:mod:`robustreid.search.store`,
:mod:`robustreid.search.milvus_store`): one place, so that every kind refuses the same inputs with the same
one-line message."""

from __future__ import annotations

import numpy as np

__all__ = ["check_k", "check_row", "check_vectors"]


def check_vectors(vectors, dim: int | None) -> np.ndarray:
    """``vectors`` as a contiguous float32 ``(N, dim)`` matrix of finite values (one vector: ``(1, dim)``)."""
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim == 1:
        v = v[None, :]
    if v.ndim != 2:
        raise ValueError(f"vectors: expected shape (N, D), got {v.shape}")
    if dim is not None and v.shape[1] != dim:
        raise ValueError(f"vectors: expected {dim} columns (the store's dimension), got {v.shape[1]}")
    if not np.isfinite(v).all():
        raise ValueError("vectors: expected finite values")
    return np.ascontiguousarray(v)


def check_k(k) -> int:
    """``k`` of a search: an integer >= 1."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r}: expected an integer >= 1")
    return int(k)


def check_row(row, n: int) -> int:
    """A stored row of a store of ``n`` rows (``IndexError`` otherwise)."""
    if isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < n:
        raise IndexError(f"row {row!r}: the store holds rows 0..{n - 1}")
    return int(row)
