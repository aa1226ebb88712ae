"""The budget-aware default query strategy ``auto`` (after TCM, Doucet et al., 2024).

TypiClust-style typical picks in uncovered clusters while the labeled set is small (fewer than
``switch_per_class`` labels per seen class), then a batch-diverse uncertainty strategy (``then``,
default ``dropquery``); a ``random_share`` of each batch is uniform random, a guard against falling
behind random on data where uncertainty misleads.

The random picks are also an unbiased test sample (Hsu & Lin, 2015): once ``min_random`` of them
are labeled, every round estimates how a probe trained on the active picks does against one
trained on as many random picks (:func:`fmal.query.evidence.active_vs_random`) and says so
(``info["mix"]``). The batch turns to ``max_share`` random only when active picks lose by more than
``evidence_z`` standard errors; the decision is recomputed from the labels every round, so it
turns back when the evidence goes. Why asymmetric and strict: within a few hundred labels the
estimate's standard error (several points on a dozen random picks) is larger than the effects
(1-4 AULC points), so a rule that followed the point estimate mostly followed noise; measured with
benchmarks/query_quality.py --tune (train rows only; see the commit log for the numbers).
"""

from __future__ import annotations

import math

import numpy as np

from fmal._parallel import single_blas
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError
from fmal.query import diverse as _diverse  # noqa: F401  (the strategies ``then`` names register first)
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult
from fmal.query.diverse import typical_uncovered
from fmal.query.evidence import ACTIVE, RANDOM, active_vs_random, neighbour_agreement

#: measured on the shared datasets (benchmarks/query_quality.py, 3 datasets x 5 and 10 seeds): switching
#: at 10 labels per class seen beat 0 (no typical phase), 5 and 20 in mean AULC
DEFAULT_SWITCH_PER_CLASS = 10
DEFAULT_RANDOM_SHARE = 0.1
#: dropquery against badge, query_quality.py --tune (train rows only, six pools, seeds 100-139): +0.18
#: [+0.05, +0.31] AULC points, rt_sentiment +0.67 [+0.28, +1.05], no pool below -0.2 (trec6 -0.20
#: [-0.69, +0.29]); chosen among 12 dropout/copies settings on seeds 100-109, confirmed on 110-139
DEFAULT_THEN = "dropquery"
#: the typical phase needs the unbiased labels' nearest-neighbour agreement kappa at least this high
#: (adaptive's threshold, set before). query_quality.py --tune against no gate, AULC points:
#: seeds 100-119 rotten_tomatoes +0.55 [-0.03, +1.13], trec6 -0.15 [-0.57, +0.27]; fresh seeds
#: 120-139 rotten_tomatoes +0.34 [+0.0, +0.7], trec6 +0.15 [-0.4, +0.7]; 0.05 and 0.3 were within
#: noise of 0.15 (binary pools never have a typical phase after the seed)
DEFAULT_AGREEMENT_THRESHOLD = 0.15
DEFAULT_MAX_SHARE = 0.5
DEFAULT_MIN_RANDOM = 8
#: 2 and 3 gave the same AULC on --tune (seeds 100-119, mean gain over random +1.33 / +1.32)
DEFAULT_EVIDENCE_Z = 2.0
#: the online comparison reads at most this many labeled rows (a seeded subset: at most half random
#: picks, a third active picks, the rest base labels), so its cost (10 probe fits) stays bounded
MAX_EVIDENCE_ROWS = 1000
#: the neighbour agreement (n x n similarities) reads at most this many labels (a seeded subset)
MAX_AGREEMENT_ROWS = 2000
ESTIMATE_SEED = 0


def _record(ctx: QueryContext) -> np.ndarray | None:
    """``ctx.origin`` as strings, checked once: one entry per labeled row, as are ``ctx.labels``;
    None without a record."""
    if ctx.origin is None:
        return None
    origin = np.asarray(ctx.origin).astype(str)
    lab = np.asarray(ctx.labeled, dtype=np.int64)
    y_shape = lab.shape if ctx.labels is None else np.asarray(ctx.labels).shape
    if origin.shape != lab.shape or y_shape != lab.shape:
        raise InvalidInputError(f"labels and origin must have one entry per labeled row ({lab.size}), "
                                f"got {y_shape} and {origin.shape}")
    return origin


