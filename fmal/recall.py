"""Recall of an approximate index, measured at build time: the exact neighbours of a seeded sample
of held-out pool rows (one blocked product over the pool), the share of them an index returns, and
the search setting (nprobe, efSearch) that reaches :data:`RECALL_TARGET`.

For IVF indexes the recall of every nprobe is first read off the inverted lists
(:func:`probed_recall`): a neighbour stored in a list the search does not probe is never found,
and with flat codes (exact scores) every one in a probed list is. So IVF-Flat needs no search at
all, and IVF-SQ/PQ only searches the settings whose lists can hold the target share.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fmal._lazy import lazy_module
from fmal._parallel import parallel_map, single_blas

faiss = lazy_module("faiss")
log = logging.getLogger(__name__)

RECALL_TARGET = 0.95
_NPROBES = (8, 16, 32, 64, 128, 256)

def exact_knn(X: np.ndarray, queries: np.ndarray, k: int, *, block: int = 65536) -> np.ndarray:
    """Exact top-``k`` inner-product neighbours of ``queries`` in ``X``, streaming ``X`` in blocks
    (over the cores, one BLAS thread each; 65,536 rows a block: ~100 MB at 384 dims), best first.

    Why not ``faiss.contrib.exhaustive_search.knn_ground_truth`` (the same job over an iterator of
    blocks): tried in its place (2026-12, 100,000 x 384 rows, 200 queries, k=11, the busy 2-core
    machine), it returned the same ids but took 5.3-6.5 s against 0.75-3.5 s here, with FAISS's
    OpenMP threads at 1 or at their default (likely: it pushes every row of a block through a
    heap per query where this takes one argpartition per block, and it reads one block at a time
    where this spreads blocks over the cores)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)

    def one(s: int) -> tuple[np.ndarray, np.ndarray]:
        sims = q @ np.ascontiguousarray(X[s : s + block], dtype=np.float32).T
        kk = min(k, sims.shape[1])
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        return np.take_along_axis(sims, top, 1), top + s

    with single_blas():
        parts = parallel_map(one, range(0, X.shape[0], block))
    return merge_top(parts, k)


