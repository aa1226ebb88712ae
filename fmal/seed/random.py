"""Uniform random sampling: the baseline every other strategy must beat."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal._validation import check_budget, check_indices
from fmal.seed.base import SEED_STRATEGIES, SeedResult


@SEED_STRATEGIES.register("random")
def random_seed(
    X: np.ndarray, budget: int, *, index: Any = None, labeled: np.ndarray | None = None, random_state: int = 0, **_: Any
) -> SeedResult:
    """``budget`` rows drawn uniformly without replacement from the unlabeled rows."""
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    free = np.setdiff1d(np.arange(n), labeled)
    budget = check_budget(budget, free.size)
    picks = np.random.default_rng(random_state).choice(free, size=budget, replace=False)
    return SeedResult(picks.astype(np.int64), np.full(budget, np.nan), np.full(budget, -1, dtype=np.int64))
