"""``adaptive``: a query batch whose mix of active and uniform random picks follows the evidence.

Active learning wins when the embedding's neighbourhoods follow the label (question types, spam)
and can lose to random when they do not (sentiment of short texts whose clusters are topics): the
probe is then near chance, its uncertainty is noise, and typical rows of topic clusters are the
blandest. ``adaptive`` measures which case it is in, from the labels alone, every round:

1. **Neighbour agreement** (available from the first labels on): among the labels not chosen by
   uncertainty (seed picks, random picks, imported labels), how often a row's nearest labeled
   neighbour has its label, as a kappa against the rate expected by chance (a label permutation
   gives its spread). Near 0: the geometry does not follow the label, so clustering and
   uncertainty have nothing to work with.
2. **Active vs random, online** (once ``min_random`` random picks are labeled): the random picks of
   earlier rounds are a uniform sample of the unlabeled pool, so they are an unbiased test set.
   Cross-validated over them, a probe trained on the base labels + ``m`` actively chosen labels
   is compared with one trained on the base labels + ``m`` random labels (same ``m``); the mean
   paired difference in accuracy is the per-label value of active picks over random ones.

Each signal gives a z-score (agreement above ``agreement_threshold``, clipped to [-2, 2]: a proxy;
active minus random above 0, clipped to [-3, 3]), combined (Stouffer); ``p = Phi(z)`` is the
confidence that active picks pay. Random picks gain share only when the evidence leans against
active ones: ``random_share = min_share + (max_share - min_share) x max(0, 1 - 2p)``, so at even
odds (p >= 0.5) the batch is ``auto``'s (a ``min_share`` guard), and at p = 0 it is ``max_share``
random. Active learning's gains are rarely detectable with a few hundred labels while its losses
(a probe at chance, biased picks) show; a symmetric rule paid for its hedge where active picks pay
(first measured version: 1.4 AULC points below ``auto`` on trec6). The batch's other picks
are typical rows of uncovered clusters while labels are few and the agreement
supports clustering, else ``then`` (auto's, ``dropquery``). The decision is stateless (recomputed from the
labels and the record of which picks were random), so an undone round leaves no trace. With
``--candidates knn:K`` the random picks are uniform over the candidates, not the pool, and the
online comparison measures that neighbourhood only.

Measured: benchmarks/query_quality.py, README "Does active learning beat random on my data?".

References: Hsu & Lin (2015), Active learning by learning (the random share as an unbiased
estimator of which strategy pays); Hacohen et al. (2022) and Doucet et al. (2024), TypiClust and
TCM (typical picks first, uncertainty later).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fmal._parallel import single_blas
from fmal._validation import check_positive
from fmal.exceptions import InvalidInputError
from fmal.query import auto as _auto  # noqa: F401  (auto and badge register first)
from fmal.query import diverse as _diverse
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult
from fmal.query.evidence import (  # noqa: F401  (OTHER, SEED: the origins, imported from here by callers)
    ACTIVE, OTHER, RANDOM, SEED, active_vs_random, neighbour_agreement)

#: measured: see benchmarks/query_quality.py (constants set before the reported run, not tuned on it)
DEFAULT_MIN_SHARE = 0.1
DEFAULT_MAX_SHARE = 0.8
DEFAULT_AGREEMENT_THRESHOLD = 0.15
DEFAULT_MIN_RANDOM = 8
Z_CLIP = 3.0
ESTIMATE_SEED = 0
#: weight of the online comparison against the neighbour agreement (weighted Stouffer). Chosen on
#: train rows only (query_quality.py --tune, seeds 100-104): 2 let its noise raise the random share
#: on trec6 to ~0.25 (-1.8 AULC vs auto); 1 is the plain Stouffer combination
ONLINE_WEIGHT = 1.0
#: the neighbour agreement is a proxy: its z-score counts for at most this many standard deviations
AGREEMENT_Z_CLIP = 2.0


@dataclass(frozen=True)
class MixDecision:
    """What ``adaptive`` decided for a batch and why.

    ``agreement``: neighbour-agreement kappa of the unbiased labels (``n_agreement`` of them) and its
    standard error under permutation; ``delta``: accuracy of the active-label probe minus the
    random-label probe on held-out random picks (points; None before ``min_random`` random picks)
    with its standard error; ``p_active``: the combined confidence that active picks pay.
    """

    random_share: float
    n_random: int
    phase: str
    p_active: float
    agreement: float | None
    agreement_se: float | None
    n_agreement: int
    delta: float | None
    delta_se: float | None
    n_random_labeled: int

    def reason(self) -> str:
        """One line: the mix and the evidence behind it."""
        parts = []
        if self.agreement is None:
            parts.append("neighbour agreement: too few labels")
        else:
            parts.append(f"neighbour agreement kappa {self.agreement:.2f} +/- {self.agreement_se:.2f} "
                         f"({self.n_agreement} unbiased labels)")
        if self.delta is None:
            parts.append(f"active vs random: {self.n_random_labeled} random picks labeled (needs more)")
        else:
            parts.append(f"active vs random {self.delta:+.1f} +/- {self.delta_se:.1f} points "
                         f"(on {self.n_random_labeled} random picks)")
        return (f"{self.random_share:.0%} random ({self.n_random} picks), rest {self.phase}; "
                f"P(active pays) {self.p_active:.2f}: " + "; ".join(parts))

    def to_info(self) -> dict[str, object]:
        """JSON-ready fields for a round's info (``mix``: the one-line reason)."""
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return {"mix": self.reason(), "adaptive": d}


