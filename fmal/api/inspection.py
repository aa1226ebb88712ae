"""Looking at a pool: ``status`` (its session), ``info`` (its files: :mod:`fmal.describe`, light
enough for ``fmal status``/``fmal info`` without this package) and ``report`` (class balance,
unlabeled clusters: :mod:`fmal.report`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from fmal import multilabel
from fmal._validation import check_positive, check_seed
from fmal.api.annotation import _stored_labels
from fmal.api.results import PoolStatus
from fmal.api.rounds import _proba_batched
from fmal.describe import PoolInfo, info
from fmal.exceptions import InvalidInputError
from fmal.pool import open_pool
from fmal.report import (
    DEFAULT_CLUSTERS,
    DEFAULT_RARE_RATIO,
    BiasReport,
    class_balance,
    rounds_balance,
    unlabeled_clusters,
)
from fmal.report import write as write_report
from fmal.seed.clustering import kmeans as fmal_seed_kmeans
from fmal.session import Session

__all__ = ["PoolInfo", "info", "report", "status"]  # info: fmal.describe's, which fmal info runs without this package

PathLike = str | os.PathLike[str]


def status(pool: str | PathLike, *, index_dir: PathLike | None = None) -> PoolStatus:
    """Show a pool: rows, model, index, labels, and the history of rounds.

    Each round's labels per class, probe C and cross-validated accuracy, and for query rounds the
    stopping signal. Reads the manifest, the files' headers and the labels store only (as
    ``fmal status`` does, :func:`fmal.describe.status_rows`).

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).

    Returns
    -------
    PoolStatus
        The pool's path and manifest, its label count, its rounds (a DataFrame, one row each) and
        the last query round's stopping advice.

    Raises
    ------
    PoolNotFoundError
        No pool at ``pool``.
    CorruptPoolError
        The manifest cannot be read.
    """
    from fmal.describe import status_rows

    st = status_rows(pool, index_dir=index_dir)
    return PoolStatus(st.path, st.manifest, st.n_labels, pd.DataFrame(st.rounds), st.advice, st.task)


def report(
    pool: str | PathLike,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    n_clusters: int = DEFAULT_CLUSTERS,
    rare_ratio: float = DEFAULT_RARE_RATIO,
    random_state: int = 0,
) -> BiasReport:
    """Report what was labeled against what the pool holds: class balance vs the probe's
    predictions, clusters with no label, and the balance round by round (markdown + PNG).

    A probe fitted on every label predicts each row's class; a class far rarer among the labels
    than predicted gets a warning. k-means clusters of the pool holding no label are listed,
    largest first. Written as markdown to ``output`` with a PNG beside it.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    output : path, optional
        The markdown file (.md; default: the pool's ``reports/report.md``).
    n_clusters : int
        k-means clusters to look for unlabeled regions (at most the pool's rows).
    rare_ratio : float
        Warn where a class's labeled share is below this times its predicted share.
    random_state : int
        Seed of the probe and k-means.

    Returns
    -------
    BiasReport
        The balance per class, the unlabeled clusters, the balance per round, the warnings and
        the counts behind them.

    Raises
    ------
    LabelsError
        The pool has no labels yet, or a single class.
    InvalidInputError
        A bad ``n_clusters``, ``rare_ratio`` or seed, an ``output`` that is not .md.
    PoolNotFoundError
        No pool at ``pool``.
    """
    check_positive(n_clusters, "n_clusters", integer=True)
    check_positive(rare_ratio, "rare_ratio")
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    ids, rows, y = _stored_labels(p, session)
    out = Path(output) if output is not None else p.path / "reports" / "report.md"
    if out.suffix.lower() != ".md":
        raise InvalidInputError(f"output {out}: the report is markdown, use a .md file name (the PNG goes beside it)",
                                param="output")
    multi = session.task == multilabel.MULTI  # multi-label hook: one-vs-rest probe, shares per class named
    probe = multilabel.probe_class(session.task)(random_state=random_state).fit(np.asarray(p.embeddings[rows]), np.asarray(y))
    proba = _proba_batched(probe, p.embeddings, np.arange(p.n))
    predicted = multilabel.predicted_sets(proba, probe.classes_)[0] if multi else probe.classes_[proba.argmax(axis=1)]
    if multi:
        balance, warns = class_balance([c for lab in y for c in multilabel.split(lab)],
                                       np.asarray([c for lab in predicted for c in multilabel.split(lab)]), rare_ratio)
    else:
        balance, warns = class_balance(y, predicted, rare_ratio)
    k = int(min(n_clusters, p.n))
    _, assign, sim = fmal_seed_kmeans(p.embeddings, k, random_state=random_state)
    clusters = unlabeled_clusters(assign, sim, rows, predicted, p.texts, k)
    rounds = rounds_balance(session.rounds, session.labels, balance["class"].tolist(), multi_label=multi)
    picked = {i for r in session.rounds for i in r.ids}
    rep = BiasReport(balance, clusters, rounds, warns, p.n, len(ids), k, sum(i not in picked for i in ids))
    write_report(rep, out, p.name)
    return rep
