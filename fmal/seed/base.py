"""What every cold-start strategy takes and returns, the registry that names them, and
:func:`select`, which runs one by name and adds the coverage report.

A strategy is a plain function over an embedding matrix (rows L2-normalised) and the pool's FAISS
index; it does no I/O. Adding one is one function and one ``@SEED_STRATEGIES.register`` line; its
options are keyword-only parameters (no ``**kwargs``: the registry checks what callers pass):

    @SEED_STRATEGIES.register("mine")
    def mine(X, budget, *, labeled=None, random_state=0, my_option=1.0) -> SeedResult: ...

``index``, ``labeled`` and ``random_state`` are context keywords: callers supply them for every
strategy (:meth:`fmal.registry.Registry.call`), and a strategy declares those it uses.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    def __call__(self, X: np.ndarray, budget: int, **params: Any) -> SeedResult: ...


#: keywords every seed strategy is offered; each declares those it uses
SEED_CONTEXT = ("index", "labeled", "random_state")

SEED_STRATEGIES: Registry[SeedStrategy] = Registry("seed strategy", context=SEED_CONTEXT)

#: keywords :func:`select` takes for itself, never passed to a strategy that does not declare them
SELECT_OPTIONS = ("diagnostics", "exact", "delta")

#: strategies whose result carries the pool's k-means clusters (``SeedResult.assign``), which the
#: coverage report then judges by: while they run, :func:`select` trains no k-means for the report.
#: A name wrongly listed or missing costs time only (the report trains its own when it gets none).
HAND_OVER_CLUSTERS = frozenset({"auto", "kmeans", "typiclust"})


def check_params(strategy: str, params: Mapping[str, Any]) -> None:
    """Fail before any work when ``params`` (keywords meant for :func:`select`) hold one that
    neither :func:`select` nor ``strategy`` takes.

    Raises
    ------
    InvalidInputError
        Unknown strategy, or a keyword it does not take (the message lists those it does).
    """
    SEED_STRATEGIES.check(strategy, {k: v for k, v in params.items() if k not in SELECT_OPTIONS})


def select(
    strategy: str,
    X: np.ndarray,
    budget: int,
    *,
    index: Any = None,
    labeled: np.ndarray | None = None,
    random_state: int = 0,
    diagnostics: bool = True,
    exact: bool = False,
    delta: float | None = None,
    **params: Any,
) -> SeedResult:
    """Run the seed strategy named ``strategy`` and add the coverage report to its ``info``.

    Parameters
    ----------
    strategy : str
        A name of ``SEED_STRATEGIES``.
    X : ndarray of shape (n, d)
        The pool's L2-normalised embeddings (an array, a memmap or a block-read matrix).
    budget : int
        How many rows to pick.
    index : faiss.Index, optional
        The pool's index (its IVF lists cluster a pool read block by block).
    labeled : array of int, optional
        Rows already labeled: never picked, and their regions count as covered.
    random_state : int, default 0
        Seed of every random choice.
    diagnostics : bool, default True
        Add the coverage report (:func:`fmal.seed.diagnostics.diagnose`); its part that does not
        depend on the picks is computed on two more threads while the strategy runs.
    exact : bool, default False
        On a pool read block by block, cluster and judge every row (no two-level clustering over
        ``index``'s IVF lists, no sampled report).
    delta : float, optional
        Ball radius of the coverage report, and of the strategy when it takes one (ProbCover).
    **params
        The strategy's own parameters, checked against its signature.

    Returns
    -------
    SeedResult

    Raises
    ------
    InvalidInputError
        Unknown strategy, a parameter it does not take, or a bad value.
    """
    from concurrent.futures import ThreadPoolExecutor

    from fmal._matrix import in_blocks
    from fmal._parallel import single_blas
    from fmal._validation import check_budget, check_indices
    from fmal.seed.diagnostics import diagnose, report_basis  # diagnostics imports the strategies' modules

    takes_delta = "delta" in (SEED_STRATEGIES.keywords(strategy) or ())
    if takes_delta:
        params["delta"] = delta
    if exact:  # a pool over the RAM cap: every row, no two-level, no sample
        index = None
    if diagnostics:  # the report trains a k-means with FAISS: loaded before single_blas, which then limits its
        import faiss  # noqa: F401  OpenMP threads for the whole selection, not only inside each training
    # budget and labeled checked before the report's threads start: an error must not wait for them
    n_labeled = check_indices(labeled, int(X.shape[0])).size
    n_chosen = check_budget(budget, int(X.shape[0]) - n_labeled) + n_labeled  # the picks and the labeled rows
    need_delta = diagnostics and delta is None and not takes_delta
    need_clusters = diagnostics and strategy not in HAND_OVER_CLUSTERS
    with single_blas(), ThreadPoolExecutor(2) as ex:  # one BLAS thread per worker thread: see fmal._parallel
        # the report's part that does not depend on the picks runs on other threads while the
        # strategy runs: its delta, and its own k-means (one serial FAISS call) with the judged rows.
        # Not over the RAM cap (read in blocks), where what the two hold at once would add up.
        prep = dict(random_state=random_state, index=index, sample=not exact)
        parts = [] if not diagnostics or in_blocks(X) else [
            ex.submit(report_basis, X, n_chosen, delta=need_delta, clusters=False, gather=False, **prep) if need_delta else None,
            ex.submit(report_basis, X, n_chosen, delta=False, clusters=need_clusters, **prep)]
        res = SEED_STRATEGIES.call(strategy, X, budget, index=index, labeled=labeled, random_state=random_state,
                                   **params)
        if diagnostics:
            report_delta = res.delta if res.delta is not None else delta
            res.info.update(diagnose(X, res.indices, labeled, delta=report_delta, assign=res.assign,
                                     random_state=random_state, index=index, sample=not exact,
                                     basis=_joined([_result(f) for f in parts])))
    return res


def _result(future: Any) -> Any:
    """``future``'s result (its exception raised here), or None when there is no future."""
    return None if future is None else future.result()


def _joined(parts: list[Any]) -> Any:
    """The report bases made apart, as one (None when there is none)."""
    out = None
    for b in parts:
        if b is not None:
            out = b if out is None else out.joined(b)
    return out
