"""Label audit: which labels look wrong, from cross-validated probe probabilities and cleanlab.

Every labeled row gets out-of-fold class probabilities from a LinearProbe (k stratified folds, C
chosen once on all labels); cleanlab's ``find_label_issues`` flags the likely wrong labels and its
self-confidence score (the out-of-fold probability of the given label) ranks every label. On
TREC-6 (1,500 labels, MiniLM embeddings, 5% flipped at random) self-confidence put 71% of the
flips in its top 75 against 52% for normalized margin; cleanlab flagged 205 rows holding 79% of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fmal._validation import check_embeddings, check_positive
from fmal.exceptions import LabelsError

DEFAULT_FOLDS = 5
#: below this many labels in the smallest audited class, or this many labels per class on average,
#: the audit says its flags are unreliable (benchmarks/audit_precision.py: on trec6 with 10% flipped
#: labels, most flags at 50-100 labels are correct labels; see the README table)
MIN_PER_CLASS = 10
MIN_PER_CLASS_MEAN = 40
#: below this out-of-fold agreement of the probe with the given labels, the probe's own errors
#: outnumber the wrong labels it can find, and most flags are correct labels
MIN_AGREEMENT = 0.80


@dataclass
class LabelAudit:
    """Every audited label, most suspicious (lowest label quality) first.

    ``table`` columns: rank, id, given_label, predicted_label (the suggested label: the most probable
    out-of-fold class), predicted_proba, label_quality (out-of-fold probability of the given
    label), is_issue (flagged by cleanlab).
    """

    table: pd.DataFrame
    n_folds: int
    C: float
    classes: list[str]
    excluded: dict[str, int] = field(default_factory=dict)  # classes too small to audit: {class: count}
    class_counts: dict[str, int] = field(default_factory=dict)  # audited labels per class
    reliable: bool = True  # enough labels per class, and a probe that agrees with most labels (MIN_*)
    caution: str | None = None  # why the flags are not reliable
    agreement: float = float("nan")  # out-of-fold: share of labels the probe predicts as given

    @property
    def issues(self) -> pd.DataFrame:
        return self.table[self.table["is_issue"]]


def audit_labels(X: np.ndarray, ids: list[str], y: list[str], *, n_folds: int = DEFAULT_FOLDS, random_state: int = 0) -> LabelAudit:
    """Audit labels ``y`` of rows ``X`` (ids ``ids``). Classes with a single label cannot be
    cross-validated: they are left out and named in ``excluded``."""
    from sklearn.exceptions import ConvergenceWarning  # imported here: fmal.api (and fmal status) must not pay for it
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from fmal.probe import LinearProbe

    check_positive(n_folds, "n_folds", integer=True)
    X = check_embeddings(X)
    y_arr = np.asarray(y, dtype=str)
    ids_arr = np.asarray(ids, dtype=object)
    classes, counts = np.unique(y_arr, return_counts=True)
    excluded = {str(c): int(n) for c, n in zip(classes, counts) if n < 2}
    keep = ~np.isin(y_arr, list(excluded))
    X, y_arr, ids_arr = X[keep], y_arr[keep], ids_arr[keep]
    classes, counts = np.unique(y_arr, return_counts=True)
    if classes.size < 2:
        raise LabelsError(
            f"an audit needs two classes with at least 2 labels each, got {dict(zip(classes.tolist(), counts.tolist()))}"
            f"{f' (and single labels of {sorted(excluded)})' if excluded else ''}; label more rows first"
        )
    k = int(min(max(2, n_folds), counts.min()))
    probe = LinearProbe(random_state=random_state).fit(X, y_arr)
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = cross_val_predict(LinearProbe(C=probe.C_, random_state=random_state), X, y_arr, cv=folds, method="predict_proba")
    y_int = np.searchsorted(classes, y_arr)
    issue = _find_issues(y_int, proba)
    quality = proba[np.arange(y_int.size), y_int]
    best = proba.argmax(axis=1)
    table = pd.DataFrame({
        "id": ids_arr, "given_label": y_arr, "predicted_label": classes[best],
        "predicted_proba": proba[np.arange(best.size), best].round(4), "label_quality": quality.round(4), "is_issue": issue,
    })
    table = table.iloc[np.argsort(quality, kind="stable")].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    class_counts = {str(c): int(n) for c, n in zip(classes, counts)}
    agreement = float(np.mean(best == y_int))
    caution = _caution(class_counts, excluded, k, agreement)
    return LabelAudit(table, k, float(probe.C_), classes.tolist(), excluded, class_counts, caution is None, caution,
                      round(agreement, 4))


def _caution(counts: dict[str, int], excluded: dict[str, int], folds: int, agreement: float) -> str | None:
    """Why the flags of an audit with these class counts are not to be trusted (None: they are)."""
    smallest = min(counts, key=counts.__getitem__)
    mean = sum(counts.values()) / len(counts)
    why = []
    if counts[smallest] < MIN_PER_CLASS:
        why.append(f"the smallest class ({smallest!r}) has {counts[smallest]} label(s), under {MIN_PER_CLASS}")
    if mean < MIN_PER_CLASS_MEAN:
        why.append(f"{mean:.0f} labels per class on average, under {MIN_PER_CLASS_MEAN}")
    if excluded:
        why.append(f"class(es) {', '.join(map(repr, sorted(excluded)))} left out (a single label)")
    if agreement < MIN_AGREEMENT:
        why.append(f"the probe agrees with only {agreement:.0%} of the labels out of fold (under {MIN_AGREEMENT:.0%}): "
                   "its own errors outnumber the wrong labels it can find")
    if not why:
        return None
    return (f"flags unreliable: {'; '.join(why)}. Each label is judged by a probe fitted on the other "
            f"{folds - 1}/{folds} of the labels (on trec6 with 10% wrong labels, 16-33% of the flags were wrong labels "
            "at 50-400 labels): re-check the flags, do not relabel blindly")


def _find_issues(labels: np.ndarray, proba: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns on tiny classes; the result is still usable
        return np.asarray(find_label_issues(labels=labels, pred_probs=proba), dtype=bool)


def audit_info(a: LabelAudit) -> dict[str, Any]:
    return {"labels_audited": len(a.table), "issues": int(a.table["is_issue"].sum()), "folds": a.n_folds,
            "probe_C": a.C, "classes": len(a.classes), "classes_left_out": a.excluded or None,
            "smallest_class": min(a.class_counts.values()) if a.class_counts else None,
            "probe_agreement": a.agreement, "reliable": a.reliable}
