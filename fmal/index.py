"""FAISS indexes over a pool's embeddings: build, save (atomically), load with checks, search.

Embeddings are L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from fmal._atomic import atomic_path
from fmal.exceptions import CorruptPoolError, InvalidInputError

INDEX_KINDS = ("flat",)


def build_index(X: np.ndarray, kind: str = "flat", *, batch: int = 65536) -> faiss.Index:
    """Build an exact inner-product index over ``X`` (added in batches, so a memmap is fine)."""
    if kind not in INDEX_KINDS:
        raise InvalidInputError(f"index must be one of [{', '.join(INDEX_KINDS)}], got {kind!r}")
    index = faiss.IndexFlatIP(int(X.shape[1]))
    for start in range(0, X.shape[0], batch):
        index.add(np.ascontiguousarray(X[start : start + batch], dtype=np.float32))
    return index


def describe(index: faiss.Index, kind: str = "flat") -> dict[str, object]:
    """What the manifest records about an index."""
    return {"type": kind, "factory": "Flat", "metric": "inner_product", "ntotal": int(index.ntotal), "dim": int(index.d)}


def save_index(index: faiss.Index, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: str | os.PathLike[str], *, n: int, dim: int) -> faiss.Index:
    """Load an index and check it holds ``n`` vectors of ``dim`` dimensions."""
    path = Path(path)
    if not path.is_file():
        raise CorruptPoolError(f"{path}: index file missing; rebuild the pool with fmal embed --overwrite")
    try:
        index = faiss.read_index(str(path))
    except Exception:
        raise CorruptPoolError(f"{path}: index file is unreadable; rebuild the pool with fmal embed --overwrite") from None
    if index.ntotal != n or index.d != dim:
        raise CorruptPoolError(
            f"{path}: index holds {index.ntotal} vectors of dim {index.d}, the pool {n} of dim {dim}; "
            "rebuild the pool with fmal embed --overwrite"
        )
    return index


def knn(index: faiss.Index, queries: np.ndarray, k: int, *, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of each query row: (similarities, row ids), batched for memory."""
    k = int(min(k, index.ntotal))
    sims = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for s in range(0, queries.shape[0], batch):
        q = np.ascontiguousarray(queries[s : s + batch], dtype=np.float32)
        sims[s : s + len(q)], ids[s : s + len(q)] = index.search(q, k)
    return sims, ids
