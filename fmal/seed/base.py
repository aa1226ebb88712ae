"""What every cold-start strategy takes and returns, and the registry that names them.

A strategy is a plain function over an embedding matrix (rows L2-normalised) and the pool's FAISS
index; it does no I/O. Adding one is one function and one ``@SEED_STRATEGIES.register`` line:

    @SEED_STRATEGIES.register("mine")
    def mine(X, budget, *, index=None, labeled=None, random_state=0, **params) -> SeedResult: ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fmal.registry import Registry


@dataclass
class SeedResult:
    """Rows chosen by a seed strategy, in the order chosen.

    ``scores``: the strategy's reason for each pick (typicality, distance, similarity to a centroid;
    NaN for random); ``clusters``: the cluster a pick stands for, -1 when the strategy has none;
    ``info``: diagnostics the CLI prints (coverage, clusters represented, ...).
    ``delta`` and ``assign`` (the ball radius and the pool's k-means clusters, when the strategy
    computed them) let the diagnostics reuse that work instead of redoing it.
    """

    indices: np.ndarray
    scores: np.ndarray
    clusters: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    delta: float | None = None
    assign: np.ndarray | None = field(default=None, repr=False)


class SeedStrategy(Protocol):
    def __call__(
        self,
        X: np.ndarray,
        budget: int,
        *,
        index: Any = None,
        labeled: np.ndarray | None = None,
        random_state: int = 0,
        **params: Any,
    ) -> SeedResult: ...


SEED_STRATEGIES: Registry[SeedStrategy] = Registry("seed strategy")
