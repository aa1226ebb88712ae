"""Distance work shared by the seed strategies and their diagnostics, all through FAISS and in row
blocks, so memory stays linear in the pool and a memory-mapped matrix is streamed, never loaded.

Rows are L2-normalised, so the Euclidean distance of two rows is ``sqrt(2 - 2 cos)`` and lies in
[0, 2]: that is the scale of ``delta`` (the ball radius of ProbCover and of the coverage report).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmal._lazy import lazy_module
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError

faiss = lazy_module("faiss")  # imported on first use: fmal --help must not pay for it

BLOCK = 65536
#: delta is a Euclidean distance between unit vectors: (0, 2]
MAX_DELTA = 2.0


def check_delta(delta: object) -> float:
    """``delta`` must be a number with 0 < delta <= 2 (Euclidean distance between unit vectors)."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"delta must be a number with 0 < delta <= 2, got {delta!r}")
    d = float(delta)
    if not np.isfinite(d) or d <= 0.0 or d > MAX_DELTA:
        raise InvalidInputError(f"delta must satisfy 0 < delta <= 2 (Euclidean distance between unit vectors), got {delta!r}")
    return d


def check_fraction(value: object, name: str) -> float:
    """A number strictly between 0 and 1 (e.g. ``alpha``)."""
    v = float(check_positive(value, name))
    if v >= 1.0:
        raise InvalidInputError(f"{name} must satisfy 0 < {name} < 1, got {value!r}")
    return v


def check_n_classes(n_classes: object, n_rows: int | None = None) -> int:
    """``n_classes`` (k-means pseudo-classes of ProbCover's purity rule) must be an integer >= 2,
    and no more than the rows it clusters when ``n_rows`` is given."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise InvalidInputError(f"n_classes must be an integer >= 2 (k-means pseudo-classes for the delta rule), got {n_classes!r}")
    if n_rows is not None and n_classes > n_rows:
        raise InvalidInputError(f"n_classes must be <= the number of rows clustered ({n_rows}), got {n_classes}")
    return int(n_classes)


def sim_of_delta(delta: float) -> float:
    """Cosine similarity at Euclidean distance ``delta`` between unit vectors."""
    return 1.0 - 0.5 * float(delta) ** 2


def dist_of_sim(sim: np.ndarray) -> np.ndarray:
    """Euclidean distance between unit vectors of cosine similarity ``sim``."""
    return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(sim, dtype=np.float32), 0.0))


def block(X: np.ndarray, start: int, size: int = BLOCK) -> np.ndarray:
    """Rows ``start:start+size`` of ``X`` as a C-contiguous float32 array (a view when possible)."""
    return np.ascontiguousarray(X[start : start + size], dtype=np.float32)


def sample_rows(n: int, max_rows: int, rng: np.random.Generator, keep: np.ndarray | None = None) -> np.ndarray:
    """Sorted rows of a seeded uniform sample of at most ``max_rows`` rows, always holding ``keep``.

    All rows when ``n <= max_rows``."""
    if n <= max_rows:
        return np.arange(n, dtype=np.int64)
    keep = np.zeros(0, dtype=np.int64) if keep is None else np.asarray(keep, dtype=np.int64)
    chosen = np.zeros(n, dtype=bool)
    chosen[keep] = True
    need = max(max_rows - int(chosen.sum()), 0)
    if need:
        # draw a little more than needed, then drop the kept rows: O(max_rows), never O(n) randomness
        extra = rng.choice(n, size=min(n, need + keep.size), replace=False)
        extra = extra[~chosen[extra]][:need]
        chosen[extra] = True
    return np.nonzero(chosen)[0].astype(np.int64)


def nearest_sim(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row of ``X``: cosine similarity to its nearest row of ``centers`` and which one.

    One streamed pass over ``X``; the centers (a few thousand at most) are the only index."""
    n = X.shape[0]
    C = np.ascontiguousarray(centers, dtype=np.float32).reshape(-1, X.shape[1])
    idx = faiss.IndexFlatIP(C.shape[1])
    idx.add(C)
    sim = np.empty(n, dtype=np.float32)
    arg = np.empty(n, dtype=np.int64)
    for s in range(0, n, BLOCK):
        S, I = idx.search(block(X, s), 1)
        sim[s : s + len(S)] = S[:, 0]
        arg[s : s + len(S)] = I[:, 0]
    return sim, arg


@dataclass
class BallGraph:
    """The delta-ball graph of ``m`` rows in CSR form: ``nbrs[lims[i]:lims[i+1]]`` are the rows
    within ``delta`` of row ``i`` (itself included). Symmetric, since distance is."""

    lims: np.ndarray
    nbrs: np.ndarray

    @property
    def n_edges(self) -> int:
        return int(self.nbrs.size)

    def degree(self) -> np.ndarray:
        return np.diff(self.lims).astype(np.int64)

    def neighbours_of(self, rows: np.ndarray) -> np.ndarray:
        """Concatenated neighbour lists of ``rows`` (vectorised CSR gather)."""
        starts = self.lims[rows]
        lens = self.lims[rows + 1] - starts
        total = int(lens.sum())
        if total == 0:
            return np.zeros(0, dtype=self.nbrs.dtype)
        offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return self.nbrs[offs + np.arange(total)]


