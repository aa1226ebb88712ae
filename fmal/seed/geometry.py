"""Distance work shared by the seed strategies and their diagnostics, in row blocks, so memory
stays linear in the pool and a memory-mapped matrix is streamed, never loaded.

Every distance here is a block of one matrix product (numpy, one BLAS thread per block, blocks
spread over the cores by ``fmal._parallel``), followed by the reduction the caller needs (argmax,
k-th largest, count, threshold). On the 2-core machine the FAISS calls they replace (flat search,
k-NN, range search) were 2-7x slower on the same products, from FAISS's OpenMP threads and
OpenBLAS's stepping on each other, and they cannot fuse two searches into one pass.

Rows are L2-normalised, so the Euclidean distance of two rows is ``sqrt(2 - 2 cos)`` and lies in
[0, 2]: that is the scale of ``delta`` (the ball radius of ProbCover and of the coverage report).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmal._parallel import n_workers, parallel_map, single_blas
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError

BLOCK = 65536
#: delta is a Euclidean distance between unit vectors: (0, 2]
MAX_DELTA = 2.0


def check_delta(delta: object) -> float:
    """``delta`` must be a number with 0 < delta <= 2 (Euclidean distance between unit vectors)."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float, np.integer, np.floating)):
        raise InvalidInputError(f"delta must be a number with 0 < delta <= 2, got {delta!r}", param="delta")
    d = float(delta)
    if not np.isfinite(d) or d <= 0.0 or d > MAX_DELTA:
        raise InvalidInputError(f"delta must satisfy 0 < delta <= 2 (Euclidean distance between unit vectors), got {delta!r}",
                                param="delta")
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
        raise InvalidInputError(f"n_classes must be an integer >= 2 (k-means pseudo-classes for the delta rule), got {n_classes!r}",
                                param="n_classes")
    if n_rows is not None and n_classes > n_rows:
        raise InvalidInputError(f"n_classes must be <= the number of rows clustered ({n_rows}), got {n_classes}",
                                param="n_classes")
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


#: rows per block of the streamed products (x 2 blocks in flight: 2 x 16384 x 200 floats = 26 MB)
PASS_BLOCK = 16384


def nearest_rows(
    X: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray | None]], *, block_rows: int = PASS_BLOCK
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One streamed pass over ``X`` for several nearest-center questions at once. Each group is
    (centers [k, d], bias [k] or None); for each group and every row: the argmax over centers of
    ``x . c + bias`` and ``x . c`` at that center. Returns [(sim [n], arg [n]), ...] per group.

    All groups' centers go into one product per block (k-means assignment and the distance to
    the chosen rows cost one read of the pool, not two)."""
    n, d = X.shape
    Cs = [np.ascontiguousarray(C, dtype=np.float32).reshape(-1, d) for C, _ in groups]
    CT = np.ascontiguousarray(np.concatenate(Cs).T)
    bounds = np.cumsum([0] + [C.shape[0] for C in Cs])
    biases = [None if b is None else np.asarray(b, dtype=np.float32) for _, b in groups]
    out = [(np.empty(n, dtype=np.float32), np.empty(n, dtype=np.int64)) for _ in groups]

    def one(s: int) -> None:
        xb = block(X, s, block_rows)
        P = xb @ CT
        r = np.arange(P.shape[0])
        for g, (sim, arg) in enumerate(out):
            Q = P[:, bounds[g] : bounds[g + 1]]
            a = np.argmax(Q if biases[g] is None else Q + biases[g], axis=1)
            arg[s : s + len(a)] = a
            sim[s : s + len(a)] = Q[r, a]

    with single_blas():
        parallel_map(one, range(0, n, block_rows))
    return out


def nearest_sim(X: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row of ``X``: cosine similarity to its nearest row of ``centers`` and which one.

    One streamed pass over ``X``; the centers (a few thousand at most) are the only index."""
    return nearest_rows(X, [(centers, None)])[0]


#: bytes of one block of query-by-sample products (a few blocks are in flight, one per core)
PRODUCT_BYTES = 4 * 2**20