def decide(ctx: QueryContext, budget: int, *, min_share: float = DEFAULT_MIN_SHARE, max_share: float = DEFAULT_MAX_SHARE,
           agreement_threshold: float = DEFAULT_AGREEMENT_THRESHOLD, min_random: int = DEFAULT_MIN_RANDOM,
           switch_per_class: float = _auto.DEFAULT_SWITCH_PER_CLASS) -> MixDecision:
    """The batch's mix from the labels in ``ctx`` (``ctx.labels`` and ``ctx.origin``; without them
    every label counts as unbiased and there is no online comparison)."""
    lab = np.asarray(ctx.labeled, dtype=np.int64)
    if ctx.labels is None:
        return _mix(budget, None, None, 0, min_share, max_share, agreement_threshold, lab.size, len(ctx.classes),
                    switch_per_class)
    y = np.asarray(ctx.labels).astype(str)
    origin = np.asarray(ctx.origin if ctx.origin is not None else np.full(lab.size, OTHER)).astype(str)
    if y.shape != lab.shape or origin.shape != lab.shape:
        raise InvalidInputError(f"labels and origin must have one entry per labeled row ({lab.size}), "
                                f"got {y.shape} and {origin.shape}")
    Xl = np.asarray(ctx.X[lab], dtype=np.float32) if lab.size else np.zeros((0, ctx.X.shape[1]), np.float32)
    unbiased = origin != ACTIVE
    # the estimates use a fixed seed: they change only when the labels do, not with each round's seed
    agreement = neighbour_agreement(Xl[unbiased], y[unbiased], ESTIMATE_SEED)
    n_rnd = int((origin == RANDOM).sum())
    online = active_vs_random(Xl, y, origin, ESTIMATE_SEED) if n_rnd >= min_random else None
    return _mix(budget, agreement, online, n_rnd, min_share, max_share, agreement_threshold, lab.size,
                len(ctx.classes), switch_per_class, int(unbiased.sum()))


def _mix(budget: int, agreement: tuple[float, float] | None, online: tuple[float, float] | None, n_rnd: int,
         min_share: float, max_share: float, threshold: float, n_labels: int, n_classes: int,
         switch_per_class: float, n_agreement: int = 0) -> MixDecision:
    zs = []  # (weight, z)
    if agreement is not None:
        zs.append((1.0, float(np.clip((agreement[0] - threshold) / agreement[1], -AGREEMENT_Z_CLIP, AGREEMENT_Z_CLIP))))
    if online is not None:
        zs.append((ONLINE_WEIGHT, float(np.clip(online[0] / online[1], -Z_CLIP, Z_CLIP))))
    z = sum(w * v for w, v in zs) / math.sqrt(sum(w * w for w, _ in zs)) if zs else 0.0
    p = 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))
    share = min_share + (max_share - min_share) * max(0.0, 1.0 - 2.0 * p)
    n_random = int(min(budget, round(share * budget)))
    typical_ok = agreement is None or agreement[0] >= threshold
    phase = "typical" if n_labels < switch_per_class * n_classes and typical_ok else "uncertain"
    return MixDecision(share, n_random, phase, p,
                       None if agreement is None else agreement[0], None if agreement is None else agreement[1],
                       n_agreement, None if online is None else online[0], None if online is None else online[1], n_rnd)