def ball_graph(Xs: np.ndarray, delta: float, *, query_block: int = 4096) -> BallGraph:
    """Delta-ball graph of the rows of ``Xs`` (in RAM, at most a sample) by FAISS range search,
    one block of query rows at a time."""
    m, d = Xs.shape
    idx = faiss.IndexFlatIP(d)
    idx.add(Xs)
    # IP range search returns sims > radius: lower the radius a hair so the ball is closed
    radius = sim_of_delta(delta) - 1e-6
    lims = np.zeros(m + 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    for s in range(0, m, query_block):
        q = Xs[s : s + query_block]
        lim, _, I = idx.range_search(q, radius)
        lims[s + 1 : s + len(q) + 1] = lims[s] + lim[1:]
        parts.append(I.astype(np.int32))
    nbrs = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return BallGraph(lims, nbrs)


def mean_ball_fraction(Xs: np.ndarray, delta: float, rng: np.random.Generator, n_probe: int = 256) -> float:
    """Mean share of ``Xs`` inside a delta-ball, estimated from ``n_probe`` random rows."""
    m = Xs.shape[0]
    q = Xs[np.sort(rng.choice(m, size=min(n_probe, m), replace=False))]
    idx = faiss.IndexFlatIP(Xs.shape[1])
    idx.add(Xs)
    lim, _, _ = idx.range_search(np.ascontiguousarray(q), sim_of_delta(delta) - 1e-6)
    return float(np.diff(lim).mean() / m)


def tiling_radius(Xs: np.ndarray, n_balls: int, rng: np.random.Generator, *, share: float = 0.5, n_probe: int = 1000) -> float:
    """The radius at which a typical ball holds ``share`` x m / ``n_balls`` of the m rows of ``Xs``:
    the median distance of ``n_probe`` random rows to their K-th nearest other row,
    K = share x m / n_balls (1..2048). ``n_balls`` such balls could cover about ``share`` of the
    rows if they did not overlap: the scale at which a budget of balls covers the pool, not one dense
    corner of it. One FAISS k-NN search; memory n_probe x K."""
    m = Xs.shape[0]
    k = int(np.clip(np.ceil(share * m / max(int(n_balls), 1)), 1, min(2048, m - 1))) if m > 1 else 0
    if k == 0:
        return MAX_DELTA
    q = np.ascontiguousarray(Xs[np.sort(rng.choice(m, size=min(n_probe, m), replace=False))])
    idx = faiss.IndexFlatIP(Xs.shape[1])
    idx.add(Xs)
    S, _ = idx.search(q, k + 1)  # the row itself comes first
    return float(min(np.median(dist_of_sim(S[:, k])), MAX_DELTA))


def impurity_radius(Xs: np.ndarray, pseudo: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For each query position of ``Xs``: the distance to its nearest row with another pseudo-label
    (inf when every row shares its label). A delta-ball around the query is pure iff delta < it."""
    r2 = np.full(queries.size, np.inf, dtype=np.float32)
    qlab = pseudo[queries]
    for c in np.unique(pseudo):
        members = np.nonzero(pseudo == c)[0]
        ask = np.nonzero(qlab != c)[0]
        if members.size == 0 or ask.size == 0:
            continue
        idx = faiss.IndexFlatL2(Xs.shape[1])
        idx.add(np.ascontiguousarray(Xs[members]))
        D, _ = idx.search(np.ascontiguousarray(Xs[queries[ask]]), 1)
        r2[ask] = np.minimum(r2[ask], D[:, 0])
    return np.sqrt(np.maximum(r2, 0.0))


def purity_delta(
    Xs: np.ndarray, pseudo: np.ndarray, alpha: float, rng: np.random.Generator, max_queries: int = 5000
) -> tuple[float, float]:
    """The paper's rule (Yehuda et al., 2022): the largest delta whose balls are pure (one
    pseudo-label) for at least ``alpha`` of the rows. Purity is measured on at most
    ``max_queries`` rows of ``Xs``. Returns (delta, purity reached at that delta)."""
    m = Xs.shape[0]
    queries = np.sort(rng.choice(m, size=min(m, max_queries), replace=False))
    r = np.sort(impurity_radius(Xs, pseudo, queries))
    if not np.isfinite(r).any():
        return MAX_DELTA, 1.0  # one pseudo-label only: every ball is pure
    # purity(delta) = share of r > delta; allowed impure share 1 - alpha
    j = int(np.floor((1.0 - alpha) * r.size))
    delta = float(r[min(j, r.size - 1)]) * (1.0 - 1e-4)
    delta = float(min(max(delta, 1e-3), MAX_DELTA))
    purity = float((r > delta).mean())
    return delta, purity
