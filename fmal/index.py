"""FAISS indexes over a pool's embeddings: choose one from the pool size and a memory budget, build
it, measure its recall, save it (atomically) and load it with checks.

Embeddings are L2-normalised, so inner product is cosine similarity. The choice follows autofaiss's
rules (criteo/autofaiss ``get_optimal_index_keys_v2``), reimplemented without the dependency:
exact search while it fits and the pool is small, then IVF with flat codes while they fit, then
IVF with 8-bit scalar codes (a quarter of the memory, little recall lost), then IVF with PQ codes
sized to the budget. HNSW is available on request.

Building an IVF index is two big products: training (k-means of 64 x nlist sampled rows into
nlist lists, IVF_TRAIN_NITER iterations) and assigning every row to its nearest list (N x nlist x
d). Both run with one BLAS/OpenMP thread per worker (fmal._parallel: FAISS's OpenMP threads and
OpenBLAS's fought over the cores); the assignment is fmal's own blocked product spread over the
cores (one BLAS thread each), and FAISS only appends
each block's codes to the lists it was assigned (``add_core``). The same product scores the
recall queries (:mod:`fmal.recall`) against every row, so their exact neighbours cost no second
pass over the pool, and recall per nprobe is read off the lists. ``build(..., timings={})``
fills in the seconds and GFLOP of each step (benchmarks/interactive.py and ingest.py print the
share of the fp32 bound they reached); they stay out of the manifest, which must be the same for
the same input.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmal.pool import check as pool_check
from fmal._atomic import atomic_path
from fmal._lazy import lazy_module
from fmal._parallel import n_workers, parallel_map, single_blas
from fmal.exceptions import CorruptPoolError, InvalidInputError
from fmal.recall import RECALL_TARGET, _NPROBES, exact_knn, probed_recall, recall_at_k, recall_truth, tune  # noqa: F401 (fmal.index's API)
from fmal.recall import merge_top, recall_queries, without_self

faiss = lazy_module("faiss")  # imported on first use: fmal --help must not pay for it
log = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "hnsw", "ivfflat", "ivfsq", "ivfpq")
#: exact search up to this many vectors when it fits the budget (a flat scan of 200k x 384 is ~10 ms a query)
FLAT_MAX_ROWS = 200_000
DEFAULT_MAX_MEMORY = 4 * 2**30
#: PQ codes are 8-bit: each sub-quantizer trains 2**8 centroids, so IVF-PQ needs this many vectors
PQ_MIN_ROWS = 256
#: the search parameters a manifest may record (IVF: nprobe, HNSW: efSearch)
SEARCH_PARAMS = ("nprobe", "efSearch")


def format_memory(n_bytes: float) -> str:
    """Bytes as the shortest of B, K, M, G (as --max-index-memory takes them)."""
    for unit, size in (("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g}{unit}"
    return f"{int(n_bytes)}B"
#: k-means iterations of the IVF lists' training (FAISS's IVF default, pinned here because the
#: FLOP count reported in ``timings`` depends on it)
IVF_TRAIN_NITER = 10
#: rows assigned per block (its product with 1,024 lists, 16 MiB, stays in cache better than larger ones)
ADD_BLOCK = 4096


def parse_memory(text: str | int | None) -> int:
    """'4G', '512M', '1.5GB', or a number of bytes -> bytes."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text), flags=re.I)
    if not m or float(m.group(1)) <= 0:
        raise InvalidInputError(f"max_index_memory must look like 512M, 4G or 1.5T, got {text!r}", param="max_index_memory")
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
    note: str = ""  # set when the choice departs from the budget: say so before embedding
    #: set when the choice does not keep the promise of the budget (the smallest PQ code exceeds it)
    warning: str | None = None


