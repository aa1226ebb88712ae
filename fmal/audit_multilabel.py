"""Label audit of a multi-label pool: cross-validated one-vs-rest probabilities and cleanlab's
multi-label label-issue detection.

As the single-label audit (:mod:`fmal.audit`): every labeled row gets out-of-fold per-class
probabilities from a :class:`~fmal.probe_multilabel.MultiLabelProbe` (k shuffled folds, C chosen
once on all labels); ``cleanlab.filter.find_label_issues(..., multi_label=True)`` flags the likely
wrong answers, and ``cleanlab.multilabel_classification.get_label_quality_scores`` (per-class
self-confidence, pooled) ranks every answer. The suggested answer is the out-of-fold predicted set.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from fmal._validation import check_embeddings, check_positive
from fmal.audit import DEFAULT_FOLDS, LabelAudit, _caution
from fmal.exceptions import LabelsError
from fmal.multilabel import binarize, classes_of, predicted_sets


def audit_multilabel(X: np.ndarray, ids: list[str], y: list[str], *, n_folds: int = DEFAULT_FOLDS,
                     random_state: int = 0) -> LabelAudit:
    """Audit the canonical multi-label answers ``y`` of rows ``X`` (ids ``ids``)."""
    from cleanlab.filter import find_label_issues
    from cleanlab.multilabel_classification import get_label_quality_scores
    from sklearn.model_selection import KFold

    from fmal.probe_multilabel import MultiLabelProbe

    check_positive(n_folds, "n_folds", integer=True)
    X = check_embeddings(X)
    y_arr = np.asarray(y, dtype=str)
    classes = classes_of(y_arr.tolist())
    if len(classes) < 2 or y_arr.size < 4:
        raise LabelsError(f"an audit needs two classes and at least 4 answers, got {len(classes)} class(es) in {y_arr.size} "
                          "answer(s); label more rows first")
    Y = binarize(y_arr.tolist(), classes)
    k = int(min(max(2, n_folds), y_arr.size // 2))
    probe = MultiLabelProbe(random_state=random_state).fit(X, y_arr)
    proba = np.zeros(Y.shape, dtype=np.float64)
    for tr, te in KFold(n_splits=k, shuffle=True, random_state=random_state).split(X):
        fold = MultiLabelProbe(C=probe.C_, random_state=random_state).fit(X[tr], y_arr[tr])
        pos = np.searchsorted(fold.classes_, classes)  # a class missing from a fold: its prior, never seen
        seen = np.isin(classes, fold.classes_)
        p = fold.predict_proba(X[te])
        proba[np.ix_(te, np.nonzero(seen)[0])] = p[:, pos[seen]]
        proba[np.ix_(te, np.nonzero(~seen)[0])] = 0.5 / (tr.size + 1.0)
    lists = [np.nonzero(row)[0].tolist() for row in Y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns on tiny classes; the result is still usable
        issue = np.asarray(find_label_issues(labels=lists, pred_probs=proba, multi_label=True), dtype=bool)
        quality = np.asarray(get_label_quality_scores(lists, proba), dtype=np.float64)
    pred, p_set = predicted_sets(proba, classes)
    table = pd.DataFrame({"id": np.asarray(ids, dtype=object), "given_label": y_arr, "predicted_label": pred,
                          "predicted_proba": p_set.round(4), "label_quality": quality.round(4), "is_issue": issue})
    table = table.iloc[np.argsort(quality, kind="stable")].reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    counts = {c: int(n) for c, n in zip(classes, Y.sum(axis=0))}
    agreement = float(np.mean(pred == y_arr))  # out-of-fold: share of answers whose whole set is predicted
    caution = _caution(counts, {}, k, agreement)
    return LabelAudit(table, k, float(probe.C_), classes, {}, counts, caution is None, caution, round(agreement, 4))
