"""Batch-aware query strategies: uncertainty with diversity, typicality, and the budget-aware ``auto``.

Plain top-k uncertainty picks redundant batches (near-duplicates share a score) and outliers (far
from everything, so the probe is unsure of them). These strategies fix that:

- ``cluster-margin`` (Citovsky et al., 2021): the ``pool_factor x budget`` most uncertain candidates
  by margin, clustered with k-means into ``budget`` clusters, then picked round-robin over the
  clusters (smallest cluster first, most uncertain row first inside a cluster).
- ``badge`` (Ash et al., 2020): k-means++ seeding over the gradient embeddings of the linear probe,
  g_i = (p_i - onehot(argmax p_i)) (x) x_i. Because the probe is linear, <g_i, g_j> = <a_i, a_j><x_i, x_j>,
  so distances are computed without ever forming the C x d vectors.
- ``typical-margin``: margin x typicality (1 / mean distance to the k nearest rows of a fixed
  random sample of the pool), so uncertain outliers rank low.
- ``auto`` (after TCM, Doucet et al., 2024): TypiClust-style typical picks in uncovered clusters
  while the labeled set is small (fewer than ``switch_per_class`` labels per seen class), then
  ``cluster-margin``; a ``random_share`` of each batch is uniform random, a guard against falling
  behind random on data where uncertainty misleads.

Every function is pure (arrays and the FAISS index in, picks out), seeded by ``ctx.random_state``,
and its memory is linear in the candidates: big candidate sets are cut to a capped shortlist first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal._lazy import lazy_module
from fmal._parallel import single_blas
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError
from fmal.query import uncertainty as _uncertainty  # noqa: F401  (the basic strategies register first)
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, top_k
from fmal.query.measures import margin
from fmal.seed.clustering import typicality

faiss = lazy_module("faiss")  # imported on first use: fmal --help must not pay for it

#: shortlists (the most uncertain candidates) never hold more rows than this
MAX_SHORTLIST = 20000
#: typicality is measured against a fixed random sample of this many pool rows
TYPICALITY_REFERENCE = 10000


def _rows(ctx: QueryContext, pos: np.ndarray) -> np.ndarray:
    """Embeddings of the candidates at positions ``pos`` (read in row order: kind to a memmap)."""
    rows = ctx.candidates[pos]
    order = np.argsort(rows, kind="stable")
    out = np.empty((rows.size, ctx.X.shape[1]), dtype=np.float32)
    out[order] = np.asarray(ctx.X[rows[order]], dtype=np.float32)
    return out


def _kmeans_assign(X: np.ndarray, k: int, random_state: int, niter: int = 20) -> np.ndarray:
    """Cluster ``X`` (a shortlist: small) into ``k`` clusters with FAISS k-means; each row's cluster."""
    k = int(min(k, X.shape[0]))
    if k <= 1:
        return np.zeros(X.shape[0], dtype=np.int64)
    km = faiss.Kmeans(X.shape[1], k, niter=niter, seed=int(random_state) % (2**31), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(np.ascontiguousarray(X, dtype=np.float32))
    _, a = km.index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
    return a[:, 0].astype(np.int64)


def _round_robin(assign: np.ndarray, scores: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Positions picked one per cluster in turn: smallest cluster first, best score first inside."""
    k = int(assign.max()) + 1 if assign.size else 0
    sizes = np.bincount(assign, minlength=k)
    order_clusters = np.lexsort((rng.random(k), sizes))
    members = []
    for c in order_clusters:
        m = np.nonzero(assign == c)[0]
        if m.size:
            members.append(m[np.argsort(-scores[m], kind="stable")])
    picks: list[int] = []
    depth = 0
    while len(picks) < budget and members:
        layer = [m[depth] for m in members if m.size > depth]
        if not layer:
            break
        picks.extend(int(i) for i in layer[: budget - len(picks)])
        depth += 1
    return np.asarray(picks, dtype=np.int64)


def _shortlist_size(ctx: QueryContext, budget: int, pool_factor: float) -> int:
    check_positive(pool_factor, "pool_factor")
    return int(min(ctx.candidates.size, MAX_SHORTLIST, max(budget, int(np.ceil(pool_factor * budget)))))


@QUERY_STRATEGIES.register("cluster-margin")
def cluster_margin(ctx: QueryContext, budget: int, *, pool_factor: float = 10.0, **_: Any) -> QueryResult:
    """Margin top-(``pool_factor`` x budget), k-means into ``budget`` clusters, round-robin picks."""
    scores = margin(ctx.proba)
    m = _shortlist_size(ctx, budget, pool_factor)
    short = top_k(scores, m, ctx.random_state)
    if m <= budget:
        return QueryResult(ctx.candidates[short[:budget]], scores[short[:budget]], {"shortlist": m})
    with single_blas():
        assign = _kmeans_assign(_rows(ctx, short), budget, ctx.random_state)
    pos = short[_round_robin(assign, scores[short], budget, np.random.default_rng(ctx.random_state))]
    return QueryResult(ctx.candidates[pos], scores[pos], {"shortlist": m, "clusters": int(np.unique(assign).size)})


def gradient_factors(proba: np.ndarray) -> np.ndarray:
    """a_i = p_i - onehot(argmax p_i): the loss gradient of a linear softmax probe w.r.t. its weights
    is a_i (x) x_i when the predicted class is taken as the label (BADGE's hallucinated gradient)."""
    a = np.asarray(proba, dtype=np.float64).copy()
    a[np.arange(a.shape[0]), a.argmax(axis=1)] -= 1.0
    return a


@QUERY_STRATEGIES.register("badge")
def badge(ctx: QueryContext, budget: int, *, pool_factor: float = 50.0, **_: Any) -> QueryResult:
    """k-means++ seeding over gradient embeddings (BADGE), on the ``pool_factor`` x budget candidates
    with the largest gradient norm; score: squared distance to the batch chosen before it."""
    with single_blas():  # budget matrix-vector products: one BLAS thread (measured 30x faster on 2 busy cores)
        return _badge(ctx, budget, pool_factor)


def _badge(ctx: QueryContext, budget: int, pool_factor: float) -> QueryResult:
    rng = np.random.default_rng(ctx.random_state)
    a = gradient_factors(ctx.proba)
    gnorm_a = (a * a).sum(axis=1)  # ||x|| ~ 1: rows are L2-normalised; corrected below on the shortlist
    m = _shortlist_size(ctx, budget, pool_factor)
    short = top_k(gnorm_a, m, ctx.random_state)
    X = _rows(ctx, short).astype(np.float64)
    A = a[short]
    g2 = (A * A).sum(axis=1) * (X * X).sum(axis=1)
    dist2 = np.full(m, np.inf)
    chosen: list[int] = []
    scores: list[float] = []
    nxt = int(np.argmax(g2))
    for _step in range(min(budget, m)):
        chosen.append(nxt)
        scores.append(float(g2[nxt]) if not chosen[:-1] else float(dist2[nxt]))
        d_new = g2 + g2[nxt] - 2.0 * (A @ A[nxt]) * (X @ X[nxt])
        dist2 = np.minimum(dist2, np.maximum(d_new, 0.0))
        dist2[chosen] = 0.0
        total = dist2.sum()
        if len(chosen) == budget:
            break
        if total <= 0:  # every gradient is zero (probe certain everywhere): fall back to uniform
            free = np.setdiff1d(np.arange(m), chosen)
            nxt = int(rng.choice(free))
        else:
            nxt = int(rng.choice(m, p=dist2 / total))
    pos = short[np.asarray(chosen, dtype=np.int64)]
    return QueryResult(ctx.candidates[pos], np.asarray(scores), {"shortlist": m})


def reference_typicality(ctx: QueryContext, pos: np.ndarray, k: int = 20) -> np.ndarray:
    """Typicality of the candidates at ``pos``: 1 / mean distance to their ``k`` nearest rows in a
    fixed random sample (``TYPICALITY_REFERENCE`` rows, seeded) of the whole pool; self-matches skipped."""
    n = ctx.X.shape[0]
    ref_rows = np.sort(np.random.default_rng(ctx.random_state).choice(n, size=min(n, TYPICALITY_REFERENCE), replace=False))
    ref = np.ascontiguousarray(ctx.X[ref_rows], dtype=np.float32)
    k = int(min(k, ref_rows.size - 1))
    if k < 1:
        return np.ones(pos.size)
    D, I = faiss.knn(_rows(ctx, pos), ref, k + 1)
    self_hit = ref_rows[I] == ctx.candidates[pos][:, None]
    D = np.where(self_hit, np.inf, np.maximum(D, 0.0))
    D = np.sort(D, axis=1)[:, :k]
    return 1.0 / (np.sqrt(D).mean(axis=1) + 1e-8)


@QUERY_STRATEGIES.register("typical-margin")
def typical_margin(
    ctx: QueryContext, budget: int, *, pool_factor: float = 10.0, k_neighbors: int = 20, **_: Any
) -> QueryResult:
    """Margin x relative typicality over the ``pool_factor`` x budget most uncertain candidates:
    uncertain rows in dense regions first, uncertain outliers last."""
    scores = margin(ctx.proba)
    m = _shortlist_size(ctx, budget, pool_factor)
    short = top_k(scores, m, ctx.random_state)
    with single_blas():
        t = reference_typicality(ctx, short, k_neighbors)
    s = scores[short] * (t / t.max())
    j = top_k(s, budget, ctx.random_state)
    return QueryResult(ctx.candidates[short[j]], s[j], {"shortlist": m})


def typical_uncovered(ctx: QueryContext, budget: int, *, sample: int = MAX_SHORTLIST, k_neighbors: int = 20) -> QueryResult:
    """TypiClust over candidates: k-means of (labeled + a seeded sample of candidates) into
    n_labeled + budget clusters; the most typical candidate of each cluster with no labeled row,
    largest clusters first; leftover slots go to the most typical candidates not yet picked."""
    rng = np.random.default_rng(ctx.random_state)
    cand_pos = np.arange(ctx.candidates.size)
    if cand_pos.size > sample:
        cand_pos = np.sort(rng.choice(cand_pos, size=sample, replace=False))
    Xc = _rows(ctx, cand_pos)
    lab = np.sort(ctx.labeled)
    Xl = np.asarray(ctx.X[lab], dtype=np.float32) if lab.size else np.zeros((0, Xc.shape[1]), np.float32)
    Xall = np.vstack([Xl, Xc])
    k = int(min(lab.size + budget, Xall.shape[0]))
    assign = _kmeans_assign(Xall, k, ctx.random_state)
    covered = np.zeros(int(assign.max()) + 1, dtype=bool)
    covered[assign[: lab.size]] = True
    a_c = assign[lab.size :]
    sizes = np.bincount(a_c, minlength=covered.size)
    order = np.lexsort((rng.random(covered.size), -sizes))
    picks: list[int] = []
    scores: list[float] = []
    for c in order:
        if len(picks) == budget:
            break
        if covered[c] or sizes[c] == 0:
            continue
        members = np.nonzero(a_c == c)[0]
        t = typicality(Xc[members], k_neighbors)
        j = int(np.argmax(t))
        picks.append(int(members[j]))
        scores.append(float(t[j]))
    if len(picks) < budget:  # more slots than uncovered clusters: the most typical of the rest
        t_all = reference_typicality(ctx, cand_pos)
        t_all[picks] = -np.inf
        extra = top_k(t_all, budget - len(picks), ctx.random_state)
        picks += extra.tolist()
        scores += t_all[extra].tolist()
    pos = cand_pos[np.asarray(picks, dtype=np.int64)]
    return QueryResult(ctx.candidates[pos], np.asarray(scores), {"clusters": k})


#: measured on the shared datasets (benchmarks/query_quality.py, 3 datasets x 5 and 10 seeds): switching
#: at 10 labels per class seen beat 0 (no typical phase), 5 and 20 in mean AULC
DEFAULT_SWITCH_PER_CLASS = 10
DEFAULT_RANDOM_SHARE = 0.1
DEFAULT_THEN = "badge"


@QUERY_STRATEGIES.register("auto")
def auto(
    ctx: QueryContext,
    budget: int,
    *,
    switch_per_class: float = DEFAULT_SWITCH_PER_CLASS,
    random_share: float = DEFAULT_RANDOM_SHARE,
    then: str = DEFAULT_THEN,
    **_: Any,
) -> QueryResult:
    """Typical picks in uncovered clusters while labels < ``switch_per_class`` x classes seen, then
    the batch-diverse uncertainty strategy ``then``; ``random_share`` of the batch (rounded down)
    is uniform random."""
    check_positive(switch_per_class, "switch_per_class", allow_zero=True)
    if not (0.0 <= float(random_share) <= 1.0):
        raise InvalidInputError(f"random_share must lie in [0, 1], got {random_share!r}")
    if then == "auto":
        raise InvalidInputError("then must name another query strategy than 'auto', got 'auto'")
    after = QUERY_STRATEGIES.get(then)
    n_labels = int(ctx.labeled.size)
    n_classes = len(ctx.classes)
    phase = "typical" if n_labels < switch_per_class * n_classes else "uncertain"
    n_random = int(np.floor(random_share * budget))
    n_main = budget - n_random
    if n_main > 0:
        if phase == "typical":
            with single_blas():
                main = typical_uncovered(ctx, n_main)
        else:
            main = after(ctx, n_main)
        idx, sc = main.indices, main.scores
    else:
        idx, sc = np.zeros(0, dtype=np.int64), np.zeros(0)
    if n_random:
        free = np.setdiff1d(ctx.candidates, idx, assume_unique=True)
        rnd = np.random.default_rng(ctx.random_state + 1).choice(free, size=n_random, replace=False)
        idx = np.concatenate([idx, rnd])
        sc = np.concatenate([sc, np.full(n_random, np.nan)])
    return QueryResult(idx.astype(np.int64), sc, {"phase": phase, "random_picks": n_random},
                       is_random=np.arange(idx.size) >= idx.size - n_random)
