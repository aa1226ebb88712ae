"""Clustering-based cold start: k-means centroids and TypiClust (Hacohen et al., 2022).

Both cluster the pool into ``budget + n_labeled`` clusters with FAISS k-means (which trains on a
sample of at most KMEANS_POINTS_PER_CENTROID points per centroid, so the cost does not grow with the pool), treat
clusters that hold a labeled row as covered, and pick one row in each of the largest uncovered
clusters. Memory stays linear in the pool: no N x N matrix is ever formed.

A pool over the RAM cap (read block by block) with an IVF index is clustered in two levels instead
(:func:`pool_kmeans`): the index's own IVF lists, trained on a sample when the index was built, are
the first level, and k-means of their centroids, weighted by list size, the second. Every row's
cluster then comes from the inverted lists' ids, without a pass over the embeddings, and each
cluster's pick is chosen among a random sample of its rows.

Speed (100k x 384 rows, budget 100, the 2-core machine, same run): the work is a few large
products, each a one-thread BLAS call on its own block or cluster, spread over the cores by
``fmal._parallel`` (FAISS's and OpenBLAS's own threads made every step 3-7x slower on 2 busy
cores). k-means trains with FAISS on a sample as before; every row is then assigned by one
product of the pool with the centroids (argmax of x.c - |c|^2/2, the L2-nearest centroid) instead
of a FAISS search. Typicality is computed from each cluster's Gram matrix (one 500 x 500 product)
instead of a FAISS k-NN call, for all clusters at once after the loop that draws their samples, so
the random draws, and the picks, are the same as one cluster at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmal._lazy import lazy_module
from fmal._matrix import in_blocks
from fmal._parallel import n_workers, parallel_map, single_blas
from fmal._validation import check_budget, check_embeddings, check_indices, check_positive
from fmal.seed.base import SEED_STRATEGIES, SeedResult
from fmal.seed.geometry import nearest_rows

faiss = lazy_module("faiss")  # imported on first use: fmal --help must not pay for it

#: typicality inside a cluster larger than this is computed on a random sample of this many rows
TYPICALITY_SAMPLE = 500


#: greedy k-means++ seeding runs on at most this many of the training rows (and at least 4 per centroid)
KMEANS_INIT_SAMPLE = 4096
#: k-means trains on at most this many rows per centroid (FAISS default 256): clusters for picking
#: one row each need no more, and training cost is linear in it
KMEANS_POINTS_PER_CENTROID = 64


def kmeans_pp_init(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii, 2007; with sklearn's 2 + log k local
    trials): FAISS's default random init splits well separated clusters and merges others.
    Cost k x (2 + log k) x rows x dim on ``X`` (already a sample).

    Why not ``sklearn.cluster.kmeans_plusplus`` (the same algorithm): tried in its place (2026-12,
    4,096 x 384 rows, the 2-core machine, one BLAS thread), it reached the same inertia (within
    0.1%) and the same seed quality (benchmarks/seed_quality.py, trec6, budgets 10-40, 3 seeds:
    mean accuracy of kmeans, typiclust, auto, probcover within +-0.02 of this one, std 0.02-0.07)
    but took 2.5-3x as long (k=40: 0.37 s against 0.14 s; k=160: 2.1 s against 0.7 s; its distances
    are upcast to float64), and it would import scikit-learn (0.9 s) into every ``fmal seed``."""
    m = X.shape[0]
    trials = 2 + int(np.log(max(k, 1)))
    C = np.empty((k, X.shape[1]), dtype=np.float32)
    sq = np.einsum("ij,ij->i", X, X)
    i = int(rng.integers(m))
    C[0] = X[i]
    d2 = np.maximum(sq + sq[i] - 2.0 * (X @ X[i]), 0.0)
    for j in range(1, k):
        tot = float(d2.sum())
        cand = rng.choice(m, size=trials, p=d2 / tot) if tot > 0 else rng.choice(m, size=trials)
        D = np.minimum(d2[None, :], np.maximum(sq[None, :] + sq[cand, None] - 2.0 * (X[cand] @ X.T), 0.0))
        b = int(np.argmin(D.sum(axis=1)))
        C[j] = X[cand[b]]
        d2 = D[b]
    return C


