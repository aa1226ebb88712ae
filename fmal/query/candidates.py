"""Which rows a query round scores: all unlabeled rows, or (SEALS, Coleman et al., 2022) only the
K nearest neighbours of the labeled rows, found with the pool's FAISS index, so a round's cost
stops growing with the pool."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmal.exceptions import InvalidInputError
from fmal.index import knn


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
    raise InvalidInputError(f"candidates must be 'all' or 'knn:K' with K a positive integer, got {spec!r}")


def knn_candidates(index, X: np.ndarray, labeled: np.ndarray, excluded: np.ndarray, k: int, budget: int) -> np.ndarray:
    """Sorted rows among the ``k`` nearest neighbours of the labeled rows that are not ``excluded``
    (a boolean mask over the pool). ``k`` doubles until at least ``budget`` rows qualify."""
    n = X.shape[0]
    Xl = np.ascontiguousarray(X[np.sort(labeled)], dtype=np.float32)
    while True:
        _, ids = knn(index, Xl, min(k, n))
        ids = np.unique(ids[ids >= 0])
        cand = ids[~excluded[ids]]
        if cand.size >= budget or k >= n:
            return cand
        k *= 2
