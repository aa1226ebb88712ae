"""Batch-aware query strategies: uncertainty with diversity, and typicality.

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
- ``dropquery`` (Gupte et al., 2024): candidates whose predicted class changes under feature
  dropout (the fitted probe on ``n_drop`` randomly masked copies) are uncertain; k-means over
  them into ``budget`` clusters, the row nearest each centroid.
- :func:`typical_uncovered`: TypiClust over the candidates, the first phase of ``auto``
  (fmal.query.auto).

Every function is pure (arrays and the FAISS index in, picks out), seeded by ``ctx.random_state``,
and its memory is linear in the candidates: big candidate sets are cut to a capped shortlist first.
"""

from __future__ import annotations


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
    return _kmeans(X, k, random_state, niter)[0]


def _kmeans(X: np.ndarray, k: int, random_state: int, niter: int = 20, max_points: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_kmeans_assign`, and each row's squared distance to its cluster's centroid; trained
    on at most ``max_points`` rows per centroid (FAISS samples them), every row assigned."""
    k = int(min(k, X.shape[0]))
    if k <= 1:
        X = np.asarray(X, dtype=np.float64)
        return np.zeros(X.shape[0], dtype=np.int64), ((X - X.mean(axis=0)) ** 2).sum(axis=1)
    km = faiss.Kmeans(X.shape[1], k, niter=niter, seed=int(random_state) % (2**31), verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=max_points)
    km.train(np.ascontiguousarray(X, dtype=np.float32))
    d, a = km.index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
    return a[:, 0].astype(np.int64), d[:, 0].astype(np.float64)


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
def cluster_margin(ctx: QueryContext, budget: int, *, pool_factor: float = 10.0) -> QueryResult:
    """Cluster-Margin: the most uncertain candidates by margin, clustered, then picked one cluster at a time.

    The ``pool_factor`` x budget candidates of highest margin (at most MAX_SHORTLIST) are
    clustered with k-means into ``budget`` clusters and picked round-robin: smallest cluster
    first, most uncertain row first inside a cluster (score: margin).

    Parameters
    ----------
    ctx : QueryContext
        Candidates, the probe's probabilities on them, the pool's embeddings and the seed
        (``ctx.random_state``).
    budget : int
        How many rows to pick (at most the candidates).
    pool_factor : float, default 10.0
        Shortlist size as a multiple of ``budget`` (> 0).

    Returns
    -------
    QueryResult
        The picks and their margins; ``info``: ``shortlist`` and ``clusters``.

    Raises
    ------
    InvalidInputError
        ``pool_factor`` not a positive number.

    References
    ----------
    .. [1] Citovsky, G., DeSalvo, G., Gentile, C., Karydas, L., Rajagopalan, A., Rostamizadeh, A.
       and Kumar, S. (2021). Batch active learning at scale. NeurIPS.
    """
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
def badge(ctx: QueryContext, budget: int, *, pool_factor: float = 50.0) -> QueryResult:
    """BADGE: k-means++ seeding over the probe's gradient embeddings, uncertain and diverse at once.

    Runs on the ``pool_factor`` x budget candidates (at most MAX_SHORTLIST) of largest gradient
    norm; the gradient embedding of a row is (p - onehot(argmax p)) (x) x, and distances come from
    <a_i, a_j><x_i, x_j> without forming it. Score: squared distance to the batch chosen before it.

    Parameters
    ----------
    ctx : QueryContext
        Candidates, the probe's probabilities on them, the pool's embeddings and the seed
        (``ctx.random_state``).
    budget : int
        How many rows to pick (at most the candidates).
    pool_factor : float, default 50.0
        Shortlist size as a multiple of ``budget`` (> 0).

    Returns
    -------
    QueryResult
        The picks and their scores; ``info["shortlist"]``.

    Raises
    ------
    InvalidInputError
        ``pool_factor`` not a positive number.

    References
    ----------
    .. [1] Ash, J. T., Zhang, C., Krishnamurthy, A., Langford, J. and Agarwal, A. (2020). Deep batch
       active learning by diverse, uncertain gradient lower bounds. ICLR.
    """
    with single_blas():  # budget matrix-vector products: one BLAS thread (measured 30x faster on 2 busy cores)
        return _badge(ctx, budget, pool_factor)


def _badge(ctx: QueryContext, budget: int, pool_factor: float) -> QueryResult:
    rng = np.random.default_rng(ctx.random_state)
    a = gradient_factors(ctx.proba)
    gnorm_a = (a * a).sum(axis=1)  # ||x|| ~ 1: rows are L2-normalised; corrected below on the shortlist
    m = _shortlist_size(ctx, budget, pool_factor)
    short = top_k(gnorm_a, m, ctx.random_state)
    X = np.ascontiguousarray(_rows(ctx, short), dtype=np.float32)  # float32 products: half the memory traffic of float64
    A = a[short]
    g2 = (A * A).sum(axis=1) * np.einsum("ij,ij->i", X, X, dtype=np.float64)
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


#: dropout copies scored per block of candidates (bounds the masked copies' memory)
DROPOUT_BLOCK = 4096
#: dropquery's k-means trains on at most this many uncertain rows per cluster (a seeded FAISS
#: sample; every row is assigned): 256 cost 0.29 s a round at 100k rows, most of the round
DROPQUERY_POINTS_PER_CENTROID = 64


def dropout_flips(ctx: QueryContext, pos: np.ndarray, dropout: float, n_drop: int,
                  rows: np.ndarray | None = None) -> np.ndarray:
    """Share of ``n_drop`` dropout copies (features zeroed with probability ``dropout``, the rest
    scaled by 1 / (1 - dropout)) on which the fitted probe's class differs from its class on the
    clean row, for the candidates at ``pos`` (``rows``: their embeddings, when gathered already);
    seeded by ``ctx.random_state``."""
    rows = _rows(ctx, pos) if rows is None else rows
    rng = np.random.default_rng(ctx.random_state)
    W = np.asarray(ctx.probe.coef_, dtype=np.float32)
    b = np.asarray(ctx.probe.intercept_, dtype=np.float32)
    keep = np.float32(1.0 / (1.0 - dropout))
    out = np.empty(pos.size)
    for lo in range(0, pos.size, DROPOUT_BLOCK):
        X = rows[lo : lo + DROPOUT_BLOCK]
        base = _predicted(X @ W.T + b)
        flips = np.zeros(X.shape[0])
        for _ in range(n_drop):
            mask = rng.random(X.shape, dtype=np.float32) >= dropout
            flips += _predicted((X * mask) @ W.T * keep + b) != base
        out[lo : lo + X.shape[0]] = flips / n_drop
    return out


def _predicted(z: np.ndarray) -> np.ndarray:
    """The predicted class of each row from the probe's scores (one column: binary, sign)."""
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)


@QUERY_STRATEGIES.register("dropquery")
def dropquery(ctx: QueryContext, budget: int, *, dropout: float = 0.75, n_drop: int = 3) -> QueryResult:
    """DropQuery: rows whose predicted class is unstable under feature dropout, one per k-means cluster.

    The fitted probe predicts ``n_drop`` dropout copies of each of the MAX_SHORTLIST candidates of
    highest margin (:func:`dropout_flips`); a candidate is uncertain when its class changes on more
    than half of them. The uncertain rows are clustered with k-means into ``budget`` clusters and
    the row nearest each centroid is picked, largest cluster first; with fewer uncertain rows than
    ``budget`` (or empty clusters), the rest are the highest-margin candidates not yet picked.
    Without a probe in the context (``ctx.probe`` None) it is cluster-margin. Score: the share of
    copies whose class changed.

    ``auto``'s ``then``: on benchmarks/query_quality.py --tune (train rows only, six pools, seeds
    100-139) it gained +0.18 [+0.05, +0.31] AULC points over badge, mean of the six pools, most on
    the sentiment pool (dropout 0.25-0.9 with 3-10 copies did no better than 0.75 with 3).

    Parameters
    ----------
    ctx : QueryContext
        Candidates, the probe (``ctx.probe``: ``coef_``, ``intercept_``) and its probabilities on
        them, the pool's embeddings and the seed (``ctx.random_state``).
    budget : int
        How many rows to pick (at most the candidates).
    dropout : float, default 0.75
        Probability that a feature is zeroed in a copy, in (0, 1).
    n_drop : int, default 3
        Dropout copies per candidate (a positive integer).

    Returns
    -------
    QueryResult
        The picks and their scores; ``info``: ``shortlist``, ``uncertain`` (rows that count as
        uncertain) and ``clusters``.

    Raises
    ------
    InvalidInputError
        ``dropout`` outside (0, 1) or ``n_drop`` not a positive integer.

    References
    ----------
    .. [1] Gupte, S. R., Aklilu, J., Nirschl, J. J. and Yeung-Levy, S. (2024). Revisiting active
       learning in the era of vision foundation models. TMLR.
    """
    if not (0.0 < float(dropout) < 1.0):
        raise InvalidInputError(f"dropout must lie in (0, 1), got {dropout!r}")
    n_drop = int(check_positive(n_drop, "n_drop", integer=True))
    if ctx.probe is None:
        return cluster_margin(ctx, budget)
    with single_blas():
        return _dropquery(ctx, budget, float(dropout), n_drop)


def _dropquery(ctx: QueryContext, budget: int, dropout: float, n_drop: int) -> QueryResult:
    scores = margin(ctx.proba)
    m = int(min(ctx.candidates.size, MAX_SHORTLIST))
    short = top_k(scores, m, ctx.random_state)
    rows = _rows(ctx, short)  # gathered once: the dropout copies and the k-means read them
    flips = dropout_flips(ctx, short, dropout, n_drop, rows)
    unsure = np.nonzero(flips > 0.5)[0]
    picks: list[int] = []
    k = 0
    if unsure.size > budget:
        k = int(budget)
        a, d = _kmeans(rows[unsure], k, ctx.random_state, max_points=DROPQUERY_POINTS_PER_CENTROID)
        sizes = np.bincount(a, minlength=k)
        rng = np.random.default_rng(ctx.random_state)
        for c in np.lexsort((rng.random(k), -sizes)):
            members = np.nonzero(a == c)[0]
            if members.size:
                picks.append(int(unsure[members[np.argmin(d[members])]]))
    else:
        picks = unsure.tolist()
    if len(picks) < budget:  # too few uncertain rows (or empty clusters): the highest margins of the rest
        rest = np.setdiff1d(np.arange(m), picks)  # short is in margin order: its first positions first
        picks += rest[: budget - len(picks)].tolist()
    pk = np.asarray(picks[:budget], dtype=np.int64)
    return QueryResult(ctx.candidates[short[pk]], flips[pk], {"shortlist": m, "uncertain": int(unsure.size), "clusters": k})


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
def typical_margin(ctx: QueryContext, budget: int, *, pool_factor: float = 10.0, k_neighbors: int = 20) -> QueryResult:
    """Margin times typicality: uncertain rows in dense regions first, uncertain outliers last.

    Over the ``pool_factor`` x budget candidates of highest margin, the score is the margin times
    the typicality relative to the shortlist's highest (:func:`reference_typicality`: 1 / mean
    distance to the ``k_neighbors`` nearest rows of a fixed random sample of the pool).

    Parameters
    ----------
    ctx : QueryContext
        Candidates, the probe's probabilities on them, the pool's embeddings and the seed
        (``ctx.random_state``).
    budget : int
        How many rows to pick (at most the candidates).
    pool_factor : float, default 10.0
        Shortlist size as a multiple of ``budget`` (> 0).
    k_neighbors : int, default 20
        Neighbours whose mean distance defines typicality (a positive integer).

    Returns
    -------
    QueryResult
        The picks and their scores; ``info["shortlist"]``.

    Raises
    ------
    InvalidInputError
        ``pool_factor`` or ``k_neighbors`` not positive.

    References
    ----------
    .. [1] Hacohen, G., Dekel, A. and Weinshall, D. (2022). Active learning on a budget: opposite
       strategies suit high and low budgets. ICML (typicality).
    .. [2] Scheffer, T., Decomain, C. and Wrobel, S. (2001). Active hidden Markov models for
       information extraction. IDA (margin).
    """
    k_neighbors = int(check_positive(k_neighbors, "k_neighbors", integer=True))
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