@QUERY_STRATEGIES.register("adaptive")
def adaptive(
    ctx: QueryContext,
    budget: int,
    *,
    min_share: float = DEFAULT_MIN_SHARE,
    max_share: float = DEFAULT_MAX_SHARE,
    agreement_threshold: float = DEFAULT_AGREEMENT_THRESHOLD,
    min_random: int = DEFAULT_MIN_RANDOM,
    switch_per_class: float = _auto.DEFAULT_SWITCH_PER_CLASS,
    then: str = _auto.DEFAULT_THEN,
) -> QueryResult:
    """Active picks and uniform random picks in a mix that follows the evidence (module docstring).

    Parameters
    ----------
    ctx : QueryContext
        The round's inputs; ``ctx.labels`` and ``ctx.origin`` (which labeled rows were random picks)
        feed the decision.
    budget : int
        Rows to pick.
    min_share : float
        Smallest share of the batch that is uniform random (0 <= min_share <= max_share).
    max_share : float
        Largest share of the batch that is uniform random (max_share <= 1).
    agreement_threshold : float
        Neighbour-agreement kappa at which clustering and uncertainty are given even odds.
    min_random : int
        Labeled random picks needed before the online active-vs-random comparison counts.
    switch_per_class : float
        Typical picks in uncovered clusters while labels < this x classes seen (and agreement allows).
    then : str
        The active strategy after the typical phase (a registered query strategy).

    Returns
    -------
    QueryResult
        Active picks first, then the random ones (``is_random`` marks them); ``info`` holds ``mix``
        (one line: the share and why) and ``adaptive`` (every number of the decision).

    Raises
    ------
    InvalidInputError
        A share outside [0, 1] or min_share > max_share, a negative threshold, ``then`` naming
        ``auto``/``adaptive`` or no registered strategy.

    References
    ----------
    W.-N. Hsu, H.-T. Lin, "Active learning by learning", AAAI 2015 (random picks as an unbiased
    estimate of which strategy pays); G. Hacohen, A. Dekel, D. Weinshall, "Active learning on a
    budget: opposite strategies suit high and low budgets", ICML 2022 (typical picks first).
    """
    if not (0.0 <= float(min_share) <= float(max_share) <= 1.0):
        raise InvalidInputError(f"min_share and max_share must satisfy 0 <= min_share <= max_share <= 1, "
                                f"got {min_share!r} and {max_share!r}")
    check_positive(agreement_threshold, "agreement_threshold", allow_zero=True)
    check_positive(min_random, "min_random", integer=True)
    check_positive(switch_per_class, "switch_per_class", allow_zero=True)
    if then in ("adaptive", "auto"):
        raise InvalidInputError(f"then must name a plain query strategy (e.g. badge, margin), got {then!r}")
    after = QUERY_STRATEGIES.get(then)
    d = decide(ctx, budget, min_share=min_share, max_share=max_share, agreement_threshold=agreement_threshold,
               min_random=min_random, switch_per_class=switch_per_class)
    n_main = budget - d.n_random
    idx, sc = np.zeros(0, dtype=np.int64), np.zeros(0)
    if n_main > 0:
        if d.phase == "typical":
            with single_blas():
                main = _diverse.typical_uncovered(ctx, n_main)
        else:
            main = after(ctx, n_main)
        idx, sc = main.indices.astype(np.int64), np.asarray(main.scores, dtype=np.float64)
    if d.n_random:
        free = np.setdiff1d(ctx.candidates, idx, assume_unique=True)
        rnd = np.random.default_rng(ctx.random_state + 1).choice(free, size=d.n_random, replace=False)
        idx = np.concatenate([idx, rnd])
        sc = np.concatenate([sc, np.full(d.n_random, np.nan)])
    is_random = np.zeros(idx.size, dtype=bool)
    is_random[n_main:] = True
    return QueryResult(idx, sc, {"phase": d.phase, "random_picks": d.n_random, **d.to_info()}, is_random=is_random)


def origins_of(ids: list[str], rounds: list[Any]) -> np.ndarray:
    """Where each labeled id came from (OTHER, SEED, ACTIVE or RANDOM), from a pool's round records
    (:class:`fmal.session.Round`): the latest round that picked it; a query round's pick is RANDOM
    when its ``random_pick`` column says so. Pure: the records are read by the caller."""
    where: dict[str, str] = {}
    for r in rounds:
        flags = (r.columns or {}).get("random_pick")
        for j, i in enumerate(r.ids or []):
            if r.kind == "seed":
                where[i] = SEED
            else:
                where[i] = RANDOM if flags is not None and j < len(flags) and bool(flags[j]) else ACTIVE
    return np.asarray([where.get(i, OTHER) for i in ids], dtype=object).astype(str)
