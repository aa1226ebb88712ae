"""Evidence on whether active picks pay, from the labels alone (used by ``auto`` and ``adaptive``).

- :func:`neighbour_agreement`: how often a labeled row's nearest labeled neighbour shares its label,
  as a kappa against chance, with its spread under label permutations: does the embedding's
  geometry follow the label?
- :func:`active_vs_random`: the random picks of earlier rounds are a uniform sample of the pool, so
  they are an unbiased test set (Hsu & Lin, 2015): cross-validated over them, a probe trained on
  the base labels + actively chosen ones against one trained on the base labels + as many random
  ones; the per-label value of active picks over random ones, with its standard error.

Pure functions over arrays (no I/O); every random choice is seeded.
"""

from __future__ import annotations

import math

import numpy as np

from fmal._parallel import single_blas

#: where a labeled row came from (``QueryContext.origin``)
OTHER, SEED, ACTIVE, RANDOM = "other", "seed", "active", "random"
#: label permutations for the spread of the neighbour agreement; CV repeats of the online comparison
PERMUTATIONS = 200
REPEATS = 3


def neighbour_agreement(X: np.ndarray, y: np.ndarray, random_state: int = 0,
                        permutations: int = PERMUTATIONS) -> tuple[float, float] | None:
    """Kappa of 1-nearest-neighbour label agreement among the rows ``X`` (cosine) with labels ``y``,
    against chance; and its standard error from ``permutations`` label shuffles. None when fewer
    than 4 rows or a single class (no evidence either way)."""
    y = np.asarray(y).astype(str)
    n = y.size
    if n < 4 or np.unique(y).size < 2:
        return None
    Xn = np.asarray(X, dtype=np.float64)
    Xn = Xn / np.maximum(np.linalg.norm(Xn, axis=1, keepdims=True), 1e-12)
    with single_blas():
        S = Xn @ Xn.T
    np.fill_diagonal(S, -np.inf)
    nn = S.argmax(axis=1)
    _, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    chance = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    agree = float(np.mean(codes == codes[nn]))
    rng = np.random.default_rng(random_state)
    null = np.array([np.mean(p == p[nn]) for p in (rng.permutation(codes) for _ in range(permutations))])
    sd = max(float(null.std(ddof=1)), 1.0 / n)
    return (agree - chance) / (1.0 - chance), sd / (1.0 - chance)


def _probe_predict(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, random_state: int) -> np.ndarray:
    from fmal._defaults import DEFAULT_C
    from fmal.probe import LinearProbe

    if np.unique(ytr).size < 2:
        return np.full(Xte.shape[0], ytr[0] if ytr.size else "")
    return LinearProbe(C=DEFAULT_C, random_state=random_state).fit(Xtr, ytr).predict(Xte)


def active_vs_random(X: np.ndarray, y: np.ndarray, origin: np.ndarray, random_state: int = 0,
                     repeats: int = REPEATS) -> tuple[float, float] | None:
    """Per-label value of active picks over random ones, in accuracy points, and its standard error.

    ``X``, ``y``, ``origin``: the labeled rows. K-fold over the random picks (repeated ``repeats``
    times, seeded): base (seed/other) + random picks vs base + as many active picks, both scored on
    the held-out random picks. The two arms always add the same number of labels (a seeded subset of
    the larger one): with fewer active picks than training random ones, an unmatched comparison
    would credit random with its extra labels. None without random and active picks.
    """
    y = np.asarray(y).astype(str)
    rnd = np.nonzero(origin == RANDOM)[0]
    act = np.nonzero(origin == ACTIVE)[0]
    base = np.nonzero((origin == SEED) | (origin == OTHER))[0]
    if rnd.size < 2 or act.size == 0:
        return None
    rng = np.random.default_rng(random_state)
    k = int(min(5, rnd.size))
    folds = []  # (sum of paired differences, test rows) per fold
    for _rep in range(repeats):
        perm = rng.permutation(rnd.size)
        for f in range(k):
            te_pos = perm[f::k]
            tr = np.delete(rnd, te_pos)
            m = min(tr.size, act.size)
            sub = rng.choice(act, size=m, replace=False)
            if tr.size > m:
                tr = rng.choice(tr, size=m, replace=False)
            te = rnd[te_pos]
            pr = _probe_predict(X[np.concatenate([base, tr])], y[np.concatenate([base, tr])], X[te], random_state)
            pa = _probe_predict(X[np.concatenate([base, sub])], y[np.concatenate([base, sub])], X[te], random_state)
            folds.append((float(((pa == y[te]).astype(float) - (pr == y[te])).sum()), te.size))
    d = np.asarray([s / n for s, n in folds])
    mean = sum(s for s, _ in folds) / sum(n for _, n in folds)
    # spread of the fold means over k independent folds: test-row noise and training-subset noise
    # both count (per-row differences alone understate it: rows of a fold share their probes)
    se = float(d.std(ddof=1) / math.sqrt(k)) if d.size > 1 else 1.0
    return 100.0 * mean, 100.0 * max(se, 1.0 / rnd.size)
