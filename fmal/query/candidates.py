"""Which rows a query round scores: all unlabeled rows, or (SEALS, Coleman et al., 2022) only the
K nearest neighbours of the labeled rows, found with the pool's FAISS index, so a round's cost
stops growing with the pool.

On an exact (Flat) index, the default below 200k rows, the neighbours are found from the pool's
own matrix by blocked products (labeled rows x a block of the pool, top K kept per block, blocks
over the cores with one BLAS thread each, see fmal._parallel) rather than by the index's search:
the same exact neighbours, but FAISS's OpenMP threads and OpenBLAS's fought over the 2 cores and
made ``knn:50`` slower than scoring every row (100k rows, 200 labels: 1.39 s CPU in the search
alone, against 0.65 s for a whole ``all`` round). Approximate indexes (IVF, HNSW) are searched,
with one thread per library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fmal._parallel import parallel_map, single_blas
from fmal.exceptions import InvalidInputError
from fmal.index import knn
from fmal.seed.geometry import block

#: pool rows per block of the exact search (labeled x block products)
KNN_BLOCK = 16384
#: pool rows per block scored by the probe
SCORE_BLOCK = 65536


@dataclass(frozen=True)
class CandidateSpec:
    """``kind`` is "all" or "knn"; ``k`` the neighbours per labeled row for "knn"."""

    kind: str
    k: int = 0


def parse_candidates(spec: str) -> CandidateSpec:
    """Parse ``all`` or ``knn:K`` (K a positive integer)."""
    s = str(spec).strip().lower()
    if s == "all":
        return CandidateSpec("all")
    if s.startswith("knn:"):
        try:
            k = int(s[4:])
        except ValueError:
            k = 0
        if k >= 1:
            return CandidateSpec("knn", k)
    raise InvalidInputError(f"candidates must be 'all' or 'knn:K' with K a positive integer, got {spec!r}",
                            param="candidates")


def knn_candidates(index, X: np.ndarray, labeled: np.ndarray, excluded: np.ndarray, k: int, budget: int) -> np.ndarray:
    """Sorted rows among the ``k`` nearest neighbours of the labeled rows that are not ``excluded``
    (a boolean mask over the pool). ``k`` doubles until at least ``budget`` rows qualify."""
    n = X.shape[0]
    Xl = np.ascontiguousarray(X[np.sort(labeled)], dtype=np.float32)
    exact = type(index).__name__.startswith("IndexFlat")
    while True:
        with single_blas():
            ids = exact_neighbours(X, Xl, min(k, n)) if exact else knn(index, Xl, min(k, n))[1]
        ids = np.unique(ids[ids >= 0])
        cand = ids[~excluded[ids]]
        if cand.size >= budget or k >= n:
            return cand
        k *= 2


def exact_neighbours(X: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Rows of the ``k`` largest inner products of each query with the rows of ``X`` [q, k]
    (unordered), streaming ``X`` in blocks over the cores; call inside ``single_blas``."""
    n = X.shape[0]

    def one(s: int) -> tuple[np.ndarray, np.ndarray]:
        S = queries @ block(X, s, KNN_BLOCK).T
        kk = min(k, S.shape[1])
        top = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        return np.take_along_axis(S, top, axis=1), top + s

    parts = parallel_map(one, range(0, n, KNN_BLOCK))
    sims = np.concatenate([p[0] for p in parts], axis=1)
    rows = np.concatenate([p[1] for p in parts], axis=1)
    top = np.argpartition(-sims, min(k, sims.shape[1]) - 1, axis=1)[:, :k]
    return np.take_along_axis(rows, top, axis=1)


def score_rows(probe: Any, X: np.ndarray, rows: np.ndarray, batch: int = SCORE_BLOCK) -> np.ndarray:
    """Class probabilities (``probe.predict_proba``) of the sorted ``rows`` of ``X`` [rows, classes].

    When they are most of the pool, contiguous blocks are scored whole and the rows kept: gathering
    100k scattered rows of a memory-mapped pool cost 5x the CPU of streaming it (0.28 s against
    0.05 s, 100k x 384). The blocks go over the cores (one BLAS thread each; the products release
    the GIL), each row scored by the same product as on one thread, so the numbers do not change
    (on the busy 2-core machine, 1M rows: the same 0.5 s of CPU and no measurable wall gain)."""
    out = np.empty((rows.size, probe.classes_.size), dtype=np.float32)
    if 2 * rows.size < X.shape[0]:
        for s in range(0, rows.size, batch):
            out[s : s + batch] = probe.predict_proba(np.asarray(X[rows[s : s + batch]]))
        return out

    def one(s: int) -> None:
        lo, hi = np.searchsorted(rows, (s, s + batch))
        if hi > lo:
            out[lo:hi] = probe.predict_proba(block(X, s, batch))[rows[lo:hi] - s]

    with single_blas():  # set here, once: the threads' own (nested) limits then cannot undo each other's
        parallel_map(one, range(0, X.shape[0], batch))
    return out
