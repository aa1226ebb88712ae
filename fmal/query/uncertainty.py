"""Uncertainty sampling (Lewis & Gale, 1994): the candidates the probe is least sure about."""

from __future__ import annotations

import numpy as np

from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, top_k
from fmal.query.measures import MEASURES

#: what each measure scores, and where it comes from (numpydoc References of its strategy)
_MEASURE_DOCS = {
    "entropy": ("the Shannon entropy of the probe's probabilities",
                "Settles, B. (2009). Active learning literature survey. University of Wisconsin-Madison, "
                "Computer Sciences Technical Report 1648 (entropy sampling, after Shannon, 1948)."),
    "margin": ("1 - the gap between the probe's two highest probabilities",
               "Scheffer, T., Decomain, C. and Wrobel, S. (2001). Active hidden Markov models for "
               "information extraction. IDA."),
    "least-confidence": ("1 - the probe's highest probability",
                         "Lewis, D. D. and Gale, W. A. (1994). A sequential algorithm for training text "
                         "classifiers. SIGIR."),
}


def _uncertainty(measure: str):
    fn = MEASURES[measure]

    def strategy(ctx: QueryContext, budget: int) -> QueryResult:
        scores = fn(ctx.proba)
        pos = top_k(scores, budget, ctx.random_state)
        return QueryResult(ctx.candidates[pos], scores[pos])

    what, ref = _MEASURE_DOCS[measure]
    strategy.__name__ = measure.replace("-", "_")
    strategy.__doc__ = f"""The candidates of highest {measure}: {what}.

    Ties are broken at random with ``ctx.random_state``.

    Parameters
    ----------
    ctx : QueryContext
        Candidates and the probe's probabilities on them.
    budget : int
        How many rows to pick (at most the candidates).

    Returns
    -------
    QueryResult
        The picks, most uncertain first, and their {measure}.

    References
    ----------
    .. [1] {ref}
    """
    return strategy


for _name in MEASURES:
    QUERY_STRATEGIES.register(_name)(_uncertainty(_name))


@QUERY_STRATEGIES.register("random")
def random_query(ctx: QueryContext, budget: int) -> QueryResult:
    """Uniform random candidates: the baseline every strategy must beat.

    Parameters
    ----------
    ctx : QueryContext
        Candidates and the seed (``ctx.random_state``).
    budget : int
        How many rows to pick (at most the candidates).

    Returns
    -------
    QueryResult
        The picks; scores NaN.
    """
    pos = np.random.default_rng(ctx.random_state).choice(ctx.candidates.size, size=budget, replace=False)
    return QueryResult(ctx.candidates[pos], np.full(budget, np.nan), is_random=np.ones(budget, dtype=bool))
