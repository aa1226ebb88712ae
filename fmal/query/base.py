"""What every query strategy takes and returns, and the registry that names them.

A query strategy ranks the candidate rows given the probe's probabilities on them; it does no I/O.
Its options are keyword-only parameters (no ``**kwargs``): the registry reads the signature and
refuses a keyword it does not declare (:meth:`fmal.registry.Registry.call`):

    @QUERY_STRATEGIES.register("mine")
    def mine(ctx: QueryContext, budget: int, *, my_option: float = 1.0) -> QueryResult: ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fmal.registry import Registry


@dataclass
class QueryContext:
    """Everything a strategy may look at.

    ``candidates``: pool rows that may be picked; ``proba``: the probe's probabilities on them
    (columns in ``classes`` order); ``X``: the whole pool's embeddings (memory-mapped);
    ``labeled``: rows already labeled; ``index``: the pool's FAISS index (None when the round scans
    all rows: no built-in strategy needs it, and loading it costs N x d x 4 bytes); ``labels``: the
    labels of ``labeled`` (same order) and ``origin``: where each came from ("seed", "active",
    "random": a uniform pick of a query round, "other"), for strategies that adapt (``adaptive``).
    """

    X: np.ndarray
    candidates: np.ndarray
    proba: np.ndarray
    classes: np.ndarray
    labeled: np.ndarray
    index: Any = None
    probe: Any = None
    random_state: int = 0
    labels: np.ndarray | None = None
    origin: np.ndarray | None = None


@dataclass
class QueryResult:
    """Rows picked (pool row numbers, in order of preference) and each one's score; ``is_random``
    marks the picks drawn uniformly at random (None: the strategy does not say)."""

    indices: np.ndarray
    scores: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    is_random: np.ndarray | None = None


class QueryStrategy(Protocol):
    def __call__(self, ctx: QueryContext, budget: int, **params: Any) -> QueryResult: ...


QUERY_STRATEGIES: Registry[QueryStrategy] = Registry("query strategy")


def top_k(scores: np.ndarray, k: int, random_state: int = 0) -> np.ndarray:
    """Positions of the ``k`` highest scores; ties broken at random with ``random_state``.

    For a few of many scores, only those at or above the k-th highest are sorted (a partition
    first): the same positions in the same order as sorting them all (1M scores, k 5,000: 0.14 s
    against 0.31 s)."""
    neg = -np.asarray(scores, dtype=np.float64)
    tiebreak = np.random.default_rng(random_state).random(neg.shape[0])
    if 0 < k < neg.shape[0] // 4 and not np.isnan(neg).any():
        near = np.flatnonzero(neg <= np.partition(neg, k - 1)[k - 1])  # every score tied with the k-th too
        return near[np.lexsort((tiebreak[near], neg[near]))][:k]
    return np.lexsort((tiebreak, neg))[:k]
