"""Query strategies for multi-label pools: per-class (one-vs-rest) uncertainty, combined over classes.

The probe of a multi-label pool (:class:`fmal.probe_multilabel.MultiLabelProbe`) gives one
independent probability per class, so softmax measures (margin between the top two classes,
entropy of a distribution) do not apply. Two combinations of the per-class binary uncertainty:

- ``mean-margin``: 1 - 2 x mean over classes of |p - 0.5| (1: every class on its boundary); after
  the mean max margin of Brinker (2006) and the MMC family, the common multi-label baseline;
- ``max-entropy``: the largest per-class binary entropy (nats): the row with one class the probe
  is least sure of, however sure it is of the others.

Pure functions over probabilities, no I/O; ties broken with ``ctx.random_state``.
"""

from __future__ import annotations

import numpy as np

from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, top_k


def mean_margin_uncertainty(proba: np.ndarray) -> np.ndarray:
    """1 - 2 x mean_c |p_c - 0.5| per row of per-class probabilities [n, classes]; higher = more uncertain."""
    p = np.asarray(proba, dtype=np.float64)
    return 1.0 - 2.0 * np.abs(p - 0.5).mean(axis=1)


def binary_entropy(proba: np.ndarray) -> np.ndarray:
    """Binary entropy (nats) of each per-class probability, same shape as ``proba``."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0 - 1e-12)
    return -(p * np.log(p) + (1.0 - p) * np.log(1.0 - p))


def max_binary_entropy(proba: np.ndarray) -> np.ndarray:
    """The largest per-class binary entropy of each row; higher = more uncertain."""
    return binary_entropy(proba).max(axis=1)


def _top(ctx: QueryContext, budget: int, scores: np.ndarray) -> QueryResult:
    pos = top_k(scores, budget, ctx.random_state)
    return QueryResult(ctx.candidates[pos], scores[pos])


@QUERY_STRATEGIES.register("mean-margin")
def mean_margin(ctx: QueryContext, budget: int) -> QueryResult:
    """Multi-label uncertainty: the candidates whose classes are, on average, closest to p = 0.5.

    Parameters
    ----------
    ctx : QueryContext
        Candidates and the one-vs-rest probe's per-class probabilities on them (``ctx.proba``).
    budget : int
        How many candidates to pick.

    Returns
    -------
    QueryResult
        The ``budget`` candidates with the highest ``1 - 2 x mean_c |p_c - 0.5|``, best first.

    References
    ----------
    K. Brinker, "On active learning in multi-label classification", GfKl 2006 (mean of the
    per-class margins); A. Esuli, F. Sebastiani, "Active learning strategies for multi-label text
    classification", ECIR 2009 (averaging vs maximising per-class uncertainty).
    """
    return _top(ctx, budget, mean_margin_uncertainty(ctx.proba))


@QUERY_STRATEGIES.register("max-entropy")
def max_entropy(ctx: QueryContext, budget: int) -> QueryResult:
    """Multi-label uncertainty: the candidates with the single most uncertain class.

    Parameters
    ----------
    ctx : QueryContext
        Candidates and the one-vs-rest probe's per-class probabilities on them (``ctx.proba``).
    budget : int
        How many candidates to pick.

    Returns
    -------
    QueryResult
        The ``budget`` candidates with the largest per-class binary entropy, best first.

    References
    ----------
    A. Esuli, F. Sebastiani, "Active learning strategies for multi-label text classification",
    ECIR 2009 (the "max" aggregation of per-class uncertainty).
    """
    return _top(ctx, budget, max_binary_entropy(ctx.proba))
