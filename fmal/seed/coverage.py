"""Coverage-based cold start: greedy k-center (core-set, Sener & Savarese, 2018) and ProbCover
(Yehuda et al., 2022).

k-center computes distances row block by row block against each new center, so memory is linear
in the pool and a memory-mapped matrix is streamed, never loaded whole. ProbCover builds its
delta-ball graph with FAISS range search (in blocks of query rows) on at most PROBCOVER_MAX_ROWS
rows: a seeded sample of larger pools, which its info says.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal._validation import check_budget, check_indices, check_positive
from fmal.exceptions import InvalidInputError
from fmal.seed.base import SEED_STRATEGIES, SeedResult
from fmal.seed.geometry import (
    ball_graph,
    block,
    check_delta,
    check_fraction,
    check_n_classes,
    dist_of_sim,
    mean_ball_fraction,
    purity_delta,
    sample_rows,
    tiling_radius,
)

_BLOCK = 65536


def _update_max_sim(X: np.ndarray, centers: np.ndarray, max_sim: np.ndarray) -> None:
    """max_sim = max(max_sim, cosine similarity of every row to any of ``centers``), in place.

    One streamed pass over ``X``; with a single center it is a matrix-vector product per block."""
    C = np.ascontiguousarray(centers, dtype=np.float32).reshape(-1, X.shape[1])
    for s in range(0, X.shape[0], _BLOCK):
        xb = block(X, s, _BLOCK)
        sim = xb @ C[0] if C.shape[0] == 1 else (xb @ C.T).max(axis=1)
        np.maximum(max_sim[s : s + len(xb)], sim, out=max_sim[s : s + len(xb)])


@SEED_STRATEGIES.register("kcenter")
def kcenter_seed(X: np.ndarray, budget: int, *, labeled: np.ndarray | None = None) -> SeedResult:
    """Greedy k-center (core-set): repeatedly the row farthest from every row chosen or labeled so far.

    Without labels the first center is the row nearest the pool's mean. Score: the distance
    (Euclidean, unit vectors) at the moment the row was picked, i.e. the coverage radius so far.
    Deterministic: it takes no seed.

    Exact, but lazy (as lazy greedy for submodular maximisation): a row's similarity to its nearest
    center only grows as centers are added, so a stale value is a lower bound. Each step refreshes
    only the rows with the lowest stale similarity against the centers added since their last
    refresh; when the best refreshed row is no closer than the best stale bound left, it is the
    farthest row of the pool. The pool is streamed in full only when ``LAZY_MAX_FRACTION`` of it
    would need refreshing, so a step costs a few thousand rows, not the whole matrix.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The pool's L2-normalised embeddings (streamed in blocks, never loaded whole).
    budget : int
        How many rows to pick.
    labeled : array of int, optional
        Rows already labeled: the first centers, never picked.

    Returns
    -------
    SeedResult
        The picks and their distances; clusters -1; ``info["coverage_radius"]``: the distance of
        the row that would be picked next.

    Raises
    ------
    InvalidInputError
        ``budget`` not a positive integer or more than the unlabeled rows; ``labeled`` out of range.

    References
    ----------
    .. [1] Sener, O. and Savarese, S. (2018). Active learning for convolutional neural networks: a
       core-set approach. ICLR.
    """
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    budget = check_budget(budget, n - labeled.size)
    max_sim = np.full(n, -np.inf, dtype=np.float32)  # similarity to the nearest center: distance is monotone in it
    picks: list[int] = []
    scores: list[float] = []
    if labeled.size:
        for s in range(0, labeled.size, 1024):
            _update_max_sim(X, np.asarray(X[labeled[s : s + 1024]]), max_sim)
    else:
        mean = np.zeros(X.shape[1], dtype=np.float64)
        for s in range(0, n, _BLOCK):
            mean += block(X, s, _BLOCK).sum(axis=0, dtype=np.float64)
        m = (mean / max(np.linalg.norm(mean), 1e-12)).astype(np.float32)
        sims = np.concatenate([block(X, s, _BLOCK) @ m for s in range(0, n, _BLOCK)])
        first = int(np.argmax(sims))
        picks.append(first)
        scores.append(float("nan"))
        _update_max_sim(X, np.asarray(X[first]), max_sim)
    max_sim[labeled] = np.inf
    max_sim[picks] = np.inf
    # centers[:seen[i]] are already folded into max_sim[i]; the labeled rows and the first pick are in every row
    centers = np.zeros((budget, X.shape[1]), dtype=np.float32)
    n_centers = 0
    seen = np.zeros(n, dtype=np.int32)
    if picks:
        centers[0] = X[picks[0]]
        n_centers = 1
        seen[:] = 1
    while len(picks) < budget:
        i = _lazy_farthest(X, max_sim, seen, centers[:n_centers])
        picks.append(i)
        scores.append(float(dist_of_sim(max_sim[i])))
        centers[n_centers] = X[i]
        n_centers += 1
        max_sim[i] = np.inf
    free = np.isfinite(max_sim)
    # coverage radius: the distance of the row that would be picked next
    radius = float(dist_of_sim(max_sim[_lazy_farthest(X, max_sim, seen, centers[:n_centers])])) if free.any() else 0.0
    info = {"coverage_radius": round(radius, 4)}
    return SeedResult(np.asarray(picks, dtype=np.int64), np.asarray(scores), np.full(len(picks), -1, dtype=np.int64), info)


#: rows refreshed in the first lazy try of a k-center step (doubled until the step is certain)
LAZY_START = 1024
#: past this fraction of the pool a step refreshes every row in one streamed pass instead
LAZY_MAX_FRACTION = 0.125


def _refresh(X: np.ndarray, rows: np.ndarray, max_sim: np.ndarray, seen: np.ndarray, centers: np.ndarray) -> None:
    """Fold the centers each of ``rows`` has not seen yet into its max_sim: exact afterwards.

    Few rows are gathered; many are read as contiguous blocks of the pool, which streams faster."""
    k = centers.shape[0]
    if rows.size == 0:
        return
    lo = int(seen[rows].min())
    C = centers[lo:].T
    stream = rows.size > X.shape[0] // 4
    for s in range(0, X.shape[0] if stream else rows.size, _BLOCK):
        if stream:
            xb = block(X, s, _BLOCK)
            r = np.arange(s, s + len(xb))
        else:
            r = rows[s : s + _BLOCK]
            xb = np.asarray(X[r], dtype=np.float32)
        sim = xb @ C  # [rows, k - lo]
        sim[np.arange(lo, k)[None, :] < seen[r, None]] = -np.inf  # centers already folded in
        max_sim[r] = np.maximum(max_sim[r], sim.max(axis=1))
        seen[r] = k


def _lazy_farthest(X: np.ndarray, max_sim: np.ndarray, seen: np.ndarray, centers: np.ndarray) -> int:
    """The row with the lowest exact similarity to its nearest center (``max_sim`` holds lower bounds)."""
    n = max_sim.size
    k = centers.shape[0]
    t = min(LAZY_START, n)
    while t < n and t <= LAZY_MAX_FRACTION * n:
        cand = np.argpartition(max_sim, t)[: t + 1]  # the t lowest bounds, then the (t+1)-th
        cand = cand[np.argsort(max_sim[cand], kind="stable")]
        bound, cand = max_sim[cand[-1]], cand[:-1]  # every row outside cand has a bound >= this
        _refresh(X, cand[seen[cand] < k], max_sim, seen, centers)
        best = cand[np.argmin(max_sim[cand])]
        if max_sim[best] <= bound:
            return int(best)
        t *= 4
    # too many rows in doubt: one streamed pass over the pool against the centers not yet seen by all
    _refresh(X, np.nonzero(seen < k)[0], max_sim, seen, centers)
    return int(np.argmin(max_sim))


# ----------------------------------------------------------------------------- ProbCover

#: the delta-ball graph is built on at most this many rows (a seeded sample of larger pools)
PROBCOVER_MAX_ROWS = 10000
#: and holds at most this many edges (the sample shrinks when balls are large)
PROBCOVER_MAX_EDGES = 40_000_000


#: how ProbCover picks delta when none is given (see ``probcover_delta``)
DELTA_RULES = ("midpoint", "purity")
#: k-means pseudo-classes of the purity rule when ``n_classes`` is not given (at most the rows)
DEFAULT_N_CLASSES = 10
#: rows of the sample on which ProbCover measures purity (the report: fmal.seed.diagnostics)
PURITY_QUERIES = 5000


def probcover_delta(
    X: np.ndarray,
    *,
    n_classes: int | None = None,
    alpha: float = 0.95,
    max_rows: int = PROBCOVER_MAX_ROWS,
    random_state: int = 0,
    budget: int | None = None,
    delta_rule: str = "midpoint",
    purity_queries: int = PURITY_QUERIES,
) -> dict[str, Any]:
    """ProbCover's automatic delta for a pool, on a seeded sample of at most ``max_rows`` rows
    (the same sample ProbCover uses without labels).

    ``purity`` (the paper's rule): k-means with ``n_classes`` clusters (default
    ``DEFAULT_N_CLASSES``) gives pseudo-labels; delta is the largest radius whose balls are pure for
    ``alpha`` of the rows. ``midpoint`` (default; needs ``budget``, else it is ``purity``): on
    sentence embeddings that delta is so small that 160 balls cover 6-17% of the pool and the greedy
    degenerates into density sampling (6-7 of 10 picks spam on sms_spam, fresh reviews over-picked
    on rotten_tomatoes), so delta is raised halfway to the radius at which ``budget`` balls could
    cover about half the pool (``tiling_radius``); never lowered. Purity is measured on
    ``purity_queries`` rows of the sample."""
    rule = _check_rule(delta_rule)
    n_classes = _resolve_n_classes(n_classes, X.shape[0])
    alpha = check_fraction(alpha, "alpha")
    rng = np.random.default_rng(random_state)
    rows = sample_rows(X.shape[0], max_rows, rng)
    Xs = np.ascontiguousarray(X[rows], dtype=np.float32)
    return _auto_delta(Xs, n_classes, alpha, budget if rule == "midpoint" else None, rng, random_state, purity_queries)


def _resolve_n_classes(n_classes: object, n_rows: int) -> int:
    """``DEFAULT_N_CLASSES`` (at most the rows) when None; else checked: an integer in [2, n_rows]."""
    if n_classes is None:
        return max(2, min(DEFAULT_N_CLASSES, n_rows))
    return check_n_classes(n_classes, n_rows)


def _check_rule(delta_rule: object) -> str:
    if delta_rule not in DELTA_RULES:
        raise InvalidInputError(f"delta_rule must be one of {', '.join(DELTA_RULES)}, got {delta_rule!r}")
    return str(delta_rule)


def _auto_delta(
    Xs: np.ndarray, n_classes: int, alpha: float, n_balls: int | None, rng: np.random.Generator, random_state: int,
    purity_queries: int = PURITY_QUERIES,
) -> dict[str, Any]:
    """The purity delta on ``Xs``, raised halfway to the tiling radius of ``n_balls`` balls when given."""
    from fmal.seed.clustering import kmeans  # clustering imports nothing from here; avoid a cycle at import

    k = min(n_classes, Xs.shape[0])  # a sample smaller than n_classes: as many as it has rows
    _, pseudo, _ = kmeans(Xs, k, random_state=random_state)
    pure, purity = purity_delta(Xs, pseudo, alpha, rng, max_queries=purity_queries)
    out: dict[str, Any] = {"delta": pure, "delta_rule": f"purity>={alpha:g} on {k} k-means pseudo-classes", "purity": purity}
    if n_balls is not None:
        tile = tiling_radius(Xs, n_balls, rng)
        if tile > pure:
            out["delta"] = 0.5 * (pure + tile)
            out["delta_rule"] += f" ({pure:.3f}), raised halfway to the tiling radius of {n_balls} balls ({tile:.3f})"
        out["purity_delta"] = pure
        out["tiling_radius"] = tile
    return out


@SEED_STRATEGIES.register("probcover")
def probcover_seed(
    X: np.ndarray,
    budget: int,
    *,
    labeled: np.ndarray | None = None,
    random_state: int = 0,
    delta: float | None = None,
    n_classes: int | None = None,
    alpha: float = 0.95,
    max_rows: int = PROBCOVER_MAX_ROWS,
    delta_rule: str = "midpoint",
) -> SeedResult:
    """ProbCover: greedy maximum coverage of delta-balls around the picks.

    The ball graph is built on a seeded sample of at most ``max_rows`` rows (every labeled row
    kept); each step takes the row whose ball holds the most uncovered rows (score: rows newly
    covered). Once every ball is covered, the rest of the budget is drawn at random.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The pool's L2-normalised embeddings.
    budget : int
        How many rows to pick.
    labeled : array of int, optional
        Rows already labeled: their balls count as covered; never picked.
    random_state : int, default 0
        Seed of the sample, of the pseudo-classes' k-means and of tie-breaks.
    delta : float, optional
        Ball radius (Euclidean distance between unit vectors, 0 < delta <= 2); default: from
        ``delta_rule`` (:func:`probcover_delta`).
    n_classes : int, optional
        k-means pseudo-classes of the purity rule (an integer >= 2, at most the rows; default
        ``DEFAULT_N_CLASSES``). Unused when ``delta`` is given.
    alpha : float, default 0.95
        Share of rows whose ball must be pure (0 < alpha < 1).
    max_rows : int, default PROBCOVER_MAX_ROWS
        Rows of the sample the ball graph is built on.
    delta_rule : {"midpoint", "purity"}, default "midpoint"
        ``purity``: the paper's rule; ``midpoint``: raised halfway to the radius at which
        ``budget`` balls could cover about half the pool.

    Returns
    -------
    SeedResult
        The picks and their coverage gains; clusters -1; ``delta`` the radius used; ``info``: how
        delta was chosen, the graph's size and the sample's coverage.

    Raises
    ------
    InvalidInputError
        A parameter out of its range; ``budget`` not a positive integer or more than the unlabeled
        rows.

    References
    ----------
    .. [1] Yehuda, O., Dekel, A., Hacohen, G. and Weinshall, D. (2022). Active learning through a
       covering lens. NeurIPS.
    """
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    budget = check_budget(budget, n - labeled.size)
    if delta is not None:
        delta = check_delta(delta)
    n_classes = _resolve_n_classes(n_classes, n)
    rule = _check_rule(delta_rule)
    alpha = check_fraction(alpha, "alpha")
    max_rows = int(check_positive(max_rows, "max_rows", integer=True))
    rng = np.random.default_rng(random_state)
    # the sample must hold every labeled row and room for the budget
    rows = sample_rows(n, max(max_rows, labeled.size + 2 * budget), rng, keep=labeled)
    Xs = np.ascontiguousarray(X[rows], dtype=np.float32)
    info: dict[str, Any] = {}
    if delta is None:
        auto = _auto_delta(Xs, n_classes, alpha, budget + labeled.size if rule == "midpoint" else None, rng, random_state)
        delta = auto.pop("delta")
        info.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in auto.items()})
    else:
        info["delta_rule"] = "given"
    # big balls: shrink the sample so the graph fits PROBCOVER_MAX_EDGES (labeled rows stay)
    frac = mean_ball_fraction(Xs, delta, rng)
    m_fit = int(np.sqrt(PROBCOVER_MAX_EDGES / max(frac, 1e-12)))
    if m_fit < rows.size:
        m_new = max(m_fit, labeled.size + 2 * budget)
        keep = np.isin(rows, labeled)
        others = np.nonzero(~keep)[0]
        sub = np.sort(np.concatenate([np.nonzero(keep)[0], rng.choice(others, size=max(m_new - int(keep.sum()), 0), replace=False)]))
        rows, Xs = rows[sub], Xs[sub]
    graph = ball_graph(Xs, delta)
    m = rows.size
    pos_labeled = np.searchsorted(rows, labeled)
    covered = np.zeros(m, dtype=bool)
    deg = graph.degree()  # uncovered rows in each ball

    def cover(p: int) -> int:
        ball = graph.neighbours_of(np.asarray([p]))
        new = ball[~covered[ball]]
        covered[new] = True
        if new.size:
            deg[:] -= np.bincount(graph.neighbours_of(new.astype(np.int64)), minlength=m)
        return int(new.size)

    for p in pos_labeled:
        cover(int(p))
    blocked = np.zeros(m, dtype=bool)
    blocked[pos_labeled] = True
    tiebreak = rng.random(m) * 0.5  # degrees are integers: this only breaks ties
    picks: list[int] = []
    scores: list[float] = []
    while len(picks) < budget:
        gain = np.where(blocked, -1.0, deg + tiebreak)
        p = int(np.argmax(gain))
        if deg[p] <= 0 or blocked[p]:
            break  # every ball is covered: nothing left to gain
        scores.append(float(cover(p)))
        blocked[p] = True
        picks.append(p)
    chosen = rows[np.asarray(picks, dtype=np.int64)] if picks else np.zeros(0, dtype=np.int64)
    filled = budget - chosen.size
    if filled:
        taken = np.zeros(n, dtype=bool)
        taken[labeled] = True
        taken[chosen] = True
        extra = rng.choice(np.nonzero(~taken)[0], size=filled, replace=False)
        chosen = np.concatenate([chosen, extra])
        scores += [0.0] * filled
    info.update(
        delta=round(float(delta), 4),
        graph_rows=int(m),
        graph_edges=graph.n_edges,
        sample_coverage=round(float(covered.mean()), 4),
        filled_at_random=int(filled),
    )
    if m < n:
        info["note"] = f"ball graph built on a seeded sample of {m:,} of {n:,} rows"
    return SeedResult(chosen.astype(np.int64), np.asarray(scores), np.full(budget, -1, dtype=np.int64), info, delta=float(delta))
