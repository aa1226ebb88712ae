"""FAISS indexes over a pool's embeddings: choose one from the pool size and a memory budget, build
it, measure its recall, save it (atomically) and load it with checks.

Embeddings are L2-normalised, so inner product is cosine similarity. The choice follows autofaiss's
rules (criteo/autofaiss ``get_optimal_index_keys_v2``), reimplemented without the dependency:
exact search while it fits and the pool is small, then IVF with flat codes while they fit, then
IVF with 8-bit scalar codes (a quarter of the memory, little recall lost), then IVF with PQ codes
sized to the budget. HNSW is available on request.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from fmal._atomic import atomic_path
from fmal.exceptions import CorruptPoolError, InvalidInputError

log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "hnsw", "ivfflat", "ivfsq", "ivfpq")
#: exact search up to this many vectors when it fits the budget (a flat scan of 200k x 384 is ~10 ms a query)
FLAT_MAX_ROWS = 200_000
DEFAULT_MAX_MEMORY = 4 * 2**30
RECALL_TARGET = 0.95
_NPROBES = (8, 16, 32, 64, 128, 256)


def parse_memory(text: str | int | None) -> int:
    """'4G', '512M', '1.5GB', or a number of bytes -> bytes."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text), flags=re.I)
    if not m or float(m.group(1)) <= 0:
        raise InvalidInputError(f"max index memory must look like 512M, 4G or 1.5T, got {text!r}")
    return int(float(m.group(1)) * 1024 ** "bkmgt".index((m.group(2) or "b").lower()))


@dataclass(frozen=True)
class IndexChoice:
    """A FAISS factory string and why it was chosen."""

    kind: str
    factory: str
    bytes_per_vector: float
    reason: str
    nlist: int = 0
    pq_m: int = 0
    #: set when the choice does not keep the promise of the budget (the smallest PQ code exceeds it)
    warning: str | None = None


#: most inverted lists fmal uses: building costs N x nlist x d, scanning N / nlist x nprobe per query
MAX_NLIST = 1024


def _nlist(n: int) -> int:
    """About sqrt(N) inverted lists (a power of two), at most MAX_NLIST. autofaiss uses 4 sqrt(N)
    for a search service; fmal searches few queries (the k-NN of labeled rows, once a round), so
    the build (N x nlist x d: 10M rows into 4,096 lists is 30 TFLOP, most of an hour on 2 cores)
    matters more than the scan (N / nlist x nprobe codes a query), and recall is recovered with
    nprobe, measured at build time."""
    return int(max(1, min(MAX_NLIST, 2 ** round(math.log2(max(1.0, math.sqrt(n)))))))


def _pq_m(d: int, budget_per_vector: float) -> int:
    """Largest PQ code size (bytes) that divides d and fits the per-vector budget (8-byte id included).
    When none fits, the smallest code (4 bytes, or 1 when 4 does not divide d): the index then
    exceeds the budget, which :func:`choose_index` says in its ``warning``."""
    ms = [m for m in (96, 64, 48, 32, 24, 16, 12, 8, 4) if d % m == 0 and m + 8 <= budget_per_vector]
    return ms[0] if ms else (4 if d % 4 == 0 else 1)


