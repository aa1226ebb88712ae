"""Coverage-based cold start: greedy k-center (core-set, Sener & Savarese, 2018).

Distances are computed row block by row block against each new center, so memory is linear in
the pool and a memory-mapped matrix is streamed, never loaded whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal._validation import check_budget, check_indices
from fmal.seed.base import SEED_STRATEGIES, SeedResult

_BLOCK = 65536


def _update_min_dist(X: np.ndarray, centers: np.ndarray, min_dist: np.ndarray) -> None:
    """min_dist = min(min_dist, cosine distance of every row to any of ``centers``), in place."""
    C = np.ascontiguousarray(centers, dtype=np.float32).reshape(-1, X.shape[1])
    for s in range(0, X.shape[0], _BLOCK):
        xb = np.asarray(X[s : s + _BLOCK], dtype=np.float32)
        d = 1.0 - (xb @ C.T).max(axis=1)
        np.minimum(min_dist[s : s + len(xb)], d, out=min_dist[s : s + len(xb)])


@SEED_STRATEGIES.register("kcenter")
def kcenter_seed(
    X: np.ndarray, budget: int, *, index: Any = None, labeled: np.ndarray | None = None, random_state: int = 0, **_: Any
) -> SeedResult:
    """Greedy k-center: repeatedly take the row farthest (cosine distance) from every row chosen
    or labeled so far. Without labels the first center is the row nearest the pool's mean.
    Score: the distance at the moment the row was picked (the coverage radius so far)."""
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    budget = check_budget(budget, n - labeled.size)
    min_dist = np.full(n, np.inf, dtype=np.float32)
    picks: list[int] = []
    scores: list[float] = []
    if labeled.size:
        for s in range(0, labeled.size, 1024):
            _update_min_dist(X, np.asarray(X[labeled[s : s + 1024]]), min_dist)
    else:
        mean = np.zeros(X.shape[1], dtype=np.float64)
        for s in range(0, n, _BLOCK):
            mean += np.asarray(X[s : s + _BLOCK], dtype=np.float64).sum(axis=0)
        sims = np.full(n, -np.inf, dtype=np.float32)
        m = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        for s in range(0, n, _BLOCK):
            sims[s : s + _BLOCK] = np.asarray(X[s : s + _BLOCK], dtype=np.float32) @ m
        first = int(np.argmax(sims))
        picks.append(first)
        scores.append(float("nan"))
        _update_min_dist(X, np.asarray(X[first]), min_dist)
    min_dist[labeled] = -np.inf
    min_dist[picks] = -np.inf
    while len(picks) < budget:
        i = int(np.argmax(min_dist))
        picks.append(i)
        scores.append(float(max(min_dist[i], 0.0)))
        _update_min_dist(X, np.asarray(X[i]), min_dist)
        min_dist[i] = -np.inf
    radius = float(np.max(min_dist)) if np.isfinite(min_dist).any() else 0.0
    info = {"coverage_radius": max(radius, 0.0)}
    return SeedResult(np.asarray(picks, dtype=np.int64), np.asarray(scores), np.full(len(picks), -1, dtype=np.int64), info)
