"""Several answers to one task: from a file's (or a server's) answers to one label per id.

Policies (``--on-conflict``):
    error, keep, replace   as :func:`fmal.export.merge.collapse` (first / last answer, or refuse)
    majority               the label most annotators gave (one vote per annotator: their last
                           answer); a tie imports nothing for that id and is reported
    crowdlab               cleanlab's CROWDLAB (``cleanlab.multiannotator``): each answer weighed by
                           its annotator's estimated quality and by out-of-fold probe probabilities
                           from the pool's embeddings; reports every annotator's quality

Every answer of an id answered more than once is kept as a *vote* (stored in labels.db's
``answers`` with its annotator), whatever the policy chose, so no answer is lost.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.export.base import Answer
from fmal.export.merge import Disagreement, collapse

POLICIES = ("error", "keep", "replace", "majority", "crowdlab")
CONSENSUS = ("majority", "crowdlab")
UNNAMED = "(unnamed)"


@dataclass
class Resolution:
    """One label per id, and how it was reached."""

    labels: dict[str, str]
    disagreements: list[Disagreement] = field(default_factory=list)
    votes: list[tuple[str, str, str | None]] = field(default_factory=list)  # (id, label, annotator) of ids answered > once
    annotators: dict[str, str] = field(default_factory=dict)  # id -> who, for ids answered once by a named annotator
    ties: list[Disagreement] = field(default_factory=list)  # majority: nothing imported for these
    annotator_quality: dict[str, float] = field(default_factory=dict)  # crowdlab: annotator -> estimated quality
    annotator_answers: dict[str, int] = field(default_factory=dict)  # annotator -> answers given
    consensus_quality: dict[str, float] = field(default_factory=dict)  # crowdlab: id -> quality of its consensus


def merge_policy(policy: str) -> str:
    """How the session treats a stored label that differs from the resolved one: a consensus
    replaces it (it weighs every answer); other policies apply as they are."""
    return "replace" if policy in CONSENSUS else policy


def _by_id(answers: list[Answer]) -> dict[str, list[Answer]]:
    out: dict[str, list[Answer]] = {}
    for a in answers:
        out.setdefault(a.id, []).append(a)
    return out


def _one_per_annotator(given: list[Answer]) -> list[Answer]:
    """Each named annotator's last answer; unnamed answers each count."""
    last: dict[str, Answer] = {}
    out: list[Answer] = []
    for a in given:
        if a.annotator:
            last[a.annotator] = a
        else:
            out.append(a)
    return out + list(last.values())


def resolve(
    answers: list[Answer],
    policy: str,
    source: str,
    *,
    embeddings_of: Callable[[list[str]], np.ndarray] | None = None,
    stored: dict[str, str] | None = None,
    classes: list[str] | None = None,
    random_state: int = 0,
) -> Resolution:
    """Resolve ``answers`` (ids in the pool) with ``policy``. ``crowdlab`` needs ``embeddings_of``
    (ids -> their pool vectors) and uses the ``stored`` labels of other ids as extra training data."""
    if policy not in POLICIES:
        raise InvalidInputError(f"--on-conflict must be one of {', '.join(POLICIES)}, got {policy!r}")
    by_id = _by_id(answers)
    votes = [(a.id, a.label, a.annotator) for rid, given in by_id.items() if len(given) > 1 for a in given]
    single = {rid: given[0].annotator for rid, given in by_id.items() if len(given) == 1 and given[0].annotator}
    counted = Counter(a.annotator or UNNAMED for a in answers)
    if policy not in CONSENSUS:
        labels, dis = collapse(answers, policy, source)
        return Resolution(labels, dis, votes, single, annotator_answers=dict(counted))
    labels: dict[str, str] = {}
    dis: list[Disagreement] = []
    ties: list[Disagreement] = []
    for rid, given in by_id.items():
        counts = Counter(a.label for a in _one_per_annotator(given))
        (top, n), *rest = counts.most_common()
        if rest and rest[0][1] == n:
            ties.append(Disagreement(rid, tuple(given), ""))
            continue
        labels[rid] = top
        if len(counts) > 1:
            dis.append(Disagreement(rid, tuple(given), top))
    res = Resolution(labels, dis, votes, single, ties, annotator_answers=dict(counted))
    if policy == "crowdlab":
        if embeddings_of is None:
            raise InvalidInputError("--on-conflict crowdlab needs the pool's embeddings")
        _crowdlab(res, by_id, embeddings_of, stored or {}, classes or [], random_state)
    return res