def choose_index(n: int, d: int, kind: str = "auto", max_memory: int = DEFAULT_MAX_MEMORY) -> IndexChoice:
    """Pick an index for ``n`` vectors of ``d`` dims under ``max_memory`` bytes."""
    if kind not in INDEX_KINDS:
        raise InvalidInputError(f"index must be one of [{', '.join(INDEX_KINDS)}], got {kind!r}")
    flat_b, ivf_b, sq_b, hnsw_b = 4 * d, 4 * d + 8, d + 8, 4 * d + 8 * 32 * 2 / 1.5
    per = max_memory / max(n, 1)
    nlist = _nlist(n)
    if kind == "flat" or (kind == "auto" and n <= FLAT_MAX_ROWS and flat_b <= per):
        return IndexChoice("flat", "Flat", flat_b, "exact search: the pool is small enough and fits the budget")
    if kind == "hnsw":
        return IndexChoice("hnsw", "HNSW32", hnsw_b, "requested")
    if kind == "ivfflat" or (kind == "auto" and ivf_b <= per):
        return IndexChoice("ivfflat", f"IVF{nlist},Flat", ivf_b,
                           f"{n:,} vectors: inverted lists with full vectors fit the budget", nlist=nlist)
    if kind == "ivfsq" or (kind == "auto" and sq_b <= per):
        return IndexChoice("ivfsq", f"IVF{nlist},SQ8", sq_b,
                           f"{n:,} vectors: full vectors exceed the budget, 8-bit scalar codes fit", nlist=nlist)
    m = _pq_m(d, per)
    why = "requested" if kind == "ivfpq" else f"{n:,} full vectors ({n * flat_b / 2**30:.1f} GiB) exceed the budget"
    warning = None
    if m + 8 > per:
        warning = (f"index over budget: the smallest PQ code (PQ{m}, {m + 8} B a vector with its id) needs "
                   f"{n * (m + 8) / 2**30:.2f} GiB for {n:,} vectors, over --max-index-memory "
                   f"{max_memory / 2**30:.2f} GiB; raise the budget or expect that much memory")
    return IndexChoice("ivfpq", f"IVF{nlist},PQ{m}", m + 8, why, nlist=nlist, pq_m=m, warning=warning)


def _sample(X: np.ndarray, size: int, random_state: int) -> np.ndarray:
    n = X.shape[0]
    if n <= size:
        return np.ascontiguousarray(X, dtype=np.float32)
    rows = np.sort(np.random.default_rng(random_state).choice(n, size=size, replace=False))
    return np.ascontiguousarray(X[rows], dtype=np.float32)


