"""The budget-aware default query strategy ``auto`` (after TCM, Doucet et al., 2024).

TypiClust-style typical picks in uncovered clusters while the labeled set is small (fewer than
``switch_per_class`` labels per seen class), then a batch-diverse uncertainty strategy (``then``,
default ``badge``); a ``random_share`` of each batch is uniform random, a guard against falling
behind random on data where uncertainty misleads. Moved here unchanged from fmal.query.diverse.
"""

from __future__ import annotations

import numpy as np

from fmal._parallel import single_blas
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError
from fmal.query import diverse as _diverse  # noqa: F401  (the strategies ``then`` names register first)
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult
from fmal.query.diverse import typical_uncovered

#: measured on the shared datasets (benchmarks/query_quality.py, 3 datasets x 5 and 10 seeds): switching
#: at 10 labels per class seen beat 0 (no typical phase), 5 and 20 in mean AULC
DEFAULT_SWITCH_PER_CLASS = 10
DEFAULT_RANDOM_SHARE = 0.1
DEFAULT_THEN = "badge"


@QUERY_STRATEGIES.register("auto")
def auto(
    ctx: QueryContext,
    budget: int,
    *,
    switch_per_class: float = DEFAULT_SWITCH_PER_CLASS,
    random_share: float = DEFAULT_RANDOM_SHARE,
    then: str = DEFAULT_THEN,
) -> QueryResult:
    """Default: typical picks in uncovered clusters while labels are few, then a batch-diverse uncertainty strategy (badge).

    The typical phase lasts while labels < ``switch_per_class`` x classes seen
    (:func:`fmal.query.diverse.typical_uncovered`); ``random_share`` of the batch (rounded down)
    is uniform random in both phases (score NaN).

    Parameters
    ----------
    ctx : QueryContext
        Candidates, the probe's probabilities on them, the pool's embeddings, the labeled rows
        and the seed (``ctx.random_state``).
    budget : int
        How many rows to pick.
    switch_per_class : float, default DEFAULT_SWITCH_PER_CLASS
        Labels per class seen (>= 0) from which the uncertainty phase starts; 0: never typical.
    random_share : float, default DEFAULT_RANDOM_SHARE
        Share of the batch drawn uniformly at random, in [0, 1].
    then : str, default DEFAULT_THEN
        The query strategy of the uncertainty phase (any registered name but ``auto``).

    Returns
    -------
    QueryResult
        The picks and their scores; ``info``: ``phase`` and ``random_picks``.

    Raises
    ------
    InvalidInputError
        A parameter out of its range, or ``then`` unknown or ``auto``.

    References
    ----------
    .. [1] Doucet, P., Estermann, B., Aczel, T. and Wattenhofer, R. (2024). Bridging diversity
       and uncertainty in active learning with self-supervised pre-training (TCM). ICLR workshop.
    .. [2] Hacohen, G., Dekel, A. and Weinshall, D. (2022). Active learning on a budget: opposite
       strategies suit high and low budgets. ICML.
    """
    check_positive(switch_per_class, "switch_per_class", allow_zero=True)
    if not (0.0 <= float(random_share) <= 1.0):
        raise InvalidInputError(f"random_share must lie in [0, 1], got {random_share!r}")
    if then == "auto":
        raise InvalidInputError("then must name another query strategy than 'auto', got 'auto'")
    after = QUERY_STRATEGIES.get(then)
    n_labels = int(ctx.labeled.size)
    n_classes = len(ctx.classes)
    phase = "typical" if n_labels < switch_per_class * n_classes else "uncertain"
    n_random = int(np.floor(random_share * budget))
    n_main = budget - n_random
    if n_main > 0:
        if phase == "typical":
            with single_blas():
                main = typical_uncovered(ctx, n_main)
        else:
            main = after(ctx, n_main)
        idx, sc = main.indices, main.scores
    else:
        idx, sc = np.zeros(0, dtype=np.int64), np.zeros(0)
    if n_random:
        free = np.setdiff1d(ctx.candidates, idx, assume_unique=True)
        rnd = np.random.default_rng(ctx.random_state + 1).choice(free, size=n_random, replace=False)
        idx = np.concatenate([idx, rnd])
        sc = np.concatenate([sc, np.full(n_random, np.nan)])
    return QueryResult(idx.astype(np.int64), sc, {"phase": phase, "random_picks": n_random},
                       is_random=np.arange(idx.size) >= idx.size - n_random)