def train_kmeans(X: np.ndarray, k: int, *, random_state: int = 0, niter: int = 20) -> np.ndarray:
    """FAISS (Euclidean) k-means, greedy k-means++ seeded, trained on at most
    KMEANS_POINTS_PER_CENTROID rows per centroid (a seeded sample). Returns the centroids [k, d]."""
    X = X if isinstance(X, np.memmap) or in_blocks(X) else check_embeddings(X)  # never read a big pool whole
    n, d = X.shape
    k = int(min(k, n))
    km = faiss.Kmeans(d, k, niter=niter, seed=int(random_state) % (2**31), verbose=False)
    km.cp.min_points_per_centroid = 1  # small pools are legitimate here: no warning on stderr
    km.cp.max_points_per_centroid = KMEANS_POINTS_PER_CENTROID
    max_train = km.cp.max_points_per_centroid * k
    if n > max_train:  # sample ourselves, so a memmap is never loaded whole
        rows = np.sort(np.random.default_rng(random_state).choice(n, size=max_train, replace=False))
        train = np.ascontiguousarray(X[rows], dtype=np.float32)
    else:
        train = np.ascontiguousarray(X[:n], dtype=np.float32)  # a slice: a BlockMatrix is read, never converted whole
    rng = np.random.default_rng(random_state)
    init_rows = np.sort(rng.choice(train.shape[0], size=min(train.shape[0], max(KMEANS_INIT_SAMPLE, 4 * k)), replace=False))
    with single_blas():
        km.train(train, init_centroids=kmeans_pp_init(train[init_rows], k, rng))
    return np.asarray(km.centroids, dtype=np.float32)


def assign_bias(centroids: np.ndarray) -> np.ndarray:
    """-|c|^2 / 2 per centroid: argmax of x.c + this is the L2-nearest centroid (what k-means
    minimises; centroids are not unit-norm, so plain inner product would differ)."""
    return -0.5 * np.einsum("ij,ij->i", centroids, centroids)