def exact_knn(X: np.ndarray, queries: np.ndarray, k: int, *, block: int = 262144) -> np.ndarray:
    """Exact top-``k`` inner-product neighbours of ``queries`` in ``X``, streaming ``X`` in blocks."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((q.shape[0], 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    for s in range(0, X.shape[0], block):
        xb = np.ascontiguousarray(X[s : s + block], dtype=np.float32)
        sims = q @ xb.T
        kk = min(k, sims.shape[1])
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        best_i = np.concatenate([best_i, top + s], axis=1)
        keep = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


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
    n = X.shape[0]
    rows = np.arange(n) if n <= n_queries else np.sort(
        np.random.default_rng(random_state + 1).choice(n, size=n_queries, replace=False))
    q = np.ascontiguousarray(X[rows], dtype=np.float32)
    near = exact_knn(X, q, min(k + 1, n))
    # drop the query's own row (normally its first neighbour; with duplicates, wherever it is)
    keep = [[i for i in r if i != row][: min(k, n - 1)] for r, row in zip(near.tolist(), rows.tolist())]
    return q, np.asarray(keep, dtype=np.int64).reshape(len(rows), -1), rows


def build_index(X: np.ndarray, kind: str = "flat", **kwargs: Any) -> faiss.Index:
    """Just the index of :func:`build` (for callers that do not record the choice)."""
    return build(X, kind, **kwargs)[0]


def build(
    X: np.ndarray,
    kind: str = "auto",
    *,
    max_memory: int = DEFAULT_MAX_MEMORY,
    random_state: int = 0,
    batch: int = 65536,
) -> tuple[faiss.Index, dict[str, Any]]:
    """Choose, train (on a sample), fill (in batches: a memmap is never loaded whole) and measure
    an index. Returns the index and what the manifest records about it."""
    n, d = X.shape
    choice = choose_index(n, d, kind, max_memory)
    index = faiss.index_factory(d, choice.factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        train = _sample(X, max(64 * choice.nlist, 10_000) if choice.nlist else 100_000, random_state)
        if choice.nlist > train.shape[0]:
            raise InvalidInputError(f"index {choice.factory}: {n} vectors are too few to train it; use --index flat")
        index.train(train)
    for s in range(0, n, batch):
        index.add(np.ascontiguousarray(X[s : s + batch], dtype=np.float32))
    info: dict[str, Any] = {"type": choice.kind, **{k: v for k, v in asdict(choice).items() if k not in ("kind", "warning")},
                            "metric": "inner_product", "ntotal": int(index.ntotal), "dim": int(d),
                            "max_memory": int(max_memory), "search_params": {}, "warnings": []}
    if choice.warning:
        log.warning(choice.warning)
        info["warnings"].append(choice.warning)
    if choice.kind == "flat":
        info["recall_at_10"] = 1.0  # exact search
    else:
        recall = 0.0
        truth = recall_truth(X, random_state=random_state)
        if choice.kind == "hnsw":
            for ef in (32, 64, 128, 256):
                faiss.ParameterSpace().set_index_parameter(index, "efSearch", ef)
                info["search_params"] = {"efSearch": ef}
                recall = recall_at_k(index, X, truth=truth)
                if recall >= RECALL_TARGET:
                    break
        else:
            for nprobe in [p for p in _NPROBES if p <= choice.nlist] or [choice.nlist]:
                faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
                info["search_params"] = {"nprobe": nprobe}
                recall = recall_at_k(index, X, truth=truth)
                if recall >= RECALL_TARGET:
                    break
        info["recall_at_10"] = round(float(recall), 4)
        if recall < RECALL_TARGET:
            knob = ", ".join(f"{k}={v}" for k, v in info["search_params"].items())
            msg = (f"index {choice.factory}: recall@10 {recall:.3f} at the largest setting tried ({knob}) is under "
                   f"the {RECALL_TARGET} target; neighbour searches (--candidates knn:K, seeding) may miss rows. "
                   "Use --index flat (exact) or a larger --max-index-memory")
            log.warning(msg)
            info["warnings"].append(msg)
    info["recall_target"] = RECALL_TARGET
    info["recall_queries"] = "held-out pool rows (each query's own row excluded)" if choice.kind != "flat" else "exact"
    return index, info


def save_index(index: faiss.Index, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(
    path: str | os.PathLike[str],
    *,
    n: int,
    dim: int,
    search_params: dict[str, Any] | None = None,
    mmap: bool = False,
    kind: str | None = None,
) -> faiss.Index:
    """Load an index, check it holds ``n`` vectors of ``dim`` dims, apply its recorded search params.

    ``mmap``: leave the vectors on disk until searched (IVF lists, or the flat codes of the other
    kinds; ``kind`` is the recorded index type, as the two need different FAISS flags)."""
    path = Path(path)
    if not path.is_file():
        raise CorruptPoolError(f"{path}: index file missing; rebuild the pool with fmal embed --overwrite")
    try:
        flags = 0
        if mmap:
            ivf = kind is None or str(kind).startswith("ivf")
            flags = (faiss.IO_FLAG_MMAP if ivf else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
    except Exception:
        raise CorruptPoolError(f"{path}: index file is unreadable; rebuild the pool with fmal embed --overwrite") from None
    if index.ntotal != n or index.d != dim:
        raise CorruptPoolError(
            f"{path}: index holds {index.ntotal} vectors of dim {index.d}, the pool {n} of dim {dim}; "
            "rebuild the pool with fmal embed --overwrite"
        )
    for key, value in (search_params or {}).items():
        faiss.ParameterSpace().set_index_parameter(index, key, value)
    return index


def knn(index: faiss.Index, queries: np.ndarray, k: int, *, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of each query row: (similarities, row ids), batched for memory."""
    k = int(min(k, index.ntotal))
    sims = np.empty((queries.shape[0], k), dtype=np.float32)
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    for s in range(0, queries.shape[0], batch):
        q = np.ascontiguousarray(queries[s : s + batch], dtype=np.float32)
        sims[s : s + len(q)], ids[s : s + len(q)] = index.search(q, k)
    return sims, ids
