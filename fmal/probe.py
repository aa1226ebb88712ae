"""A linear probe on frozen embeddings: L2-regularised multinomial logistic regression, tuned for
tiny label sets.

The model and objective are scikit-learn's ``LogisticRegression(solver="lbfgs")`` (one coefficient
row per class, or one row for two classes; mean log-loss weighted by ``class_weight`` plus
``||W||^2 / (2 C n)``; intercept not penalised), and C is chosen on scikit-learn's stratified folds,
but both are computed here in numpy: importing scikit-learn costs ~0.9 s of CPU, more than the
rest of a 100k-row ``fmal query`` round (benchmarks/interactive.py). The probe keeps scikit-learn's
estimator contract (``__init__`` stores parameters, ``fit`` returns self, learned state ends in
``_``, ``get_params``/``set_params``, so ``sklearn.base.clone`` and ``cross_val_predict`` take it)
and is persisted as its coefficients in JSON, never pickled.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmal._atomic import write_json
from fmal._defaults import DEFAULT_C as _DEFAULT_C
from fmal._parallel import single_blas
from fmal._validation import check_seed
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError

#: C used when there are too few labels per class to cross-validate (why 10: fmal._defaults)
DEFAULT_C = _DEFAULT_C
C_GRID = (1.0, 3.0, 10.0, 30.0, 100.0)
#: cross-validate C only when the median class has this many labels and there are MIN_LABELS_FOR_CV
#: labels in all (a rare class with 1-2 labels does not block it: its folds just miss it)
MIN_PER_CLASS_FOR_CV = 5
MIN_LABELS_FOR_CV = 30
CLASS_WEIGHTS = (None, "balanced")
#: the solver stops when no gradient entry of the (mean-scaled) objective exceeds this (scikit-learn: 1e-4)
TOL = 1e-4
#: L-BFGS memory (scipy's and so scikit-learn's default)
LBFGS_MEMORY = 10


class LinearProbe:
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

    _PARAMS = ("C", "class_weight", "max_iter", "random_state")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's estimator contract)."""
        return {k: getattr(self, k) for k in self._PARAMS}

    def set_params(self, **params: Any) -> LinearProbe:
        """Set constructor parameters by name; returns self."""
        for k, v in params.items():
            if k not in self._PARAMS:
                raise InvalidInputError(f"LinearProbe has no parameter {k!r}; it has {', '.join(self._PARAMS)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != type(self)().get_params()[k]}
        return f"LinearProbe({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def __sklearn_tags__(self) -> Any:
        """A classifier, for scikit-learn's meta-tools (imported only when they ask)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True), classifier_tags=ClassifierTags())

    def _check_params(self) -> None:
        if not (self.C == "auto" or (isinstance(self.C, (int, float)) and not isinstance(self.C, bool)
                                     and np.isfinite(self.C) and self.C > 0)):
            raise InvalidInputError(f"C must be 'auto' or a positive number, got {self.C!r}")
        if not (self.class_weight in CLASS_WEIGHTS or isinstance(self.class_weight, dict)):
            raise InvalidInputError(f"class_weight must be None, 'balanced' or a dict, got {self.class_weight!r}")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise InvalidInputError(f"max_iter must be a positive integer, got {self.max_iter!r}")
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
        classes, y_int, counts = np.unique(y, return_inverse=True, return_counts=True)
        if classes.size < 2:
            raise LabelsError(
                f"labels have a single class ({str(classes[0])!r} x{int(counts[0])}) and a probe needs two; "
                "label rows of another class first (fmal seed picks diverse rows)"
            )
        self.cv_accuracy_ = float("nan")
        Xa = np.hstack([X.astype(np.float64), np.ones((X.shape[0], 1))])  # the intercept as a last column
        # a probe is fitted on at most a few thousand labels: one BLAS thread is several times faster
        # than many fighting over small matrices (measured 8x on 2 busy cores)
        with single_blas() if X.shape[0] <= 20000 else _nothing():
            if self.C == "auto":
                self.C_ = DEFAULT_C
                median = int(np.median(counts))
                if median >= MIN_PER_CLASS_FOR_CV and y.size >= MIN_LABELS_FOR_CV:
                    per_fold = self._cv_scores(Xa, y_int, classes, stratified_folds(y, min(5, median), self.random_state))
                    self.C_, self.cv_accuracy_ = _choose_c(per_fold)
            else:
                self.C_ = float(self.C)
            theta = self._solve(Xa, y_int, classes, self.C_, None)
        self.classes_ = classes
        self.coef_ = np.ascontiguousarray(theta[:, :-1])
        self.intercept_ = theta[:, -1].copy()
        self.n_features_in_ = X.shape[1]
        self.class_counts_ = dict(zip(classes.tolist(), counts.tolist()))
        return self

    def _solve(self, Xa: np.ndarray, y_int: np.ndarray, classes: np.ndarray, C: float, start: np.ndarray | None) -> np.ndarray:
        """Coefficients with the intercept as last column [rows, d + 1] at ``C`` (from ``start``)."""
        sw = _class_weights(self.class_weight, y_int, classes)
        return fit_logistic(Xa, y_int, classes.size, C, sample_weight=sw, start=start, max_iter=self.max_iter)

    def _cv_scores(self, Xa: np.ndarray, y_int: np.ndarray, classes: np.ndarray, folds: np.ndarray) -> np.ndarray:
        """Held-out accuracy [fold, C] of each C in C_GRID; along the grid each fold's fit starts from the
        previous C's solution (a warm-started regularisation path: a few iterations per step)."""
        acc = []
        for f in range(int(folds.max()) + 1):
            tr, te = folds != f, folds == f
            theta, row = None, []
            for c in C_GRID:
                theta = self._solve(Xa[tr], y_int[tr], classes, c, theta)
                row.append(float(np.mean(_predict_int(Xa[te], theta) == y_int[te])))
            acc.append(row)
        return np.asarray(acc)

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of :meth:`predict` on ``X`` against ``y``."""
        return float(np.mean(self.predict(X) == np.asarray(y).astype(str)))

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            from sklearn.exceptions import NotFittedError  # scikit-learn's own, for its callers; only on this error

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


# ----------------------------------------------------------------------------- the solver (numpy only)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def stratified_folds(y: np.ndarray, n_splits: int, random_state: int) -> np.ndarray:
    """The test fold of every label [n]: scikit-learn's ``StratifiedKFold(n_splits, shuffle=True,
    random_state)`` split, reproduced (classes in order of first appearance, each class's rows dealt
    round robin over the folds, then shuffled by a ``RandomState(random_state)``)."""
    rng = np.random.RandomState(random_state)
    _, first, inv = np.unique(y, return_index=True, return_inverse=True)
    y_enc = np.unique(first, return_inverse=True)[1][inv.ravel()]
    n_classes = first.size
    order = np.sort(y_enc)
    allocation = np.asarray([np.bincount(order[i::n_splits], minlength=n_classes) for i in range(n_splits)])
    folds = np.empty(y_enc.size, dtype=np.int64)
    for k in range(n_classes):
        per_class = np.arange(n_splits).repeat(allocation[:, k])
        rng.shuffle(per_class)
        folds[y_enc == k] = per_class
    return folds


def _class_weights(class_weight: str | dict | None, y_int: np.ndarray, classes: np.ndarray) -> np.ndarray | None:
    """Per-label weights of ``class_weight`` (None; "balanced": n / (classes x count), computed on
    the labels being fitted, as scikit-learn does; or a dict class -> weight, 1 for classes left out)."""
    if class_weight is None:
        return None
    if isinstance(class_weight, dict):
        return np.asarray([float(class_weight.get(c, 1.0)) for c in classes.tolist()])[y_int]
    counts = np.bincount(y_int, minlength=classes.size).astype(np.float64)
    present = counts > 0
    w = np.ones(classes.size)
    w[present] = y_int.size / (present.sum() * counts[present])
    return w[y_int]


def _logits(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """[n, classes] logits; with one coefficient row (two classes) the first class's logit is 0."""
    Z = Xa @ theta.T
    return np.hstack([np.zeros((Z.shape[0], 1)), Z]) if theta.shape[0] == 1 else Z


