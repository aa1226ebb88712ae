"""The default cold start (``auto``): stratified sampling over k-means clusters.

Why: TypiClust and k-means centroids pick each cluster's most typical row. When the embedding's
clusters are the label's axis (topics, question types) that wins; when they are not (sentiment
inside movie topics: rotten_tomatoes) the most typical rows are the blandest and a probe trained on
them loses to one trained on random rows. A *random* row from each of ``budget`` k-means clusters
keeps the diversity (every region of the pool is sampled, none twice) without the typicality bias:
it is a stratified random sample, which is never worse than a simple random sample in
expectation and better when the strata explain the labels. benchmarks/seed_quality.py measures it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal._validation import check_budget, check_indices
from fmal.seed.base import SEED_STRATEGIES, SeedResult
from fmal.seed.clustering import _cluster_pick, typiclust_seed
from fmal.seed.random import random_seed


def _random_member(rows: np.ndarray, sim: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    j = int(rng.integers(rows.size))
    return int(rows[j]), float(sim[rows[j]])


@SEED_STRATEGIES.register("auto")
def auto_seed(
    X: np.ndarray,
    budget: int,
    *,
    index: Any = None,
    labeled: np.ndarray | None = None,
    random_state: int = 0,
    rule: str = "strata",
    **params: Any,
) -> SeedResult:
    """Default: one random row from each of the largest uncovered k-means clusters (a stratified
    random sample: diverse like TypiClust, unbiased like random). Score: similarity to the centroid."""
    n = X.shape[0]
    labeled = check_indices(labeled, n)
    budget = check_budget(budget, n - labeled.size)
    if rule == "strata":
        res = _cluster_pick(X, budget, labeled, random_state, _random_member)
    elif rule == "hedge":  # half TypiClust, half random
        half = (budget + 1) // 2
        a = typiclust_seed(X, half, labeled=labeled, random_state=random_state)
        rest = budget - half
        if rest:
            b = random_seed(X, rest, labeled=np.union1d(labeled, a.indices), random_state=random_state)
            res = SeedResult(np.concatenate([a.indices, b.indices]), np.concatenate([a.scores, b.scores]),
                             np.concatenate([a.clusters, b.clusters]), a.info)
        else:
            res = a
    else:
        raise ValueError(rule)
    res.info["rule"] = rule
    return res
