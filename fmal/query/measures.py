"""Uncertainty measures: pure functions of a probability matrix [n, n_classes] -> [n].

Higher always means more uncertain, so every strategy takes the top of the score.
"""

from __future__ import annotations

import numpy as np


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row (nats)."""
    p = np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def margin(proba: np.ndarray) -> np.ndarray:
    """1 - (top probability - second probability): 1 on the decision boundary."""
    p = np.asarray(proba, dtype=np.float64)
    if p.shape[1] < 2:
        return np.zeros(p.shape[0])
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def least_confidence(proba: np.ndarray) -> np.ndarray:
    """1 - top probability."""
    return 1.0 - np.asarray(proba, dtype=np.float64).max(axis=1)


MEASURES = {"entropy": entropy, "margin": margin, "least-confidence": least_confidence}
