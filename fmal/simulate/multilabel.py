"""Simulation of a multi-label task: the probe, the scores and the strategy checks the loop swaps in.

Gold answers are canonical (``"a|b"``, :mod:`fmal.multilabel`); the probe is the product's
one-vs-rest :class:`~fmal.probe_multilabel.MultiLabelProbe`. Scores on the test rows: micro-F1 (the
headline: it fills the loop's ``accuracy`` column, so AULC, labels-to-reach and the paired
difference to random are computed on it), macro-F1 over classes, and subset accuracy (the whole
set right). ``auto`` continues with mean-margin, as ``fmal query`` does on a multi-label pool.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.multilabel import MULTI, binarize, classes_of, query_params
from fmal.simulate.spec import StrategySpec

#: what a multi-label simulation compares by default (random is always added)
DEFAULT_STRATEGIES = ("random", "typiclust+mean-margin", "typiclust+max-entropy", "auto")
#: the curve columns: the loop's ``accuracy`` holds micro-F1 here
METRIC = "micro-F1"


def check_specs(specs: list[StrategySpec]) -> dict[str, dict[str, Any]]:
    """{strategy name: query parameters} for a multi-label run; a softmax strategy is an error."""
    out = {}
    for s in specs:
        try:
            out[s.name] = query_params(MULTI, s.query_strategy, {})
        except InvalidInputError as exc:
            raise InvalidInputError(f"strategies: {s.name!r}: {exc}") from None
    return out


def check_labels(y: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    """Every class of a multi-label run, sorted; errors for one class or a test-only class."""
    train = classes_of(y.tolist())
    if len(train) < 2:
        raise LabelsError(f"the pool's answers name {len(train)} class(es); a multi-label task needs two or more: "
                          "check --label-col")
    absent = sorted(set(classes_of(y_test.tolist())) - set(train))
    if absent:
        raise LabelsError(f"test rows have {len(absent)} class(es) that no pool (train) row has "
                          f"({', '.join(map(repr, absent[:5]))}); no strategy could ever learn them")
    return np.asarray(train)


def score(pred: np.ndarray, y_test: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """micro-F1 (as ``accuracy``), macro-F1 and subset accuracy of predicted vs gold answers."""
    from sklearn.metrics import f1_score

    P = binarize(pred.tolist(), classes)
    Y = binarize(y_test.tolist(), classes)
    return {"accuracy": float(f1_score(Y, P, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(Y, P, average="macro", zero_division=0)),
            "subset_accuracy": float(np.mean((P == Y).all(axis=1)))}
