"""Multi-label pools: several classes per row, stored as one canonical string.

A pool's task type is recorded in its labels database (``meta.task``: ``single-label``, the
default of every pool made before, or ``multi-label``). It is set explicitly (``--multi-label`` on a
seed, query or import, or :func:`fmal.api.set_task`) and then holds for every later command, so a
pool never changes meaning by accident:

* a multi-label answer is stored as its canonical form, the sorted unique class names joined by
  ``|`` (``"sports|tech"``): the labels table keeps its schema, and an answer given as a list
  (JSONL, Label Studio ``choices``, Argilla ``MultiLabelQuestion``, Prodigy ``accept``) or as
  ``"tech|sports"`` in a CSV compares equal to the same set given in another order;
* a single-label pool given ``a|b`` is an error that says how to switch; a multi-label pool
  refuses class names that contain ``|``;
* switching a single-label pool with labels to multi-label reads each stored label as the set of
  that one class (nothing is rewritten); switching back is refused while a stored answer holds
  several classes.

An empty set (no class applies) is not stored: blank answers are skipped as in single-label pools.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from fmal._validation import check_label, show
from fmal.exceptions import InvalidInputError, LabelsError

SEP = "|"
SINGLE = "single-label"
MULTI = "multi-label"
TASKS = (SINGLE, MULTI)
#: the key of the task type in the labels database's meta table
TASK_KEY = "task"
#: query strategies that read per-class (one-vs-rest) probabilities: the only ones a multi-label pool runs
MULTI_LABEL_QUERY = ("mean-margin", "max-entropy", "auto", "random")
#: what ``auto`` runs after its typical phase on a multi-label pool (its default, dropquery, assumes one class a row)
MULTI_LABEL_AUTO_THEN = "mean-margin"


def split(label: str) -> list[str]:
    """The classes of a canonical multi-label answer (``"a|b"`` -> ``["a", "b"]``)."""
    return [c for c in str(label).split(SEP) if c]


def canonical(value: Any, where: str, field: str = "label") -> str | None:
    """The canonical form of one answer: sorted unique classes joined by ``|``; None when blank.

    ``value``: a string (``"b|a"``), an integer class, or a list of those (each checked as a label
    by :func:`fmal._validation.check_label`, blanks dropped)."""
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    names: set[str] = set()
    for k, item in enumerate(items):
        lab = check_label(item, where, f"{field}[{k}]" if len(items) > 1 or isinstance(value, (list, tuple)) else field)
        if lab is not None:
            names.update(c.strip() for c in lab.split(SEP) if c.strip())
    return SEP.join(sorted(names)) or None


def check_class_names(names: Iterable[str], where: str = "--classes") -> None:
    """Refuse class names holding ``|`` in a multi-label pool (it separates the classes of an answer)."""
    bad = sorted({n for n in names if SEP in n})
    if bad:
        raise InvalidInputError(f"{where}: class name(s) {', '.join(map(repr, bad[:5]))} contain {SEP!r}, which separates the "
                                f"classes of a multi-label answer; rename them")


def several(labels: Mapping[str, str]) -> dict[str, str]:
    """The answers of ``labels`` that name several classes (hold ``|``)."""
    return {i: lab for i, lab in labels.items() if SEP in lab}


def switch_error(pool: str, rid: str, label: str, source: str) -> LabelsError:
    """The one-line error for a multi-class answer given to a single-label pool."""
    return LabelsError(f"{source}: id {show(rid)} has the label {show(label)} with several classes, but pool {pool!r} is "
                       f"single-label; to make it multi-label pass --multi-label (each stored label becomes a one-class set)")


def prepare(session: Any, pool: str, new: dict[str, str] | None, source: str, *, multi_label: bool = False) -> dict[str, str] | None:
    """Inside a write transaction: record the task type (``multi_label`` switches the pool), then
    return ``new`` checked against it (canonical answers in a multi-label pool; a multi-class
    answer in a single-label pool is :func:`switch_error`)."""
    if multi_label and session.task != MULTI:
        session.set_task(MULTI)
    if session.task == MULTI:
        check_class_names(session.classes, f"pool {pool!r} classes")
        if new is None:
            return None
        out = {}
        for rid, lab in new.items():
            c = canonical(lab, f"{source}: id {show(rid)}")
            if c is not None:
                out[rid] = c
        return out
    if new:  # a class name holding "|" that the pool already has (declared or stored) stays a single class
        known = set(session.classes) | set(session.labels.values())
        bad = {i: lab for i, lab in several(new).items() if lab not in known}
        if bad:
            rid = next(iter(bad))
            raise switch_error(pool, rid, bad[rid], source)
    return new


def check_task(task: object) -> str:
    if task not in TASKS:
        raise InvalidInputError(f"task must be one of {', '.join(TASKS)}, got {show(task)}")
    return str(task)


def can_switch(labels: Mapping[str, str], task: str) -> None:
    """Refuse a switch that would reinterpret a stored label: to single-label while an answer holds
    several classes, to multi-label while a stored label contains ``|`` (a single-label class name)."""
    bad = several(labels)
    if bad:
        rid = next(iter(bad))
        if task == SINGLE:
            raise LabelsError(f"{len(bad)} stored answer(s) hold several classes (id {show(rid)}: {show(bad[rid])}); "
                              "a multi-label pool cannot become single-label")
        raise LabelsError(f"{len(bad)} stored label(s) contain {SEP!r} (id {show(rid)}: {show(bad[rid])}), which separates the "
                          "classes of a multi-label answer; relabel them before switching to multi-label")


def classes_of(labels: Iterable[str]) -> list[str]:
    """Every class named in ``labels`` (canonical answers), sorted."""
    return sorted({c for lab in labels for c in split(lab)})


def binarize(labels: Iterable[str], classes: Iterable[str]) -> np.ndarray:
    """Indicator matrix [n, len(classes)] (uint8) of canonical answers over ``classes``; a class
    outside ``classes`` is ignored."""
    pos = {c: j for j, c in enumerate(classes)}
    labels = list(labels)
    Y = np.zeros((len(labels), len(pos)), dtype=np.uint8)
    for i, lab in enumerate(labels):
        for c in split(lab):
            j = pos.get(c)
            if j is not None:
                Y[i, j] = 1
    return Y


def decode(Y: np.ndarray, classes: np.ndarray | list[str]) -> np.ndarray:
    """Canonical answers of an indicator matrix (the inverse of :func:`binarize`; an empty row is ``""``)."""
    names = np.asarray(classes).astype(str)
    return np.asarray([SEP.join(sorted(names[np.nonzero(row)[0]])) for row in np.asarray(Y)], dtype=object)


def predicted_sets(proba: np.ndarray, classes: np.ndarray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(canonical predicted answer, its probability) per row of per-class probabilities: every class
    with p >= 0.5, else the most probable one (an answer names at least one class); the probability
    of exactly that set when the classes are independent."""
    proba = np.asarray(proba, dtype=np.float64)
    on = proba >= 0.5
    none = ~on.any(axis=1)
    on[none, proba[none].argmax(axis=1)] = True
    p_set = np.where(on, proba, 1.0 - proba).prod(axis=1)
    return decode(on, classes), p_set