def _predict_int(Xa: np.ndarray, theta: np.ndarray) -> np.ndarray:
    return np.argmax(_logits(Xa, theta), axis=1)


def fit_logistic(Xa: np.ndarray, y_int: np.ndarray, n_classes: int, C: float, *, sample_weight: np.ndarray | None = None,
                 start: np.ndarray | None = None, max_iter: int = 1000, tol: float = TOL) -> np.ndarray:
    """Minimise scikit-learn's lbfgs logistic objective, mean weighted log-loss + ``||W||^2 / (2 C
    sum(w))`` (the last column of ``Xa``, all ones, is the unpenalised intercept), by L-BFGS with
    backtracking (the objective is smooth and strictly convex). Returns ``theta`` [rows, d + 1]:
    one row per class, or a single row for two classes (scikit-learn's binary model)."""
    n, d1 = Xa.shape
    rows = 1 if n_classes == 2 else n_classes
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    sw_norm = sw / sw.sum()
    lam = 1.0 / (C * sw.sum())
    Y = np.zeros((n, n_classes))
    Y[np.arange(n), y_int] = 1.0
    pen = np.ones((rows, d1))
    pen[:, -1] = 0.0  # no penalty on the intercept

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        Z = _logits(Xa, theta)
        zmax = Z.max(axis=1, keepdims=True)
        E = np.exp(Z - zmax)
        s = E.sum(axis=1, keepdims=True)
        lse = np.log(s[:, 0]) + zmax[:, 0]
        W = theta * pen
        f = float(sw_norm @ (lse - (Z * Y).sum(axis=1))) + 0.5 * lam * float((W * W).sum())
        G = (E / s - Y) * sw_norm[:, None]
        if rows == 1:
            G = G[:, 1:]
        return f, G.T @ Xa + lam * W

    theta = np.zeros((rows, d1)) if start is None else np.array(start, dtype=np.float64)
    return _lbfgs(fg, theta, tol, max_iter)