def _query_blocks(n_queries: int, n_rows: int) -> tuple[list[int], int]:
    """Start of each block of query rows, and its size: a block's product with ``n_rows`` rows
    holds at most PRODUCT_BYTES, and there are at least two blocks per core when the queries allow."""
    size = max(16, PRODUCT_BYTES // (4 * max(n_rows, 1)))
    size = max(1, min(size, -(-n_queries // (2 * n_workers()))))
    return list(range(0, n_queries, size)), size


def top_sims(Xs: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` largest similarities of each of ``queries`` (rows of ``Xs``) to the rows of
    ``Xs``, itself included, in decreasing order [q, k]."""
    out = np.empty((queries.size, k), dtype=np.float32)
    starts, size = _query_blocks(queries.size, Xs.shape[0])

    def one(s: int) -> None:
        S = Xs[queries[s : s + size]] @ Xs.T
        np.negative(S, out=S)
        S.partition(k - 1, axis=1)
        top = S[:, :k]
        top.sort(axis=1)
        out[s : s + len(S)] = -top

    with single_blas():
        parallel_map(one, starts)
    return out


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


def ball_graph(Xs: np.ndarray, delta: float, *, query_block: int | None = None) -> BallGraph:
    """Delta-ball graph of the rows of ``Xs`` (in RAM, at most a sample). Distance is symmetric, so
    each block of rows is multiplied only with itself and the rows after it (half the products of
    all pairs), thresholded at the ball's radius, and every edge found is recorded both ways."""
    m, d = Xs.shape
    Xs = np.ascontiguousarray(Xs, dtype=np.float32)
    radius = sim_of_delta(delta) - 1e-6  # a hair lower, so the ball is closed
    starts, size = _query_blocks(m, m)
    if query_block is not None:
        starts, size = list(range(0, m, query_block)), query_block

    def one(s: int) -> tuple[np.ndarray, np.ndarray]:
        r, c = np.nonzero((Xs[s : s + size] @ Xs[s:].T) > radius)
        r, c = r + s, c + s
        keep = c >= r  # the pairs below the diagonal come from the earlier row's side
        r, c = r[keep], c[keep]
        upper = c > r
        return np.concatenate([r, c[upper]]), np.concatenate([c, r[upper]])

    with single_blas():
        parts = parallel_map(one, starts)
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    cols = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    order = np.lexsort((cols, rows))  # CSR: by row, neighbours in increasing order
    lims = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=lims[1:])
    return BallGraph(lims, cols[order].astype(np.int32))


def mean_ball_fraction(Xs: np.ndarray, delta: float, rng: np.random.Generator, n_probe: int = 256) -> float:
    """Mean share of ``Xs`` inside a delta-ball, estimated from ``n_probe`` random rows."""
    m = Xs.shape[0]
    q = np.sort(rng.choice(m, size=min(n_probe, m), replace=False))
    with single_blas():
        inside = (Xs[q] @ Xs.T) > sim_of_delta(delta) - 1e-6
    return float(inside.sum(axis=1).mean() / m)


def tiling_radius(Xs: np.ndarray, n_balls: int, rng: np.random.Generator, *, share: float = 0.5, n_probe: int = 1000) -> float:
    """The radius at which a typical ball holds ``share`` x m / ``n_balls`` of the m rows of ``Xs``:
    the median distance of ``n_probe`` random rows to their K-th nearest other row,
    K = share x m / n_balls (1..2048). ``n_balls`` such balls could cover about ``share`` of the
    rows if they did not overlap: the scale at which a budget of balls covers the pool, not one dense
    corner of it. Memory n_probe x K."""
    m = Xs.shape[0]
    k = int(np.clip(np.ceil(share * m / max(int(n_balls), 1)), 1, min(2048, m - 1))) if m > 1 else 0
    if k == 0:
        return MAX_DELTA
    q = np.sort(rng.choice(m, size=min(n_probe, m), replace=False))
    S = top_sims(np.ascontiguousarray(Xs, dtype=np.float32), q, k + 1)  # the row itself comes first
    return float(min(np.median(dist_of_sim(S[:, k])), MAX_DELTA))


def impurity_radius(Xs: np.ndarray, pseudo: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For each query position of ``Xs``: the distance to its nearest row with another pseudo-label
    (inf when every row shares its label). A delta-ball around the query is pure iff delta < it.

    Rows and queries are ordered by pseudo-label, so that in a block's product (queries x rows)
    the pairs of one label are rectangles, masked out with slices."""
    order = np.argsort(pseudo, kind="stable")
    Xo = np.ascontiguousarray(Xs[order], dtype=np.float32)
    labels = np.asarray(pseudo)[order]
    uniq, col_lo = np.unique(labels, return_index=True)
    col_hi = np.append(col_lo[1:], labels.size)
    q_order = np.argsort(pseudo[queries], kind="stable")
    qs = queries[q_order]
    qlab = np.searchsorted(uniq, pseudo[qs])  # each query's label, as a position in uniq
    sq = np.einsum("ij,ij->i", Xo, Xo)
    Xq = np.ascontiguousarray(Xs[qs], dtype=np.float32)
    sq_q = np.einsum("ij,ij->i", Xq, Xq)
    out = np.empty(qs.size, dtype=np.float32)
    starts, size = _query_blocks(qs.size, Xo.shape[0])

    def one(s: int) -> None:
        D = Xq[s : s + size] @ Xo.T
        D *= -2.0
        D += sq[None, :]  # |y|^2 - 2 x.y: the distance to y but for |x|^2, added after the min
        lab = qlab[s : s + size]
        for c in np.unique(lab):
            r = np.nonzero(lab == c)[0]
            D[r[0] : r[-1] + 1, col_lo[c] : col_hi[c]] = np.inf  # same label; queries of a label are contiguous
        out[s : s + len(D)] = D.min(axis=1) + sq_q[s : s + len(D)]

    with single_blas():
        parallel_map(one, starts)
    r2 = np.empty_like(out)
    r2[q_order] = out
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
