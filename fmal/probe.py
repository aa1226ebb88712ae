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
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from fmal._atomic import write_json
from fmal._defaults import DEFAULT_C as _DEFAULT_C
from fmal._parallel import single_blas
from fmal._validation import CLASS_WEIGHTS, check_class_weight, check_seed  # noqa: F401  (CLASS_WEIGHTS: its old home)
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError

#: C used when there are too few labels per class to cross-validate (why 10: fmal._defaults)
DEFAULT_C = _DEFAULT_C
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
#: cross-validate C only when the median class has this many labels and there are MIN_LABELS_FOR_CV
#: labels in all (a rare class with 1-2 labels does not block it: its folds just miss it)
MIN_PER_CLASS_FOR_CV = 5
MIN_LABELS_FOR_CV = 30


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression with C chosen by stratified cross-validation over ``C_GRID``
    when the median class has ``MIN_PER_CLASS_FOR_CV`` labels and there are ``MIN_LABELS_FOR_CV`` in
    all (``C="auto"``), else ``DEFAULT_C``. ``class_weight="balanced"`` reweights classes by inverse
    frequency (useful when one class dominates the labels).

    Attributes after fit: ``classes_``, ``coef_``, ``intercept_``, ``C_`` (the C used),
    ``cv_accuracy_`` (mean cross-validated accuracy at ``C_``, NaN when not cross-validated),
    ``class_counts_`` and ``n_features_in_``.
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

    def _check_params(self) -> None:
        if not (self.C == "auto" or (isinstance(self.C, (int, float)) and not isinstance(self.C, bool)
                                     and np.isfinite(self.C) and self.C > 0)):
            raise InvalidInputError(f"C must be 'auto' or a positive number, got {self.C!r}")
        check_class_weight(self.class_weight)
        check_seed(self.random_state)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearProbe:
        """Choose C (see the class docstring), then fit on all of ``X``, ``y``. Returns self."""
        self._check_params()
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(str)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise InvalidInputError(f"X must be 2-D with one row per label, got X {X.shape} and y {y.shape}")
        if not np.isfinite(X).all():
            raise InvalidInputError("X must hold finite numbers only, got NaN or inf")
        classes, counts = np.unique(y, return_counts=True)
        if classes.size < 2:
            raise LabelsError(
                f"labels have a single class ({str(classes[0])!r} x{int(counts[0])}) and a probe needs two; "
                "label rows of another class first (fmal seed picks diverse rows)"
            )
        self.cv_accuracy_ = float("nan")
        # a probe is fitted on at most a few thousand labels: one BLAS thread is several times faster
        # than many fighting over small matrices (measured 8x on 2 busy cores)
        with warnings.catch_warnings(), threadpool_limits(limits=1 if X.shape[0] <= 20000 else None):
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.C == "auto":
                self.C_ = DEFAULT_C
                median = int(np.median(counts))
                if median >= MIN_PER_CLASS_FOR_CV and y.size >= MIN_LABELS_FOR_CV:
                    folds = StratifiedKFold(n_splits=min(5, median), shuffle=True, random_state=self.random_state)
                    warnings.simplefilter("ignore", UserWarning)  # "least populated class has only 2 members"
                    per_fold = self._cv_scores(X, y, folds)
                    self.C_, self.cv_accuracy_ = _choose_c(per_fold)
            else:
                self.C_ = float(self.C)
            lr = self._lr(self.C_).fit(X, y)
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_.astype(np.float64)
        self.intercept_ = lr.intercept_.astype(np.float64)
        self.n_features_in_ = X.shape[1]
        self.class_counts_ = dict(zip(classes.tolist(), counts.tolist()))
        return self

    def _cv_scores(self, X: np.ndarray, y: np.ndarray, folds: StratifiedKFold) -> np.ndarray:
        """Held-out accuracy [fold, C] of each C in C_GRID; along the grid each fold's fit starts from the
        previous C's solution (a warm-started regularisation path: a few iterations per step)."""
        acc = []
        for tr, te in folds.split(X, y):
            lr = self._lr(C_GRID[0])
            lr.set_params(warm_start=True)
            row = []
            for c in C_GRID:
                lr.set_params(C=c).fit(X[tr], y[tr])
                row.append(float(np.mean(lr.predict(X[te]) == y[te])))
            acc.append(row)
        return np.asarray(acc)

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
        """Class probabilities, columns in ``classes_`` order. One BLAS thread: the product is
        rows x d x classes, too thin to split (65,536 rows: 0.13 s on 2 busy cores, 0.05 s on one)."""
        with single_blas():
            z = self.decision_function(X)
        if self.classes_.size == 2:
            p1 = 1.0 / (1.0 + np.exp(-z))
            return np.column_stack([1.0 - p1, p1])
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        return z

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of each row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

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
    def from_dict(cls, d: dict[str, Any], *, n_features: int | None = None) -> LinearProbe:
        """The probe saved by :meth:`to_dict`, every field checked (shape, type, finite): a file
        that is not one is an InvalidInputError saying which field is wrong. ``n_features``: the
        embedding dim it must have."""
        if not isinstance(d, dict) or d.get("type") != "fmal.LinearProbe":
            raise InvalidInputError("not a saved fmal.LinearProbe (no \"type\": \"fmal.LinearProbe\")")
        params = d.get("params")
        if not isinstance(params, dict) or not set(params) <= {"C", "class_weight", "max_iter", "random_state"}:
            raise InvalidInputError("'params' must be an object of LinearProbe parameters (C, class_weight, max_iter, random_state)")
        classes = d.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
            raise InvalidInputError("'classes' must be a list of two or more distinct strings")
        try:
            coef = np.asarray(d.get("coef"), dtype=np.float64)
            intercept = np.asarray(d.get("intercept"), dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInputError("'coef' and 'intercept' must be arrays of numbers") from None
        rows = 1 if len(classes) == 2 else len(classes)
        if coef.ndim != 2 or coef.shape[0] != rows or coef.shape[1] < 1 or intercept.shape != (rows,):
            raise InvalidInputError(
                f"'coef' must have shape ({rows}, dim) and 'intercept' ({rows},) for {len(classes)} classes, "
                f"got {coef.shape} and {intercept.shape}"
            )
        if n_features is not None and coef.shape[1] != n_features:
            raise InvalidInputError(f"the probe is for {coef.shape[1]}-dim embeddings, the pool's are {n_features}-dim")
        with np.errstate(over="ignore"):  # predictions run in float32: a value beyond its range is not finite there
            finite = np.isfinite(coef.astype(np.float32)).all() and np.isfinite(intercept.astype(np.float32)).all()
        if not finite:
            raise InvalidInputError("'coef' and 'intercept' must be finite numbers (within float32's range)")
        c_, cv = d.get("C_"), d.get("cv_accuracy_")
        if isinstance(c_, bool) or not isinstance(c_, (int, float)) or not np.isfinite(c_) or c_ <= 0:
            raise InvalidInputError(f"'C_' must be a positive number, got {type(c_).__name__}")
        if cv is not None and (isinstance(cv, bool) or not isinstance(cv, (int, float))):
            raise InvalidInputError(f"'cv_accuracy_' must be a number or null, got {type(cv).__name__}")
        counts = d.get("class_counts_")
        if not isinstance(counts, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in counts.values()):
            raise InvalidInputError("'class_counts_' must be an object of class -> count")
        probe = cls(**params)
        probe._check_params()
        probe.classes_ = np.asarray(classes)
        probe.coef_ = coef
        probe.intercept_ = intercept
        probe.C_ = float(c_)
        probe.cv_accuracy_ = float("nan") if cv is None else float(cv)
        probe.class_counts_ = dict(counts)
        probe.n_features_in_ = coef.shape[1]
        return probe

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, n_features: int | None = None) -> LinearProbe:
        """A probe saved by :meth:`save`. A file that is missing, not JSON or not a probe (wrong
        fields or shapes, or not ``n_features`` dims) is a CorruptPoolError naming it: a pool's
        probes are only read back for the stopping signal, so deleting a bad one loses nothing else."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.from_dict(data, n_features=n_features)
        except RecursionError:
            problem = "JSON nested too deeply"
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            problem = f"unreadable: {getattr(exc, 'strerror', None) or getattr(exc, 'msg', None) or exc}"
        except InvalidInputError as exc:
            problem = str(exc)
        raise CorruptPoolError(f"{path}: not a valid fmal probe ({problem}); delete the file (it only feeds the stopping signal)") from None


def _choose_c(per_fold: np.ndarray) -> tuple[float, float]:
    """(C, its mean CV accuracy): DEFAULT_C unless another C beats it by more than one standard error
    of the fold scores. With tens of labels CV accuracy is noisy, and a plain argmax measured no better
    than DEFAULT_C (benchmarks/query_quality.py --probe-c)."""
    mean = per_fold.mean(axis=0)
    best = int(np.argmax(mean))
    d = C_GRID.index(DEFAULT_C)
    se = float(per_fold[:, best].std(ddof=1) / np.sqrt(per_fold.shape[0])) if per_fold.shape[0] > 1 else 0.0
    j = best if mean[best] - mean[d] > se else d
    return float(C_GRID[j]), float(mean[j])


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, classes: np.ndarray, n_bins: int = 10) -> float:
    """Top-label expected calibration error: the gap between confidence and accuracy, averaged over
    ``n_bins`` equal-width confidence bins weighted by their size (0 is perfectly calibrated)."""
    proba = np.asarray(proba, dtype=np.float64)
    conf = proba.max(axis=1)
    correct = np.asarray(classes)[proba.argmax(axis=1)] == np.asarray(y_true).astype(str)
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(ece)
