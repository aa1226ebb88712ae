"""Uniform random sampling: the baseline every other strategy must beat."""

from __future__ import annotations

import numpy as np

from fmal._validation import check_budget, check_indices
from fmal.seed.base import SEED_STRATEGIES, SeedResult


@SEED_STRATEGIES.register("random")
def random_seed(X: np.ndarray, budget: int, *, labeled: np.ndarray | None = None, random_state: int = 0) -> SeedResult:
    """Uniform random rows without replacement among the unlabeled ones: the baseline.

    Parameters
    ----------
    X : ndarray of shape (n, d)
        The pool's embeddings (only their row count is used).
    budget : int
        How many rows to pick.
    labeled : array of int, optional
        Rows already labeled: never picked.
    random_state : int, default 0
        Seed of the draw.

    Returns
    -------
    SeedResult
        The picks; scores NaN, clusters -1.

    Raises
    ------
    InvalidInputError
        ``budget`` not a positive integer or more than the unlabeled rows; ``labeled`` out of range.
    """
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    taken = np.zeros(n, dtype=bool)
    taken[labeled] = True
    free = np.flatnonzero(~taken)  # the sorted unlabeled rows, as np.setdiff1d gave, without its sort
    budget = check_budget(budget, free.size)
    picks = np.random.default_rng(random_state).choice(free, size=budget, replace=False)
    return SeedResult(picks.astype(np.int64), np.full(budget, np.nan), np.full(budget, -1, dtype=np.int64))