def _crowdlab(res: Resolution, by_id: dict[str, list[Answer]], embeddings_of: Callable[[list[str]], np.ndarray],
              stored: dict[str, str], classes: list[str], random_state: int) -> None:
    """CROWDLAB over every id of the file: consensus labels (ties included), annotator quality."""
    import pandas as pd
    from cleanlab.multiannotator import get_label_quality_multiannotator

    from fmal.probe import LinearProbe

    ids = list(by_id)
    who = sorted({a.annotator or UNNAMED for given in by_id.values() for a in given})
    labels_seen = {a.label for given in by_id.values() for a in given}
    names = sorted(set(classes) | labels_seen | set(stored.values()))
    index = {c: k for k, c in enumerate(names)}
    table = pd.DataFrame(np.nan, index=ids, columns=who)
    for rid, given in by_id.items():
        for a in given:  # an annotator's last answer
            table.loc[rid, a.annotator or UNNAMED] = index[a.label]
    # out-of-fold probe probabilities: each fold's ids are predicted by a probe that never saw them,
    # trained on the other ids' provisional labels (majority, ties: first answer) and the stored labels
    provisional = {rid: res.labels.get(rid, given[0].label) for rid, given in by_id.items()}
    others = [i for i in stored if i not in by_id]
    X_ids = embeddings_of(ids)
    X_other = embeddings_of(others) if others else np.zeros((0, X_ids.shape[1]), dtype=np.float32)
    y_other = np.asarray([stored[i] for i in others], dtype=object)
    y_ids = np.asarray([provisional[i] for i in ids], dtype=object)
    k = int(min(5, len(ids)))
    if k < 2:
        raise LabelsError("--on-conflict crowdlab needs at least 2 answered tasks; use --on-conflict majority")
    rng = np.random.default_rng(random_state)
    fold = rng.permutation(len(ids)) % k
    probs = np.zeros((len(ids), len(names)))
    for f in range(k):
        test = fold == f
        X_train = np.vstack([X_ids[~test], X_other])
        y_train = np.concatenate([y_ids[~test], y_other]).astype(str)
        if np.unique(y_train).size < 2:
            raise LabelsError("--on-conflict crowdlab needs labels of at least 2 classes to weigh the answers "
                              "(import more, or use --on-conflict majority)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = LinearProbe(C=1.0, random_state=random_state).fit(X_train, y_train)
            p = probe.predict_proba(X_ids[test])
        for j, c in enumerate(probe.classes_):
            probs[test, index[str(c)]] = p[:, j]
    probs = (probs + 1e-3) / (probs + 1e-3).sum(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = get_label_quality_multiannotator(table, probs, verbose=False)
        except (ValueError, AssertionError) as exc:
            raise LabelsError(f"cleanlab's CROWDLAB could not weigh these answers ({str(exc).splitlines()[0]}); "
                              "use --on-conflict majority") from None
    lq = out["label_quality"]
    consensus = {rid: names[int(c)] for rid, c in zip(ids, lq["consensus_label"].tolist())}
    res.consensus_quality = {rid: round(float(q), 4) for rid, q in zip(ids, lq["consensus_quality_score"].tolist())}
    stats = out["annotator_stats"]
    res.annotator_quality = {str(a): round(float(q), 4) for a, q in zip(stats.index, stats["annotator_quality"].tolist())}
    res.labels = consensus
    res.ties = []
    res.disagreements = [Disagreement(rid, tuple(given), consensus[rid]) for rid, given in by_id.items()
                         if len({a.label for a in given}) > 1]
