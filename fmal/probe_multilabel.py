"""A one-vs-rest linear probe for multi-label pools: one binary LogisticRegression per class.

Same contract and C rule as :class:`fmal.probe.LinearProbe`: C is ``DEFAULT_C`` unless there are
``MIN_LABELS_FOR_CV`` labels and the median class has ``MIN_PER_CLASS_FOR_CV`` positives, then
cross-validated over ``C_GRID`` (k-fold, scored by micro-F1; another C must beat ``DEFAULT_C`` by
one standard error, :func:`fmal.probe._choose_c`). One C is shared by every class: per-class C
from tens of positives is noise.

A class whose labeled rows are all positive or all negative (common with few labels) cannot be
fitted; it gets a constant probability, the smoothed share of positives ``(k + 0.5) / (n + 1)``,
stored as a zero coefficient row and that logit as intercept, so every class is one logistic
unit and the probe is saved as coefficients in JSON like the single-label one (never pickled).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold
from threadpoolctl import threadpool_limits

from fmal._atomic import write_json
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError
from fmal.multilabel import SEP, binarize, classes_of, predicted_sets
from fmal.probe import C_GRID, DEFAULT_C, MIN_LABELS_FOR_CV, MIN_PER_CLASS_FOR_CV, LinearProbe, _choose_c

TYPE = "fmal.MultiLabelProbe"


class MultiLabelProbe(ClassifierMixin, BaseEstimator):
    """One-vs-rest logistic regression over canonical multi-label answers (``"a|b"``).

    Attributes after fit: ``classes_`` (every class named in the labels, sorted), ``coef_``
    [classes, d], ``intercept_`` [classes], ``C_``, ``cv_micro_f1_`` (NaN when not
    cross-validated), ``class_counts_`` (positives per class), ``constant_`` (classes with only
    positives or only negatives: a constant probability) and ``n_features_in_``.
    """

    def __init__(self, C: float | str = "auto", class_weight: str | None = None, max_iter: int = 1000,
                 random_state: int = 0) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def _check_params(self) -> None:
        LinearProbe(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                    random_state=self.random_state)._check_params()

    def _fit_matrix(self, X: np.ndarray, Y: np.ndarray, C: float) -> tuple[np.ndarray, np.ndarray]:
        """(coef [C, d], intercept [C]) of one binary fit per column of ``Y`` (constant columns: a prior)."""
        coef = np.zeros((Y.shape[1], X.shape[1]))
        icpt = np.zeros(Y.shape[1])
        for j in range(Y.shape[1]):
            k = int(Y[:, j].sum())
            if 0 < k < Y.shape[0]:
                lr = LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter,
                                        random_state=self.random_state).fit(X, Y[:, j])
                coef[j], icpt[j] = lr.coef_[0], lr.intercept_[0]
            else:
                p = (k + 0.5) / (Y.shape[0] + 1.0)
                icpt[j] = np.log(p / (1.0 - p))
        return coef, icpt

    def fit(self, X: np.ndarray, y: np.ndarray) -> MultiLabelProbe:
        """Choose C (module docstring), then fit every class on all of ``X`` and the answers ``y``."""
        self._check_params()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(str)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise InvalidInputError(f"X must be 2-D with one row per label, got X {X.shape} and y {y.shape}")
        if not np.isfinite(X).all():
            raise InvalidInputError("X must hold finite numbers only, got NaN or inf")
        classes = classes_of(y.tolist())
        if not classes:
            raise LabelsError("labels name no class; label some rows first")
        Y = binarize(y.tolist(), classes)
        counts = Y.sum(axis=0)
        self.cv_micro_f1_ = float("nan")
        with warnings.catch_warnings(), threadpool_limits(limits=1 if X.shape[0] <= 20000 else None):
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.C_ = DEFAULT_C if self.C == "auto" else float(self.C)
            if self.C == "auto" and int(np.median(counts)) >= MIN_PER_CLASS_FOR_CV and y.size >= MIN_LABELS_FOR_CV:
                self.C_, self.cv_micro_f1_ = _choose_c(self._cv_scores(X, Y))
            self.coef_, self.intercept_ = self._fit_matrix(X, Y, self.C_)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = X.shape[1]
        self.class_counts_ = {c: int(k) for c, k in zip(classes, counts)}
        self.constant_ = [c for c, k in zip(classes, counts) if k in (0, y.size)]
        return self

    def _cv_scores(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Held-out micro-F1 [fold, C] of each C in ``C_GRID`` (5-fold, shuffled with random_state)."""
        folds = KFold(n_splits=5, shuffle=True, random_state=self.random_state)
        out = []
        for tr, te in folds.split(X):
            row = []
            for c in C_GRID:
                coef, icpt = self._fit_matrix(X[tr], Y[tr], c)
                pred = (X[te] @ coef.T + icpt) > 0
                row.append(micro_f1(Y[te].astype(bool), pred))
            out.append(row)
        return np.asarray(out)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("MultiLabelProbe is not fitted yet; call fit(X, y) first")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Per-class probabilities [n, classes] (independent: rows do not sum to 1)."""
        self._check_fitted()
        z = np.asarray(X, dtype=np.float32) @ self.coef_.T.astype(np.float32) + self.intercept_.astype(np.float32)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The canonical predicted answer of each row (:func:`fmal.multilabel.predicted_sets`)."""
        return predicted_sets(self.predict_proba(X), self.classes_)[0]

    # -- persistence: coefficients as JSON, never pickle
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"type": TYPE, "params": self.get_params(), "classes": self.classes_.tolist(), "coef": self.coef_.tolist(),
                "intercept": self.intercept_.tolist(), "C_": self.C_,
                "cv_micro_f1_": None if np.isnan(self.cv_micro_f1_) else self.cv_micro_f1_,
                "class_counts_": self.class_counts_, "constant_": self.constant_}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, n_features: int | None = None) -> MultiLabelProbe:
        """The probe saved by :meth:`to_dict`, its shapes checked (InvalidInputError naming the field)."""
        if not isinstance(d, dict) or d.get("type") != TYPE:
            raise InvalidInputError(f'not a saved {TYPE} (no "type": "{TYPE}")')
        classes = d.get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and SEP not in c for c in classes):
            raise InvalidInputError(f"'classes' must be a list of class names without {SEP!r}")
        try:
            coef = np.asarray(d.get("coef"), dtype=np.float64)
            icpt = np.asarray(d.get("intercept"), dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("'coef' and 'intercept' must be arrays of numbers") from None
        if coef.ndim != 2 or coef.shape[0] != len(classes) or icpt.shape != (len(classes),) or not np.isfinite(coef).all():
            raise InvalidInputError(f"'coef' must have shape ({len(classes)}, dim) and 'intercept' ({len(classes)},), finite")
        if n_features is not None and coef.shape[1] != n_features:
            raise InvalidInputError(f"the probe is for {coef.shape[1]}-dim embeddings, the pool's are {n_features}-dim")
        params = d.get("params")
        if not isinstance(params, dict) or not set(params) <= {"C", "class_weight", "max_iter", "random_state"}:
            raise InvalidInputError("'params' must be an object of probe parameters (C, class_weight, max_iter, random_state)")
        probe = cls(**params)
        probe._check_params()
        cv = d.get("cv_micro_f1_")
        probe.classes_, probe.coef_, probe.intercept_ = np.asarray(classes), coef, icpt
        probe.C_ = float(d.get("C_", DEFAULT_C))
        probe.cv_micro_f1_ = float("nan") if cv is None else float(cv)
        probe.class_counts_ = dict(d.get("class_counts_") or {})
        probe.constant_ = list(d.get("constant_") or [])
        probe.n_features_in_ = coef.shape[1]
        return probe

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())


def micro_f1(Y: np.ndarray, P: np.ndarray) -> float:
    """Micro-averaged F1 of boolean indicator matrices (1.0 when both are empty)."""
    tp = float(np.logical_and(Y, P).sum())
    denom = float(Y.sum() + P.sum())
    return 1.0 if denom == 0 else 2.0 * tp / denom


def load_probe(path: str | os.PathLike[str], *, n_features: int | None = None) -> LinearProbe | MultiLabelProbe:
    """A pool's stored probe, single- or multi-label (by its ``type``); a bad file is
    LinearProbe.load's CorruptPoolError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if isinstance(data, dict) and data.get("type") == TYPE:
        try:
            return MultiLabelProbe.from_dict(data, n_features=n_features)
        except InvalidInputError as exc:
            raise CorruptPoolError(f"{path}: not a valid fmal probe ({exc}); delete the file (it only feeds the stopping signal)") from None
    return LinearProbe.load(path, n_features=n_features)