# ----------------------------------------------------------------------------- query rounds (fmal.api hooks)

def query_params(task: str, strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check that ``strategy`` fits the pool's task and return its parameters: on a multi-label
    pool only :data:`MULTI_LABEL_QUERY` run (softmax measures do not apply to per-class
    probabilities) and ``auto`` continues with :data:`MULTI_LABEL_AUTO_THEN`; the multi-label
    measures are refused on a single-label pool."""
    if task == MULTI:
        if strategy not in MULTI_LABEL_QUERY:
            raise InvalidInputError(f"strategy {strategy!r} reads a softmax over classes; a multi-label pool runs one of "
                                    f"{', '.join(MULTI_LABEL_QUERY)}")
        if strategy == "auto":
            then = params.get("then", MULTI_LABEL_AUTO_THEN)
            if then not in MULTI_LABEL_QUERY or then == "auto":
                raise InvalidInputError(f"then={then!r}: on a multi-label pool auto continues with mean-margin, max-entropy "
                                        "or random")
            return {**params, "then": then}
        return params
    if strategy in MULTI_LABEL_QUERY and strategy not in ("auto", "random"):
        raise InvalidInputError(f"strategy {strategy!r} is for multi-label pools; this pool is single-label "
                                "(pass --multi-label to make it multi-label)")
    return params


def probe_class(task: str) -> Any:
    """The probe class of a pool's task: LinearProbe, or the one-vs-rest MultiLabelProbe."""
    if task == MULTI:
        from fmal.probe_multilabel import MultiLabelProbe

        return MultiLabelProbe
    from fmal.probe import LinearProbe

    return LinearProbe


def cv_info(probe: Any) -> dict[str, Any]:
    """The probe's cross-validated score for a round's info: accuracy (single-label) or micro-F1."""
    key, value = (("probe_cv_micro_f1", probe.cv_micro_f1_) if hasattr(probe, "cv_micro_f1_")
                  else ("probe_cv_accuracy", probe.cv_accuracy_))
    return {key: None if np.isnan(value) else round(float(value), 4)}


def read_answers(got: Any, task: str, multi_label: bool, on_conflict: str, path: Any, pool: str) -> Any:
    """A tool export's :class:`fmal.export.base.Answers` as the pool reads them: in a multi-label
    pool (or one ``multi_label`` makes so) several chosen classes are one canonical answer; in a
    single-label pool they stay skipped (:func:`switch_hint` says how to switch)."""
    if task == MULTI or multi_label:
        if on_conflict == "crowdlab":
            raise InvalidInputError("--on-conflict crowdlab weighs single-label answers; on a multi-label pool use majority, "
                                    "keep, replace or error")
        return got.multi_label()
    return got


def switch_hint(error: LabelsError, got: Any, pool: str) -> LabelsError:
    """``error`` (a file with no usable answer) with how to switch, when its answers chose several classes."""
    if not got.several:
        return error
    return LabelsError(f"{error}; {len(got.several)} answer(s) chose several classes and pool {pool!r} is single-label: "
                       "pass --multi-label to make it multi-label", param=error.param)  # the CLI still shows --format