def kmeans(
    X: np.ndarray, k: int, *, random_state: int = 0, niter: int = 20, batch: int = 65536
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAISS (Euclidean) k-means, greedy k-means++ seeded (:func:`train_kmeans`), then every row
    to its nearest centroid in one streamed pass. Returns (centroids [k, d], assignment [n], sim
    to own centroid [n])."""
    X = X if isinstance(X, np.memmap) or in_blocks(X) else check_embeddings(X)
    centroids = train_kmeans(X, k, random_state=random_state, niter=niter)
    ((sim, assign),) = nearest_rows(X, [(centroids, assign_bias(centroids))])
    return centroids, assign, sim


#: the two-level path needs at least this many IVF lists per cluster (else: exact k-means)
TWO_LEVEL_LISTS_PER_CLUSTER = 2


def ivf_lists(index: Any, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The first level a compressed index already holds: its IVF centroids [nlist, d] and the list
    of every row [n], read from the inverted lists' ids (no embedding is read). None when ``index``
    is not an IVF index holding rows 0..n-1."""
    if index is None:
        return None
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    if ivf.ntotal != n:
        return None
    inv = ivf.invlists
    lists = np.full(n, -1, dtype=np.int64)
    for j in range(ivf.nlist):
        size = inv.list_size(j)
        if size:
            ptr = inv.get_ids(j)
            lists[faiss.rev_swig_ptr(ptr, size)] = j
            inv.release_ids(j, ptr)
    if (lists < 0).any():
        return None
    return ivf.quantizer.reconstruct_n(0, ivf.nlist), lists


def two_level_kmeans(
    coarse: tuple[np.ndarray, np.ndarray], k: int, *, random_state: int = 0, niter: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """k-means of the IVF centroids weighted by their list sizes, then every row to the cluster of
    its list. Returns (centroids [k, d], assignment [n])."""
    C1, lists = coarse
    w = np.bincount(lists, minlength=C1.shape[0]).astype(np.float32)
    used = np.nonzero(w > 0)[0]
    k = int(min(k, used.size))
    X1 = np.ascontiguousarray(C1[used], dtype=np.float32)
    km = faiss.Kmeans(X1.shape[1], k, niter=niter, seed=int(random_state) % (2**31), verbose=False)
    km.cp.min_points_per_centroid = 1
    km.cp.max_points_per_centroid = max(1, -(-used.size // k))  # no subsampling of the centroids
    rng = np.random.default_rng(random_state)
    with single_blas():
        km.train(X1, weights=w[used], init_centroids=kmeans_pp_init(X1, k, rng))
    ((_, a1),) = nearest_rows(np.ascontiguousarray(C1, dtype=np.float32), [(km.centroids, assign_bias(km.centroids))])
    return km.centroids, a1[lists]


@dataclass
class PoolClusters:
    """A k-means clustering of the pool. ``sim`` (similarity to the own centroid) is complete on the
    exact path; on the two-level path it is NaN until :meth:`sample` fills it for the rows drawn."""

    X: Any
    centroids: np.ndarray
    assign: np.ndarray
    sim: np.ndarray
    two_level: bool
    info: dict[str, Any]

    def sample(self, rows: np.ndarray, c: int, rng: np.random.Generator) -> np.ndarray:
        """The rows of cluster ``c`` to choose among: all of them on the exact path; on the
        two-level path a random sample of TYPICALITY_SAMPLE, gathered and scored against the centroid."""
        if not self.two_level:
            return rows
        if rows.size > TYPICALITY_SAMPLE:
            rows = np.sort(rng.choice(rows, size=TYPICALITY_SAMPLE, replace=False))
        self.sim[rows] = np.asarray(self.X[rows], dtype=np.float32) @ self.centroids[c]
        self.info["rows_read"] = self.info.get("rows_read", 0) + int(rows.size)
        return rows


def pool_kmeans(X: Any, k: int, *, index: Any = None, random_state: int = 0, assign: bool = True) -> PoolClusters:
    """k-means of the pool into ``k`` clusters: exact (:func:`kmeans`) while the pool is read whole
    or memory-mapped, two-level over ``index``'s IVF lists when it is read block by block (over
    the RAM cap) and the index has TWO_LEVEL_LISTS_PER_CLUSTER lists per cluster.
    ``assign=False``: on the exact path, only train; ``assign`` and ``sim`` are left None for the
    caller to fill in a pass it makes anyway (see fmal.seed.diagnostics)."""
    n = X.shape[0]
    coarse = ivf_lists(index, n) if in_blocks(X) else None
    if coarse is not None and coarse[0].shape[0] >= TWO_LEVEL_LISTS_PER_CLUSTER * k:
        centroids, assign = two_level_kmeans(coarse, k, random_state=random_state)
        info = {"two_level": f"k-means of the index's {coarse[0].shape[0]:,} IVF lists (trained on a sample at "
                             f"build time) weighted by size; no pass over the embeddings, picks made "
                             f"among up to {TYPICALITY_SAMPLE} sampled rows per cluster"}
        return PoolClusters(X, centroids, assign, np.full(n, np.nan, dtype=np.float32), True, info)
    if not assign:
        return PoolClusters(X, train_kmeans(X, k, random_state=random_state), None, None, False, {})  # type: ignore[arg-type]
    centroids, rows_assign, sim = kmeans(X, k, random_state=random_state)
    return PoolClusters(X, centroids, rows_assign, sim, False, {})


def typicality(Xc: np.ndarray, k: int = 20) -> np.ndarray:
    """1 / mean Euclidean distance to the ``k`` nearest neighbours within ``Xc`` (exact: from the
    Gram matrix of ``Xc``, one product; meant for a cluster's sample of at most a few thousand rows)."""
    m = Xc.shape[0]
    if m <= 1:
        return np.ones(m, dtype=np.float64)
    k = min(k, m - 1)
    A = np.ascontiguousarray(Xc, dtype=np.float32)
    sq = np.einsum("ij,ij->i", A, A)
    with single_blas():
        d2 = A @ A.T
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    near = np.sqrt(np.maximum(np.partition(d2, k, axis=1)[:, : k + 1], 0.0))  # the k + 1 nearest, self among them
    dist = (near.sum(axis=1) - near.min(axis=1)) / k  # drop the self match (distance 0)
    return 1.0 / (dist + 1e-8)


def most_typical(X: np.ndarray, rows: np.ndarray, rng: np.random.Generator, k: int = 20) -> tuple[int, float]:
    """The most typical of ``rows`` and its typicality (on a random sample of TYPICALITY_SAMPLE rows
    when there are more)."""
    rows = _typicality_sample(rows, rng)
    t = typicality(np.asarray(X[rows]), k)
    j = int(np.argmax(t))
    return int(rows[j]), float(t[j])


def _typicality_sample(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rows.size > TYPICALITY_SAMPLE:
        rows = np.sort(rng.choice(rows, size=TYPICALITY_SAMPLE, replace=False))
    return rows


def _most_typical_many(X: np.ndarray, samples: list[np.ndarray], k: int) -> list[tuple[int, float]]:
    """:func:`most_typical` of many clusters' samples, gathered a few at a time (the main thread
    reads, which a pool read in blocks needs) and scored on all cores."""

    def one(Xc_rows: tuple[np.ndarray, np.ndarray]) -> tuple[int, float]:
        Xc, rows = Xc_rows
        t = typicality(Xc, k)
        j = int(np.argmax(t))
        return int(rows[j]), float(t[j])

    out: list[tuple[int, float]] = []
    step = 4 * n_workers()
    for s in range(0, len(samples), step):
        group = samples[s : s + step]
        out += parallel_map(one, [(np.asarray(X[r], dtype=np.float32), r) for r in group])
    return out


def _cluster_sizes(assign: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(assign, minlength=k)


def _uncovered_order(assign: np.ndarray, k: int, labeled: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clusters without a labeled row, largest first (ties broken at random); and all sizes."""
    sizes = _cluster_sizes(assign, k)
    covered = np.zeros(k, dtype=bool)
    covered[assign[labeled]] = True
    cand = np.nonzero(~covered & (sizes > 0))[0]
    tiebreak = rng.random(cand.size)
    order = cand[np.lexsort((tiebreak, -sizes[cand]))]
    return order, sizes


def _fill_random(picks: list[int], budget: int, n: int, labeled: np.ndarray, rng: np.random.Generator) -> int:
    """Top up ``picks`` with random unlabeled rows when there are fewer clusters than slots."""
    missing = budget - len(picks)
    if missing <= 0:
        return 0
    taken = np.zeros(n, dtype=bool)
    taken[labeled] = True
    taken[picks] = True
    free = np.nonzero(~taken)[0]
    extra = rng.choice(free, size=missing, replace=False)
    picks.extend(int(i) for i in extra)
    return missing


def _members(assign: np.ndarray, k: int) -> list[np.ndarray]:
    order = np.argsort(assign, kind="stable")
    bounds = np.searchsorted(assign[order], np.arange(k + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(k)]


#: how a cluster's pick is chosen among its rows
NEAREST, TYPICAL, RANDOM = "nearest", "typical", "random"


def cluster_pick(
    X: np.ndarray,
    budget: int,
    labeled: np.ndarray | None,
    random_state: int,
    rule: Callable[[int], str],
    index: Any = None,
    k_neighbors: int = 20,
) -> SeedResult:
    """One row in each of the ``budget`` largest uncovered k-means clusters: what the clustering
    strategies (kmeans, typiclust, auto) share.

    ``rule(turn)`` says how the ``turn``-th such cluster (1, 2, ...) picks: NEAREST (the row most
    similar to the centroid; score that similarity), TYPICAL (the most typical of up to
    TYPICALITY_SAMPLE of its rows; score the typicality) or RANDOM (score the similarity to the
    centroid). ``k_neighbors``: the neighbours typicality averages over."""
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    budget = check_budget(budget, n - labeled.size)
    rng = np.random.default_rng(random_state)
    k = min(budget + labeled.size, n)
    pc = pool_kmeans(X, k, index=index, random_state=random_state)
    assign, sim = pc.assign, pc.sim
    k = int(pc.centroids.shape[0])
    order, _ = _uncovered_order(assign, k, labeled, rng)
    members = _members(assign, k)
    is_labeled = np.zeros(n, dtype=bool)
    is_labeled[labeled] = True
    picks: list[int] = []
    scores: list[float] = []
    clusters: list[int] = []
    typical: list[tuple[int, np.ndarray]] = []  # (slot, sample): scored together after the loop
    for c in order[:budget]:
        rows = members[c][~is_labeled[members[c]]]
        if rows.size == 0:
            continue
        rows = pc.sample(rows, int(c), rng)
        how = rule(len(clusters) + 1)
        if how == TYPICAL:
            typical.append((len(picks), _typicality_sample(rows, rng)))
            row, score = -1, float("nan")
        else:
            j = int(np.argmax(sim[rows])) if how == NEAREST else int(rng.integers(rows.size))
            row, score = int(rows[j]), float(sim[rows[j]])
        picks.append(row)
        scores.append(score)
        clusters.append(int(c))
    for (slot, _), (row, score) in zip(typical, _most_typical_many(X, [r for _, r in typical], k_neighbors)):
        picks[slot], scores[slot] = row, score
    filled = _fill_random(picks, budget, n, labeled, rng)
    scores += [float("nan")] * filled
    clusters += [-1] * filled
    info = {"n_clusters": int(k), "filled_at_random": int(filled), **pc.info}
    return SeedResult(np.asarray(picks, dtype=np.int64), np.asarray(scores), np.asarray(clusters, dtype=np.int64), info,
                      assign=assign)


#: numpydoc of the parameters every clustering strategy shares (kmeans, typiclust, auto)
CLUSTER_PARAMS_DOC = """X : ndarray of shape (n, d)
        The pool's L2-normalised embeddings (an array, a memmap or a block-read matrix).
    budget : int
        How many rows to pick.
    index : faiss.Index, optional
        The pool's index: on a pool read block by block, its IVF lists are the first level of a
        two-level k-means (:func:`pool_kmeans`).
    labeled : array of int, optional
        Rows already labeled: never picked; their clusters count as covered.
    random_state : int, default 0
        Seed of the k-means, of tie-breaks and of the samples."""

CLUSTER_RETURNS_DOC = """Returns
    -------
    SeedResult
        The picks, their scores and clusters; ``info``: ``n_clusters``, ``filled_at_random``.

    Raises
    ------
    InvalidInputError
        ``budget`` not a positive integer or more than the unlabeled rows; ``labeled`` out of range."""


@SEED_STRATEGIES.register("kmeans")
def kmeans_seed(
    X: np.ndarray, budget: int, *, index: Any = None, labeled: np.ndarray | None = None, random_state: int = 0
) -> SeedResult:
    return cluster_pick(X, budget, labeled, random_state, lambda turn: NEAREST, index)


kmeans_seed.__doc__ = f"""The row nearest the centroid of each of the largest uncovered k-means clusters.

    k-means into ``budget`` + n_labeled clusters; clusters holding a labeled row are covered; in each
    of the ``budget`` largest others, the real row most similar to the centroid (score: that
    cosine similarity).

    Parameters
    ----------
    {CLUSTER_PARAMS_DOC}

    {CLUSTER_RETURNS_DOC}

    References
    ----------
    .. [1] Hacohen, G., Dekel, A. and Weinshall, D. (2022). Active learning on a budget: opposite
       strategies suit high and low budgets. ICML (the k-means baseline of TypiClust).
    """


@SEED_STRATEGIES.register("typiclust")
def typiclust_seed(
    X: np.ndarray,
    budget: int,
    *,
    index: Any = None,
    labeled: np.ndarray | None = None,
    random_state: int = 0,
    k_neighbors: int = 20,
) -> SeedResult:
    k_neighbors = int(check_positive(k_neighbors, "k_neighbors", integer=True))
    return cluster_pick(X, budget, labeled, random_state, lambda turn: TYPICAL, index, k_neighbors)


typiclust_seed.__doc__ = f"""TypiClust: the most typical row of each of the largest uncovered k-means clusters.

    Typicality is 1 / mean Euclidean distance to the ``k_neighbors`` nearest rows of the same
    cluster (score: typicality); clusters above TYPICALITY_SAMPLE rows are scored on a seeded sample
    of that many rows.

    Parameters
    ----------
    {CLUSTER_PARAMS_DOC}
    k_neighbors : int, default 20
        Neighbours whose mean distance defines typicality (the paper's 20).

    {CLUSTER_RETURNS_DOC}

    References
    ----------
    .. [1] Hacohen, G., Dekel, A. and Weinshall, D. (2022). Active learning on a budget: opposite
       strategies suit high and low budgets. ICML.
    """
