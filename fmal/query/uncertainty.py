"""Uncertainty sampling (Lewis & Gale, 1994): the candidates the probe is least sure about."""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, top_k
from fmal.query.measures import MEASURES


def _uncertainty(measure: str):
    fn = MEASURES[measure]

    def strategy(ctx: QueryContext, budget: int, **_: Any) -> QueryResult:
        scores = fn(ctx.proba)
        pos = top_k(scores, budget, ctx.random_state)
        return QueryResult(ctx.candidates[pos], scores[pos])

    strategy.__name__ = measure.replace("-", "_")
    strategy.__doc__ = f"Top-``budget`` candidates by {measure} of the probe's probabilities."
    return strategy


for _name in MEASURES:
    QUERY_STRATEGIES.register(_name)(_uncertainty(_name))


@QUERY_STRATEGIES.register("random")
def random_query(ctx: QueryContext, budget: int, **_: Any) -> QueryResult:
    """Uniform random candidates: the baseline."""
    pos = np.random.default_rng(ctx.random_state).choice(ctx.candidates.size, size=budget, replace=False)
    return QueryResult(ctx.candidates[pos], np.full(budget, np.nan), is_random=np.ones(budget, dtype=bool))
