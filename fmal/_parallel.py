"""How fmal's own numeric work uses the cores: one BLAS thread per Python thread, and a few Python
threads over independent blocks (matrix products release the GIL).

Why (measured on the 2-core machine while other jobs ran, same run, best of 3):
  - FAISS brings OpenMP threads and calls OpenBLAS, which brings its own: 2 x 2 threads on 2
    cores. A flat 1-NN search of 100k x 384 rows against 100 centroids took 0.80 s with the
    default threads and 0.23 s with one of each; 100 exact k-NN of 500 rows 6.2 s against 0.88 s;
    FAISS k-means (6,400 rows, 100 centroids) 1.35 s against 0.18 s.
  - OpenBLAS's own threads do not pay on the products a seed or a query round makes (a few
    hundred rows, or skinny ones): 100 Gram matrices of 500 x 384 rows took 2.8 s on 2 threads and
    0.38 s on one; 100 products of 6 x 4096 rows 1.75 s against 0.21 s. Threads that wait for one
    another on a busy machine cost more than they give.
  - The cores are then used by splitting the work into independent blocks (row blocks of the
    pool, clusters) over ``n_workers()`` Python threads, each a one-thread BLAS call: the 100k x 100
    assignment went from 0.27 s (one thread) to 0.21 s on the busy machine.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_controller: Any = None
_controller_has_faiss = False


def n_workers() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def single_blas() -> Iterator[None]:
    """One thread in every BLAS and OpenMP pool (OpenBLAS, FAISS's OpenMP) while the block runs."""
    global _controller, _controller_has_faiss
    from threadpoolctl import ThreadpoolController

    # FAISS is imported lazily: a controller made before it exists would leave its OpenMP threads
    # unlimited (seen: a k-means training at 0.98 s CPU instead of 0.17 s), so make it again then
    if _controller is None or (not _controller_has_faiss and "faiss" in sys.modules):
        _controller = ThreadpoolController()
        _controller_has_faiss = "faiss" in sys.modules
    with _controller.limit(limits=1):
        yield


def parallel_map(fn: Callable[[Any], T], items: Iterable[Any], workers: int | None = None) -> list[T]:
    """``[fn(x) for x in items]`` on up to ``workers`` (default ``n_workers()``) threads, in order.
    Meant for ``fn`` that spend their time in numpy calls releasing the GIL (inside ``single_blas``)."""
    items = list(items)
    w = min(workers or n_workers(), len(items))
    if w <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(w) as ex:
        return list(ex.map(fn, items))