def check_trainable(n: int, kind: str) -> None:
    """Refuse an index kind that cannot be trained on ``n`` vectors: checked as soon as the row
    count is known, before any embedding (``auto`` never picks one)."""
    if kind == "ivfpq" and n < PQ_MIN_ROWS:
        raise InvalidInputError(
            f"index ivfpq: {n:,} rows are too few to train its 8-bit PQ codes (it needs {PQ_MIN_ROWS:,}); "
            "use index auto, flat or ivfsq", param="index"
        )


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
        raise InvalidInputError(f"index must be one of [{', '.join(INDEX_KINDS)}], got {kind!r}", param="index")
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
    if kind == "auto" and n < PQ_MIN_ROWS:
        note = (f"--max-index-memory {format_memory(max_memory)} is too small for {n:,} vectors and IVF-PQ needs "
                f"{PQ_MIN_ROWS:,} to train: using exact search (Flat, {format_memory(n * flat_b)})")
        return IndexChoice("flat", "Flat", flat_b, note, note=note)
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
        return np.ascontiguousarray(X[:n], dtype=np.float32)  # a slice: a BlockMatrix is read, never converted whole
    rows = np.sort(np.random.default_rng(random_state).choice(n, size=size, replace=False))
    return np.ascontiguousarray(X[rows], dtype=np.float32)


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
    timings: dict[str, Any] | None = None,
) -> tuple[faiss.Index, dict[str, Any]]:
    """Choose, train (on a sample), fill (in batches: a memmap is never loaded whole) and measure
    an index. Returns the index and what the manifest records about it. ``timings``: a dict to
    fill with each step's seconds and GFLOP (train, add, recall)."""
    n, d = X.shape
    choice = choose_index(n, d, kind, max_memory)
    check_trainable(n, choice.kind)
    index = faiss.index_factory(d, choice.factory, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    flops = {"train": 0.0, "add": 0.0}
    if not index.is_trained:
        train = _sample(X, max(64 * choice.nlist, 10_000) if choice.nlist else 100_000, random_state)
        if choice.nlist > train.shape[0]:
            raise InvalidInputError(f"{choice.factory}: {n} vectors are too few to train it; use index flat", param="index")
        ivf = faiss.extract_index_ivf(index) if choice.nlist else None
        if ivf is not None:
            ivf.cp.niter = IVF_TRAIN_NITER
            flops["train"] = 2.0 * train.shape[0] * choice.nlist * d * IVF_TRAIN_NITER
        # one thread: FAISS's OpenMP threads (tried 2026-12 for the 1M build's 65,536 rows x 1,024 lists) were
        # 2x faster on the 2 cores when idle, slower when busy (11.5 s against 14-16 s), and the blocked
        # assignment after them ran slower too (5.3 -> 7.1 s at 200k rows)
        with single_blas():
            index.train(train)
    t1 = time.perf_counter()
    truth = None
    if choice.nlist:  # the recall queries' exact neighbours come out of the same products as the assignment
        rows, q = recall_queries(X, random_state=random_state)
        truth = without_self(q, _add_ivf(index, X, min(batch, ADD_BLOCK), q, min(11, n)), rows, 10, n)
        flops["add"], flops["truth"] = 2.0 * n * choice.nlist * d, 2.0 * len(rows) * n * d
    else:
        for s in range(0, n, batch):
            index.add(np.ascontiguousarray(X[s : s + batch], dtype=np.float32))
    t2 = time.perf_counter()
    info: dict[str, Any] = {"type": choice.kind, **{k: v for k, v in asdict(choice).items() if k not in ("kind", "warning")},
                            "metric": "inner_product", "ntotal": int(index.ntotal), "dim": int(d),
                            "max_memory": int(max_memory), "search_params": {}, "warnings": []}
    if choice.warning:
        log.warning(choice.warning)
        info["warnings"].append(choice.warning)
    if choice.kind == "hnsw":
        flops["recall"] = 2.0 * 200 * n * d  # the exact pass of recall_truth
    tuned = tune(index, X, choice.kind, choice.nlist, random_state=random_state, factory=choice.factory, truth=truth)
    if warning := tuned.pop("recall_warning"):
        info["warnings"].append(warning)
    info.update(tuned)
    if timings is not None:
        timings.update(seconds={"train": t1 - t0, "add": t2 - t1, "recall": time.perf_counter() - t2},
                       gflop={k: v / 1e9 for k, v in flops.items()})
    return index, info


def _add_ivf(index: Any, X: np.ndarray, block: int, queries: np.ndarray, k: int) -> np.ndarray:
    """Add every row of ``X`` to an IVF ``index``: fmal assigns each block of rows to its nearest
    list (one product with the list centroids, blocks over the cores), FAISS encodes and appends
    them in row order (``add_core`` with the assignment, ids = row numbers). The same product has
    a column per row of ``queries``: returns their exact top-``k`` rows of ``X`` (inner product,
    best first), with no second pass over ``X``."""
    ivf = faiss.extract_index_ivf(index)
    C = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    CQ = np.ascontiguousarray(np.concatenate([C, queries]).T)
    ip = ivf.quantizer.metric_type == faiss.METRIC_INNER_PRODUCT
    bias = None if ip else -0.5 * np.einsum("ij,ij->i", C, C)

    def assign(s: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        xb = np.ascontiguousarray(X[s : s + block], dtype=np.float32)
        P = xb @ CQ
        A = P[:, : ivf.nlist]
        if bias is not None:
            A += bias
        S = P[:, ivf.nlist :].T  # queries x rows
        kk = min(k, S.shape[1])
        top = np.argpartition(-S, kk - 1, axis=1)[:, :kk]
        return xb, np.argmax(A, axis=1).astype(np.int64), (np.take_along_axis(S, top, 1), top + s)

    starts = list(range(0, X.shape[0], block))
    step = 2 * n_workers()
    near: list[tuple[np.ndarray, np.ndarray]] = []
    with single_blas():
        for g in range(0, len(starts), step):
            for xb, a, cand in parallel_map(assign, starts[g : g + step]):
                index.add_core(xb.shape[0], faiss.swig_ptr(xb), None, faiss.swig_ptr(a))
                near.append(cand)
    return merge_top(near, k)


def save_index(index: faiss.Index, path: str | os.PathLike[str]) -> str:
    """Write ``index`` atomically; return its sha256 (hashed as it is written: no second read)."""
    h = pool_check.StreamSha256()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        def put(b: bytes) -> None:
            h.update(b)
            fh.write(b)

        faiss.write_index(index, faiss.PyCallbackIOWriter(put))
    return h.hexdigest()


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
        raise CorruptPoolError(f"{path}: index file missing; {pool_check.repair_hint(path.parent)}")
    try:
        flags = 0
        if mmap:
            ivf = kind is None or str(kind).startswith("ivf")
            flags = (faiss.IO_FLAG_MMAP if ivf else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
    except Exception:
        raise CorruptPoolError(f"{path}: index file is unreadable; {pool_check.repair_hint(path.parent)}") from None
    if index.ntotal != n or index.d != dim:
        raise CorruptPoolError(
            f"{path}: index holds {index.ntotal} vectors of dim {index.d}, the pool {n} of dim {dim}; "
            + pool_check.repair_hint(path.parent)
        )
    params = {} if search_params is None else search_params
    bad = not isinstance(params, dict) or any(
        k not in SEARCH_PARAMS or isinstance(v, bool) or not isinstance(v, int) or v < 1 for k, v in params.items())
    if not bad:
        try:
            for key, value in params.items():
                faiss.ParameterSpace().set_index_parameter(index, key, value)
        except RuntimeError:  # a parameter this kind of index does not have
            bad = True
    if bad:
        raise CorruptPoolError(
            f"{path.parent / 'manifest.json'}: index.search_params must map {' or '.join(SEARCH_PARAMS)} to a positive "
            f"integer this index takes, got {str(params)[:80]}; {pool_check.repair_hint(path.parent)}"
        )
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