def _lbfgs(fg: Any, x: np.ndarray, tol: float, max_iter: int, memory: int = LBFGS_MEMORY) -> np.ndarray:
    """Minimise a smooth strictly convex ``fg(x) -> (f, grad)`` until max |grad| <= ``tol`` or
    ``max_iter`` steps: L-BFGS directions, Armijo backtracking from the unit step."""
    f, g = fg(x)
    hist: list[tuple[np.ndarray, np.ndarray, float]] = []
    for _ in range(max_iter):
        if np.abs(g).max() <= tol:
            break
        q = g.ravel().copy()
        alphas = []
        for s, yv, rho in reversed(hist):
            a = rho * (s @ q)
            q -= a * yv
            alphas.append(a)
        if hist:
            s, yv, _ = hist[-1]
            q *= (s @ yv) / (yv @ yv)
        else:
            q *= min(1.0, 1.0 / np.abs(g).sum())  # first step: scipy's, small and safe
        for (s, yv, rho), a in zip(hist, reversed(alphas)):
            q += (a - rho * (yv @ q)) * s
        p = -q.reshape(x.shape)
        slope = float((g * p).sum())
        if slope >= 0:  # not a descent direction (rounding): restart from the gradient
            hist.clear()
            p, slope = -g, -float((g * g).sum())
        t = 1.0
        while True:
            x_new = x + t * p
            f_new, g_new = fg(x_new)
            if f_new <= f + 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        s, yv = (x_new - x).ravel(), (g_new - g).ravel()
        sy = float(s @ yv)
        if sy > 1e-16:
            hist.append((s, yv, 1.0 / sy))
            if len(hist) > memory:
                hist.pop(0)
        if f - f_new <= 64 * np.finfo(float).eps * max(abs(f), abs(f_new), 1.0):
            x, f, g = x_new, f_new, g_new
            break
        x, f, g = x_new, f_new, g_new
    return x