def _evidence(ctx: QueryContext, origin: np.ndarray | None, min_random: int) -> tuple[float, float, int] | None:
    """(active minus random, points; its standard error; random picks used) from ``ctx.labels`` and
    ``origin``; None before ``min_random`` labeled random picks or without active ones."""
    if ctx.labels is None or origin is None:
        return None
    y = np.asarray(ctx.labels).astype(str)
    lab = np.asarray(ctx.labeled, dtype=np.int64)
    rnd, act = np.nonzero(origin == RANDOM)[0], np.nonzero(origin == ACTIVE)[0]
    if rnd.size < min_random or act.size == 0:
        return None
    base = np.nonzero((origin != RANDOM) & (origin != ACTIVE))[0]
    if rnd.size + act.size + base.size > MAX_EVIDENCE_ROWS:
        # a cap per arm (random picks, the test rows, first): a uniform cap over the non-random rows
        # would let thousands of imported labels crowd out the active picks the comparison is about
        rng = np.random.default_rng(ESTIMATE_SEED)
        rnd, act = (np.sort(rng.choice(r, cap, replace=False)) if r.size > cap else r
                    for r, cap in ((rnd, MAX_EVIDENCE_ROWS // 2), (act, MAX_EVIDENCE_ROWS // 3)))
        if base.size > MAX_EVIDENCE_ROWS - rnd.size - act.size:
            base = np.sort(rng.choice(base, MAX_EVIDENCE_ROWS - rnd.size - act.size, replace=False))
    keep = np.concatenate([base, act, rnd])
    est = active_vs_random(np.asarray(ctx.X[lab[keep]], dtype=np.float32), y[keep], origin[keep],
                           ESTIMATE_SEED, repeats=1)
    return None if est is None else (est[0], est[1], int(rnd.size))


def _agreement(ctx: QueryContext, origin: np.ndarray | None) -> float | None:
    """Nearest-labeled-neighbour agreement kappa of the labels not chosen by uncertainty or
    typicality (seed, random, imported; all labels without a record); None without evidence."""
    lab = np.asarray(ctx.labeled, dtype=np.int64)
    if ctx.labels is None or lab.size < 4:
        return None
    keep = np.ones(lab.size, dtype=bool) if origin is None else origin != ACTIVE
    rows = np.nonzero(keep)[0]
    if rows.size > MAX_AGREEMENT_ROWS:
        rows = np.sort(np.random.default_rng(ESTIMATE_SEED).choice(rows, MAX_AGREEMENT_ROWS, replace=False))
    got = neighbour_agreement(np.asarray(ctx.X[lab[rows]], dtype=np.float32), np.asarray(ctx.labels)[rows],
                              ESTIMATE_SEED, permutations=2)
    return None if got is None else got[0]


def _reason(share: float, n_random: int, phase: str, then: str, ev: tuple[float, float, int] | None,
            evidence_z: float, min_random: int, n_random_labeled: int, skipped: str = "") -> str:
    """One line: the batch's mix and the evidence behind it (``fmal query`` prints it)."""
    rest = "typical picks in uncovered clusters" if phase == "typical" else then
    head = f"{share:.0%} random ({n_random} picks), rest {rest}{skipped}"
    if ev is None:
        if n_random_labeled >= min_random:  # enough random picks, but no active pick labeled yet
            return f"{head}; active vs random: no active pick labeled yet ({n_random_labeled} random picks)"
        return f"{head}; active vs random: {n_random_labeled} random picks labeled (needs {min_random})"
    z = ev[0] / ev[1]
    verdict = (f"active picks lose by more than {evidence_z:g} SE: more random" if z <= -evidence_z
               else "no evidence that active picks lose")
    return f"{head}; active vs random {ev[0]:+.1f} +/- {ev[1]:.1f} points (on {ev[2]} random picks): {verdict}"


@QUERY_STRATEGIES.register("auto")
def auto(
    ctx: QueryContext,
    budget: int,
    *,
    switch_per_class: float = DEFAULT_SWITCH_PER_CLASS,
    random_share: float = DEFAULT_RANDOM_SHARE,
    then: str = DEFAULT_THEN,
    max_share: float = DEFAULT_MAX_SHARE,
    min_random: int = DEFAULT_MIN_RANDOM,
    evidence_z: float = DEFAULT_EVIDENCE_Z,
    agreement_threshold: float = DEFAULT_AGREEMENT_THRESHOLD,
) -> QueryResult:
    """Default: typical picks in uncovered clusters while labels are few, then a batch-diverse uncertainty strategy (dropquery).

    The typical phase lasts while labels < ``switch_per_class`` x classes seen
    (:func:`fmal.query.diverse.typical_uncovered`) and the embedding's neighbourhoods follow the
    label (the seed and random labels' nearest-neighbour agreement kappa >= ``agreement_threshold``:
    typical rows of clusters that are topics, not labels, are the blandest); ``random_share`` of
    the batch (rounded down) is uniform random in both phases (score NaN), ``max_share`` when the
    earlier random picks show active picks losing (module docstring).

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
    max_share : float, default DEFAULT_MAX_SHARE
        Share of the batch drawn at random when active picks lose, in [0, 1] (``random_share`` if larger).
    min_random : int, default DEFAULT_MIN_RANDOM
        Labeled random picks (``ctx.origin``) needed before the active-vs-random estimate counts (>= 2).
    evidence_z : float, default DEFAULT_EVIDENCE_Z
        Standard errors (>= 0) by which active picks must lose before the share rises.
    agreement_threshold : float, default DEFAULT_AGREEMENT_THRESHOLD
        Neighbour-agreement kappa (in [-1, 1]) below which the typical phase is skipped; -1: never.

    Returns
    -------
    QueryResult
        The picks and their scores, random picks last (``is_random``); ``info``: ``phase``,
        ``random_picks``, ``mix`` (one line: the share and why) and ``adaptive`` (its numbers:
        ``random_share``, ``p_active`` (Phi of the estimate's z-score; 0.5 without one), ``delta``
        and ``delta_se`` (points), ``n_random_labeled``; the fields ``fmal status`` shows).

    Raises
    ------
    InvalidInputError
        A parameter out of its range, ``then`` unknown or ``auto``/``adaptive``, or ``ctx.labels``
        or ``ctx.origin`` not one per labeled row.

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
    if not (0.0 <= float(max_share) <= 1.0):
        raise InvalidInputError(f"max_share must lie in [0, 1], got {max_share!r}")
    check_positive(min_random, "min_random", integer=True)
    if min_random < 2:
        raise InvalidInputError(f"min_random must be at least 2, got {min_random!r}")
    check_positive(evidence_z, "evidence_z", allow_zero=True)
    if not (-1.0 <= float(agreement_threshold) <= 1.0):
        raise InvalidInputError(f"agreement_threshold must lie in [-1, 1], got {agreement_threshold!r}")
    if then in ("auto", "adaptive"):
        raise InvalidInputError(f"then must name a plain query strategy (e.g. badge, margin), got {then!r}")
    after = QUERY_STRATEGIES.get(then)
    n_labels = int(ctx.labeled.size)
    n_classes = len(ctx.classes)
    phase = "typical" if n_labels < switch_per_class * n_classes else "uncertain"
    origin = _record(ctx)
    ev = _evidence(ctx, origin, int(min_random))
    kappa = _agreement(ctx, origin) if phase == "typical" and agreement_threshold > -1 else None
    skipped = ""
    if kappa is not None and kappa < agreement_threshold:
        phase = "uncertain"
        skipped = f" (typical phase skipped: neighbour agreement kappa {kappa:.2f} < {agreement_threshold:g})"
    z = None if ev is None else ev[0] / ev[1]
    share = max(float(max_share), float(random_share)) if z is not None and z <= -evidence_z else float(random_share)
    n_random = int(np.floor(share * budget))
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
    n_rnd_labeled = 0 if origin is None else int((origin == RANDOM).sum())
    numbers = {"random_share": round(share, 4), "n_random": n_random, "phase": phase,
               "p_active": 0.5 if z is None else round(0.5 * (1.0 + math.erf(z / math.sqrt(2.0))), 4),
               "delta": None if ev is None else round(ev[0], 4), "delta_se": None if ev is None else round(ev[1], 4),
               "n_random_labeled": n_rnd_labeled, "agreement": None if kappa is None else round(kappa, 4)}
    mix = _reason(share, n_random, phase, then, ev, float(evidence_z), int(min_random), n_rnd_labeled, skipped)
    return QueryResult(idx.astype(np.int64), sc, {"phase": phase, "random_picks": n_random, "mix": mix, "adaptive": numbers},
                       is_random=np.arange(idx.size) >= idx.size - n_random)
