"""A linear probe on frozen embeddings: scikit-learn's LogisticRegression, tuned for tiny label sets.

Follows scikit-learn's estimator contract (``__init__`` stores parameters, ``fit`` returns self,
learned state ends in ``_``) and is persisted as its coefficients in JSON, never pickled.
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
from sklearn.model_selection import StratifiedKFold, cross_val_score

from fmal._atomic import write_json
from fmal.exceptions import InvalidInputError, LabelsError

#: C used when there are too few labels per class to cross-validate. On L2-normalised sentence
#: embeddings the default C=1 underfits badly with tens of labels (trec6, 80 labels: 0.51 vs 0.585
#: accuracy at C=10).
DEFAULT_C = 10.0
C_GRID = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
MIN_PER_CLASS_FOR_CV = 5


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression with C chosen by stratified cross-validation when every class
    has at least ``MIN_PER_CLASS_FOR_CV`` labels (``C="auto"``), else ``DEFAULT_C``.

    Attributes after fit: ``classes_``, ``coef_``, ``intercept_``, ``C_`` (the C used) and
    ``cv_accuracy_`` (mean cross-validated accuracy at ``C_``, NaN when not cross-validated).
    """

    def __init__(
        self,
        C: float | str = "auto",
        class_weight: str | None = None,
        max_iter: int = 1000,
        random_state: int = 0,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.random_state = random_state

    def _lr(self, C: float) -> LogisticRegression:
        return LogisticRegression(C=C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.random_state)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(str)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise InvalidInputError(f"X must be 2-D with one row per label, got X {X.shape} and y {y.shape}")
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise LabelsError(
                f"labels have a single class ({classes[0]!r} x{counts[0]}) and a probe needs two; "
                "label rows of another class first (fmal seed picks diverse rows)"
            )
        self.cv_accuracy_ = float("nan")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.C == "auto":
                self.C_ = DEFAULT_C
                if counts.min() >= MIN_PER_CLASS_FOR_CV:
                    folds = StratifiedKFold(n_splits=min(5, int(counts.min())), shuffle=True, random_state=self.random_state)
                    scores = [cross_val_score(self._lr(c), X, y, cv=folds).mean() for c in C_GRID]
                    best = int(np.argmax(scores))
                    self.C_, self.cv_accuracy_ = float(C_GRID[best]), float(scores[best])
            else:
                self.C_ = float(self.C)
            lr = self._lr(self.C_).fit(X, y)
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_.astype(np.float64)
        self.intercept_ = lr.intercept_.astype(np.float64)
        self.n_features_in_ = X.shape[1]
        self.class_counts_ = dict(zip(classes.tolist(), counts.tolist()))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise NotFittedError("LinearProbe is not fitted yet; call fit(X, y) first")

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        z = np.asarray(X, dtype=np.float32) @ self.coef_.T.astype(np.float32) + self.intercept_.astype(np.float32)
        if self.classes_.size == 2:
            return z[:, 0]
        return z

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in ``classes_`` order."""
        z = self.decision_function(X)
        if self.classes_.size == 2:
            p1 = 1.0 / (1.0 + np.exp(-z))
            return np.column_stack([1.0 - p1, p1])
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    # -- persistence: coefficients as JSON, never pickle
    def to_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "type": "fmal.LinearProbe",
            "params": self.get_params(),
            "classes": self.classes_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "C_": self.C_,
            "cv_accuracy_": None if np.isnan(self.cv_accuracy_) else self.cv_accuracy_,
            "class_counts_": self.class_counts_,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearProbe:
        if d.get("type") != "fmal.LinearProbe":
            raise InvalidInputError("not a saved fmal.LinearProbe")
        probe = cls(**d["params"])
        probe.classes_ = np.asarray(d["classes"])
        probe.coef_ = np.asarray(d["coef"], dtype=np.float64)
        probe.intercept_ = np.asarray(d["intercept"], dtype=np.float64)
        probe.C_ = float(d["C_"])
        probe.cv_accuracy_ = float("nan") if d["cv_accuracy_"] is None else float(d["cv_accuracy_"])
        probe.class_counts_ = dict(d["class_counts_"])
        probe.n_features_in_ = probe.coef_.shape[1]
        return probe

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinearProbe:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}: not a readable fmal probe ({exc})") from None
