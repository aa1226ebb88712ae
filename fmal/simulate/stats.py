"""Statistics over seeds: mean and t-interval, area under a learning curve, labels to reach a target."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
DEFAULT_REACH = (0.9, 0.95)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval (lo, hi) over seeds; the interval is NaN with one value."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def aulc(budgets: Sequence[int], scores: Sequence[float]) -> float:
    """Area under a learning curve, normalised by the label range: the curve's mean height
    (trapezoids), in the units of ``scores``. One point: that point."""
    b = np.asarray(budgets, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if b.size == 1:
        return float(s[0])
    return float(np.sum((s[1:] + s[:-1]) / 2 * np.diff(b)) / (b[-1] - b[0]))


def labels_to_reach(budgets: Sequence[int], scores: Sequence[float], target: float) -> int | None:
    """First budget whose score is at least ``target``; None when the curve never gets there."""
    for b, s in zip(budgets, scores):
        if s >= target - 1e-12:
            return int(b)
    return None
