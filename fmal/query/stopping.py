"""Stopping signal (stabilizing predictions, Bloodgood & Vijay-Shanker, 2009): how much two
successive probes agree on a fixed sample of the pool. When successive probes keep agreeing,
new labels no longer change what the model predicts, and gains are flattening."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: size of the fixed, seeded sample of pool rows on which successive probes are compared
STOP_SAMPLE = 5000
#: Cohen's kappa between successive probes at or above which predictions count as stable
STABLE_KAPPA = 0.99
SETTLING_KAPPA = 0.9


def stop_sample(n: int, size: int = STOP_SAMPLE, seed: int = 0) -> np.ndarray:
    """The fixed sample: ``min(n, size)`` sorted row numbers drawn with ``seed`` (the same every round)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, size), replace=False))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa between two label vectors (1 when identical, 0 at chance agreement)."""
    a, b = np.asarray(a).astype(str), np.asarray(b).astype(str)
    po = float(np.mean(a == b))
    labels = np.union1d(a, b)
    pe = float(sum(np.mean(a == c) * np.mean(b == c) for c in labels))
    return 1.0 if pe >= 1.0 else (po - pe) / (1.0 - pe)


@dataclass(frozen=True)
class StopSignal:
    """Agreement of the previous and the current probe, and what it suggests."""

    agreement: float
    kappa: float
    advice: str


def advice(kappas: list[float]) -> str:
    """A plain recommendation from the kappas of successive rounds (most recent last)."""
    if not kappas:
        return "keep labeling (no earlier probe to compare with yet)"
    last = kappas[-1]
    if last >= STABLE_KAPPA and len(kappas) >= 2 and kappas[-2] >= STABLE_KAPPA:
        return "gains are flattening: predictions are stable across rounds; consider stopping"
    if last >= STABLE_KAPPA:
        return "predictions barely changed this round; one more round will tell whether gains are flattening"
    if last >= SETTLING_KAPPA:
        return "keep labeling: predictions are settling"
    return "keep labeling: predictions still change a lot between rounds"


def stop_signal(prev_pred: np.ndarray, cur_pred: np.ndarray, earlier_kappas: list[float] | None = None) -> StopSignal:
    """Compare the previous and the current probe's predictions on the fixed sample."""
    k = cohen_kappa(prev_pred, cur_pred)
    agree = float(np.mean(np.asarray(prev_pred).astype(str) == np.asarray(cur_pred).astype(str)))
    return StopSignal(agree, k, advice([*(earlier_kappas or []), k]))