def merge_top(parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> np.ndarray:
    """The ``k`` best ids per query row from blocks' (scores, ids) candidates, best first."""
    best_s = np.concatenate([p[0] for p in parts], axis=1)
    best_i = np.concatenate([p[1] for p in parts], axis=1)
    keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(best_i, keep, 1)


def recall_at_k(
    index: faiss.Index,
    X: np.ndarray,
    *,
    k: int = 10,
    n_queries: int = 200,
    random_state: int = 0,
    truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> float:
    """Share of the exact top-``k`` neighbours that ``index`` returns for held-out queries.

    The queries are pool rows, but each is held out of its own answer: its neighbours are the
    ``k`` nearest *other* rows, exactly and from the index alike (the index is asked for ``k + 1``
    and the query's own row is dropped). A row finding itself is free for any index and would
    inflate recall by up to 1/k. ``truth``: (queries, exact neighbours, query rows) from
    :func:`recall_truth`, to measure several settings with one exact pass over the pool."""
    q, exact, rows = truth if truth is not None else recall_truth(X, k=k, n_queries=n_queries, random_state=random_state)
    kk = exact.shape[1]
    _, got = index.search(q, min(kk + 1, index.ntotal))
    hits = 0
    for row, want, found in zip(rows.tolist(), exact, got):
        others = [i for i in found.tolist() if i != row and i >= 0][:kk]
        hits += len(set(want.tolist()) & set(others))
    return hits / float(exact.size)


def recall_truth(X: np.ndarray, *, k: int = 10, n_queries: int = 200,
                 random_state: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded sample of pool rows as queries, their exact top-``k`` neighbours among the *other*
    rows (one streamed pass), and the query rows themselves: (queries, neighbours, rows)."""
    rows, q = recall_queries(X, n_queries, random_state)
    return without_self(q, exact_knn(X, q, min(k + 1, X.shape[0])), rows, k, X.shape[0])


def recall_queries(X: np.ndarray, n_queries: int = 200, random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The seeded pool rows :func:`recall_truth` asks about, and their vectors: (rows, queries)."""
    n = X.shape[0]
    rows = np.arange(n) if n <= n_queries else np.sort(
        np.random.default_rng(random_state + 1).choice(n, size=n_queries, replace=False))
    return rows, np.ascontiguousarray(X[rows], dtype=np.float32)


def without_self(q: np.ndarray, near: np.ndarray, rows: np.ndarray, k: int,
                 n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truth of :func:`recall_truth` from the ``k + 1`` exact neighbours ``near`` of each query."""
    # drop the query's own row (normally its first neighbour; with duplicates, wherever it is)
    keep = [[i for i in r if i != row][: min(k, n - 1)] for r, row in zip(near.tolist(), rows.tolist())]
    return q, np.asarray(keep, dtype=np.int64).reshape(len(rows), -1), rows


def tune(index: faiss.Index, X: np.ndarray, kind: str, nlist: int = 0, *, random_state: int = 0,
         factory: str = "", truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """Measure recall@10 on held-out pool rows and raise the search parameter (nprobe, efSearch)
    until it reaches RECALL_TARGET: the manifest's ``search_params``, ``recall_at_10``,
    ``recall_target`` and ``recall_queries``; ``recall_warning`` (logged too) when the target is
    never reached. Run after a build, and after rows are appended to an index (its lists grew).
    ``truth``: :func:`recall_truth`'s, when the build already computed it."""
    if kind == "flat":
        return {"search_params": {}, "recall_at_10": 1.0, "recall_target": RECALL_TARGET, "recall_queries": "exact",
                "recall_warning": None}
    recall, params = 0.0, {}
    truth = recall_truth(X, random_state=random_state) if truth is None else truth
    name, values = ("efSearch", (32, 64, 128, 256)) if kind == "hnsw" else ("nprobe", [p for p in _NPROBES if p <= nlist] or [nlist])
    bound = probed_recall(index, truth, values) if name == "nprobe" else {}
    if bound:  # settings whose probed lists cannot hold the target share of the neighbours are not searched
        values = values[next((i for i, v in enumerate(values) if bound[v] >= RECALL_TARGET), len(values) - 1):]
    for v in values:
        faiss.ParameterSpace().set_index_parameter(index, name, v)
        params = {name: v}
        # flat codes score exactly: the neighbours found are those in the probed lists (no search needed)
        recall = bound[v] if kind == "ivfflat" and bound else recall_at_k(index, X, truth=truth)
        if recall >= RECALL_TARGET:
            break
    warning = None
    if recall < RECALL_TARGET:
        knob = ", ".join(f"{k}={v}" for k, v in params.items())
        warning = (f"index {factory or kind}: recall@10 {recall:.3f} at the largest setting tried ({knob}) is under "
                   f"the {RECALL_TARGET} target; neighbour searches (--candidates knn:K, seeding) may miss rows. "
                   "Use --index flat (exact) or a larger --max-index-memory")
        log.warning(warning)
    return {"search_params": params, "recall_at_10": round(float(recall), 4), "recall_target": RECALL_TARGET,
            "recall_queries": "held-out pool rows (each query's own row excluded)", "recall_warning": warning}


def probed_recall(index: Any, truth: tuple[np.ndarray, np.ndarray, np.ndarray], nprobes: list[int]) -> dict[int, float]:
    """For each nprobe, the share of the exact neighbours in ``truth`` (:func:`recall_truth`) that
    lie in the lists an IVF search probes: no search finds more, and one with flat codes (exact
    scores) finds exactly these (its top-k of the probed rows holds every true neighbour among
    them). Two small products instead of a search a setting: {} when ``index`` is not an IVF."""
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return {}
    q, exact, _ = truth
    want = np.unique(exact)
    where = np.full(want.shape[0], -1, dtype=np.int64)
    inv = ivf.invlists
    for lst in range(ivf.nlist):  # the list each neighbour was stored in
        size = inv.list_size(lst)
        if size:
            ptr = inv.get_ids(lst)
            ids = faiss.rev_swig_ptr(ptr, size).copy()
            inv.release_ids(lst, ptr)
            pos = np.searchsorted(want, ids).clip(0, want.shape[0] - 1)
            where[pos[want[pos] == ids]] = lst
    _, order = ivf.quantizer.search(q, ivf.nlist)  # each query's lists, nearest first (as a search probes them)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(ivf.nlist)[None, :].repeat(len(q), 0), 1)
    lists = where[np.searchsorted(want, exact)]
    r = np.where(lists >= 0, np.take_along_axis(rank, lists.clip(0), 1), ivf.nlist)
    return {p: float((r < p).mean()) if r.size else 1.0 for p in nprobes}
