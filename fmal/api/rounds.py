"""The selection rounds: ``seed``, ``query`` and ``undo``, and the bookkeeping they share
(``_finish_round``: reuse a rerun or compute and record a round; labels merged in its transaction;
the probe stored per query round and the stopping signal from it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmal import multilabel
from fmal._defaults import DEFAULT_QUERY_STRATEGY, DEFAULT_SEED_STRATEGY
from fmal._faults import crash_point
from fmal._lazy import lazy_module
from fmal._matrix import format_bytes, ram_cap
from fmal._parallel import single_blas
from fmal._validation import check_budget, check_class_weight, check_seed
from fmal.api.labelset import _declare
from fmal.api.results import Selection, UndoResult
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import write_table
from fmal.pool import Pool, open_pool
from fmal.query import QUERY_STRATEGIES, QueryContext, knn_candidates, parse_candidates, stop_sample, stop_signal
from fmal.query.candidates import score_rows as _proba_batched
from fmal.query.adaptive import origins_of
from fmal.query.stopping import advice as stop_advice
from fmal.seed import check_params as check_seed_params
from fmal.seed import select as seed_select
from fmal.session import Round, Session, params_key
from fmal.session.rounds import view_path as round_view_path

if TYPE_CHECKING:
    from fmal.probe import LinearProbe  # scikit-learn (0.9 s): imported by the functions that fit a probe

PathLike = str | os.PathLike[str]
pd = lazy_module("pandas")  # with fmal.frames, imported once a round is computed: bad arguments fail first
frames = lazy_module("fmal.frames")


def _read_labels_file(pool: Pool, labels: PathLike | frames.LabelsLike | None) -> dict[str, str] | None:
    """Read labels (a file, a DataFrame, a dict, ...: :func:`fmal.frames.labels_mapping`), if any,
    and check their ids belong to the pool (before taking the lock)."""
    if labels is None:
        return None
    new = frames.labels_mapping(labels, "labels")
    pool.rows_of(list(new), source=frames.describe(labels, "labels"))
    return new


def _labels_into_session(session: Session, new: dict[str, str] | None, labels: PathLike | None) -> tuple[dict[str, str], dict[str, Any]]:
    """Merge a labels file's labels into the session's open transaction (committed with the round)."""
    if new is None:
        return session.labels, {}
    merge = session.add_labels(new, source=frames.describe(labels, "labels"))
    return session.labels, {"labels_added": merge.added, "labels_changed": merge.changed, "labels_in_file": len(new)}


def _frame_of_round(pool: Pool, rec: Round) -> pd.DataFrame:
    """A round's picks table from the session; texts stored with the picks, else the pool's."""
    texts = rec.pick_texts()
    missing = [i for i, t in zip(rec.ids, texts) if t is None]
    if missing:
        rows = pool.rows_of(rec.ids, source="session")
        texts = [pool.texts[r] if t is None else t for r, t in zip(rows, texts)]
    cols = {"id": rec.ids, "text": texts, **rec.columns, "round": rec.round}
    return pd.DataFrame(cols)


def _finish_round(
    pool: Pool,
    session: Session,
    kind: str,
    strategy: str,
    key: str,
    record: dict[str, Any],
    compute: Callable[[], tuple[pd.DataFrame, dict[str, Any]]],
    output: PathLike | None,
) -> Selection:
    """Reuse the last round when it had the same parameters (a rerun), else compute and record one.

    Runs inside the session's open transaction. The round's view (``rounds/round-NNN-...csv``) is
    written from the database after the commit; a user's ``output`` is a copy written before the
    commit (a failure there records nothing) and recorded as not the pool's (never deleted).
    """
    if output is not None and Path(output).suffix.lower() not in {".csv", ".jsonl", ".tsv", ".parquet"}:
        raise InvalidInputError(f"output {output}: use a .csv, .tsv, .jsonl or .parquet file name", param="output")
    prev = session.last_round_like(key)
    if prev is not None:
        frame = _frame_of_round(pool, prev)
        out = Path(output) if output else session.round_view(prev)
        if output:
            write_table(frame, out)
            session.record_file(out, prev.round, "output", owned=False)
        session.rerender_round(prev.round)
        return Selection(prev.round, kind, strategy, frame, out, True, prev.info)
    frame, measured = compute()
    crash_point(f"{kind}.computed")
    round_no = session.next_round
    frame["round"] = round_no
    columns = {c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame.columns if c not in {"id", "text", "round"}}
    out = Path(output) if output else round_view_path(session.dir, round_no, kind, strategy)
    session.add_round({"kind": kind, "strategy": strategy, "key": key, **record, "ids": frame["id"].tolist(),
                       "texts": frame["text"].tolist(), "columns": columns, "output": str(out), "info": measured})
    if output is not None:
        write_table(frame, out)
        crash_point("output.written")
        session.record_file(out, round_no, "output", owned=False)
    return Selection(round_no, kind, strategy, frame, out, False, measured)


def seed(
    pool: str | PathLike,
    budget: int,
    strategy: str = DEFAULT_SEED_STRATEGY,
    *,
    index_dir: PathLike | None = None,
    labels: PathLike | frames.LabelsLike | None = None,
    output: PathLike | None = None,
    random_state: int = 0,
    classes: str | list[str] | None = None,
    multi_label: bool = False,
    **params: Any,
) -> Selection:
    """Pick a diverse, typical cold-start set to label first: no labels needed.

    Rows labeled so far (stored in the pool, and ``labels``) count as already chosen. The picks
    are recorded as a round of the pool's session and written as its ``rounds/`` view (and to
    ``output``); the same arguments give the same picks, and rerunning the last round reuses it.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    budget : int
        How many rows to pick: at least 1, at most the unlabeled rows.
    strategy : str
        A name in ``fmal.SEED_STRATEGIES`` (default ``fmal.api.DEFAULT_SEED_STRATEGY``).
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    labels : path, DataFrame, dict, ..., optional
        Rows already labeled (id and label columns, :func:`fmal.frames.labels_mapping`): merged
        into the pool's labels with the round; the picks extend that set.
    output : path, optional
        A copy of the picks (.csv, .tsv, .jsonl or .parquet), never deleted by ``undo``.
    random_state : int
        Seed of every random choice.
    classes : str or list of str, optional
        The label set ("A,B,C" or a list), stored with the pool in the round's transaction.
    multi_label : bool
        Make the pool multi-label (recorded; :mod:`fmal.multilabel`).
    **params
        The strategy's own keywords (e.g. ``delta``, ``n_classes``, ``exact``); an unknown one is
        an error naming the accepted ones.

    Returns
    -------
    Selection
        The round: its number, the picks (id, text, strategy, score, cluster), where they were
        written, whether the round was reused, and the strategy's diagnostics (``info``).

    Raises
    ------
    InvalidInputError
        An unknown strategy or keyword, a bad seed, budget, ``classes`` or ``output`` name.
    PoolExhaustedError
        ``budget`` is larger than the rows left to pick.
    LabelsError
        ``labels`` cannot be read or names ids not in the pool.
    PoolNotFoundError
        No pool at ``pool``.
    PoolBusyError
        Another process holds the pool's session lock.
    """
    check_seed_params(strategy, params)  # an unknown name or parameter fails before any work
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    new = _read_labels_file(p, labels)
    session = Session(p.path)
    with session.transaction("seed"):
        if classes is not None:  # declared with the round, in its transaction
            _declare(session, classes)
        new = multilabel.prepare(session, p.name, new, frames.describe(labels, "labels"), multi_label=multi_label)
        return _seed_locked(p, session, new, labels, budget, strategy, output, random_state, params)


def _seed_locked(p: Pool, session: Session, new: dict[str, str] | None, labels: PathLike | None, budget: int,
                 strategy: str, output: PathLike | None, random_state: int, params: dict[str, Any]) -> Selection:
    known, merge_info = _labels_into_session(session, new, labels)
    # stored labels count too, with or without --labels; none: no id -> row map of the whole pool
    labeled_rows = p.rows_of(sorted(known), source="labels") if known else np.zeros(0, dtype=np.int64)
    check_budget(budget, p.n - labeled_rows.size)
    key = params_key({"kind": "seed", "strategy": strategy, "budget": budget, "seed": random_state,
                      "labeled": sorted(p.ids[labeled_rows].tolist()), "params": params})

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        res = seed_select(strategy, p.embeddings, budget, index=p.index, labeled=labeled_rows, random_state=random_state,
                          **params)
        frame = pd.DataFrame({"id": p.ids[res.indices], "text": p.texts[res.indices], "strategy": strategy,
                              "score": res.scores, "cluster": res.clusters})
        return frame, {**res.info, **merge_info, **_blocks_note(p)}

    return _finish_round(p, session, "seed", strategy, key, {"budget": budget, "random_state": random_state,
                        "n_labeled": int(labeled_rows.size), "params": params}, compute, output)


def _blocks_note(p: Pool) -> dict[str, str]:
    """Say when a pool is read block by block because it exceeds the RAM cap."""
    if not p.read_in_blocks:
        return {}
    return {"read_in_blocks": f"{format_bytes(p.n * p.dim * 4)} of embeddings exceed the RAM cap "
                              f"({format_bytes(ram_cap())}; set FMAL_MAX_RAM): read block by block, never whole"}


def _probe_and_candidates(p: Pool, task: str, labeled_rows: np.ndarray, y: np.ndarray, excluded: np.ndarray, spec: Any,
                          budget: int, class_weight: str | None, random_state: int) -> tuple[LinearProbe, np.ndarray]:
    """The fitted probe and the sorted candidate rows. ``knn:K``: the neighbour search (BLAS, FAISS:
    no GIL) runs on a second thread while this one imports scikit-learn (0.9 s) and fits the probe.
    That thread imports nothing (the index is loaded first); one BLAS thread is set around both."""
    index, X = (p.index if spec.kind == "knn" else None), p.embeddings
    with single_blas(), ThreadPoolExecutor(1) as ex:
        near = ex.submit(knn_candidates, index, X, labeled_rows, excluded, spec.k, budget) if index is not None else None
        probe_cls = multilabel.probe_class(task)  # scikit-learn is imported here
        probe = probe_cls(class_weight=class_weight, random_state=random_state).fit(np.asarray(X[labeled_rows]), y)
        cand = near.result() if near is not None else np.nonzero(~excluded)[0]
    return probe, cand


PROBES = "probes"


def _probe_path(pool: Pool, round_no: int) -> Path:
    return pool.path / PROBES / f"round-{round_no:03d}.json"


def _stop_info(pool: Pool, session: Session, probe: LinearProbe, n_labels: int) -> dict[str, Any]:
    """Agreement of the previous query round's stored probe and ``probe`` on the fixed sample."""
    prev = [r for r in session.rounds if r.kind == "query" and _probe_path(pool, r.round).exists()]
    if not prev:
        return {"stop_advice": stop_advice([])}
    if prev[-1].info.get("n_labels") == n_labels:
        return {"stop_advice": f"no new labels since round {prev[-1].round}: label its picks, then query again"}
    from fmal.probe_multilabel import load_probe

    old = load_probe(_probe_path(pool, prev[-1].round), n_features=pool.dim)  # single- or multi-label
    rows = stop_sample(pool.n)
    X = np.asarray(pool.embeddings[rows])
    earlier = [r.stop_kappa for r in prev if r.stop_kappa is not None]
    sig = stop_signal(old.predict(X), probe.predict(X), earlier)
    return {"stop_compared_with_round": prev[-1].round, "stop_agreement": round(sig.agreement, 4),
            "stop_kappa": round(sig.kappa, 4), "stop_advice": sig.advice}


def query(
    pool: str | PathLike,
    labels: PathLike | frames.LabelsLike | None,
    budget: int,
    strategy: str = DEFAULT_QUERY_STRATEGY,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    random_state: int = 0,
    allow_requeue: bool = False,
    candidates: str = "all",
    class_weight: str | None = None,
    multi_label: bool = False,
    **params: Any,
) -> Selection:
    """Fit a linear probe on the labels so far and pick the rows it is least sure about.

    Every label the pool holds counts (``labels`` are merged in first, in the round's
    transaction). Labeled rows are never picked; rows queued by earlier rounds and not yet labeled
    are skipped unless ``allow_requeue``. The picks carry the probe's suggested label and its
    probability; the fitted probe is stored as ``probes/round-NNN.json`` and compared with the
    previous query round's probe on a fixed sample of the pool (the stopping signal,
    ``Selection.stop``). The same arguments and labels give the same picks, and rerunning the
    last round reuses it.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    labels : path, DataFrame, dict, ... or None
        New labels (id and label columns, :func:`fmal.frames.labels_mapping`; rows with an empty
        label are skipped), merged into the pool's labels; None: the stored labels only.
    budget : int
        How many rows to pick: at least 1, at most the rows neither labeled nor queued.
    strategy : str
        A name in ``fmal.QUERY_STRATEGIES`` (default ``fmal.api.DEFAULT_QUERY_STRATEGY``).
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    output : path, optional
        A copy of the picks (.csv, .tsv, .jsonl or .parquet), never deleted by ``undo``.
    random_state : int
        Seed of ties, random strategies and the probe.
    allow_requeue : bool
        Allow picking rows queued in earlier rounds and not labeled yet.
    candidates : str
        The rows scored: ``"all"``, or ``"knn:K"``: the K nearest neighbours of the labeled rows
        (SEALS), fast on big pools.
    class_weight : {"balanced"}, optional
        Reweight classes by inverse frequency in the probe.
    multi_label : bool
        Make the pool multi-label (recorded; :mod:`fmal.multilabel`): a multi-label pool fits a
        one-vs-rest probe and runs the multi-label strategies (mean-margin, max-entropy, auto,
        random).
    **params
        The strategy's own keywords; an unknown one is an error naming the accepted ones.

    Returns
    -------
    Selection
        The round: its number, the picks (id, text, strategy, score, predicted_label,
        predicted_proba), where they were written, whether the round was reused, the probe's
        measures (``info``: C, cross-validated accuracy, class counts) and ``stop``.

    Raises
    ------
    InvalidInputError
        An unknown strategy or keyword, a bad seed, ``candidates``, ``class_weight``, budget or
        ``output`` name.
    LabelsError
        The pool has no labels (pass ``labels``), a single class, or ``labels`` names ids not in
        the pool.
    PoolExhaustedError
        ``budget`` is larger than the rows left to pick.
    PoolNotFoundError
        No pool at ``pool``.
    PoolBusyError
        Another process holds the pool's session lock.
    """
    fn = QUERY_STRATEGIES.get(strategy)
    QUERY_STRATEGIES.check(strategy, params)  # an unknown parameter fails before any work
    spec = parse_candidates(candidates)
    random_state = check_seed(random_state)
    check_class_weight(class_weight)  # here, not by the probe: scikit-learn is imported only to fit one
    p = open_pool(pool, index_dir)
    new = _read_labels_file(p, labels)
    session = Session(p.path)
    with session.transaction("query"):
        new = multilabel.prepare(session, p.name, new, frames.describe(labels, "labels"), multi_label=multi_label)
        params = multilabel.query_params(session.task, strategy, params)
        return _query_locked(p, session, new, labels, budget, strategy, output, random_state, allow_requeue, spec,
                             candidates, class_weight, fn, params)


def _query_locked(p: Pool, session: Session, new: dict[str, str] | None, labels: PathLike | None, budget: int,
                  strategy: str, output: PathLike | None, random_state: int, allow_requeue: bool, spec: Any,
                  candidates: str, class_weight: str | None, fn: Callable[..., Any], params: dict[str, Any]) -> Selection:
    known, merge_info = _labels_into_session(session, new, labels)
    if not known:
        raise LabelsError(f"pool {p.name!r} has no labeled rows yet; pass labels (id,label columns: a file or a table)",
                          param="labels")
    ids_sorted = sorted(known)
    labeled_rows = p.rows_of(ids_sorted, source="labels")
    y = np.asarray([known[i] for i in ids_sorted])
    excluded = np.zeros(p.n, dtype=bool)
    excluded[labeled_rows] = True
    if not allow_requeue:
        queued = p.in_pool(session.queued())
        if queued:
            excluded[p.rows_of(queued, source="session")] = True
    n_free = int(p.n - excluded.sum())
    check_budget(budget, n_free, what="rows neither labeled nor queued" if not allow_requeue else "unlabeled rows")
    key = params_key({"kind": "query", "strategy": strategy, "budget": budget, "seed": random_state,
                      "labels": [(i, known[i]) for i in ids_sorted], "requeue": allow_requeue, "params": params,
                      "candidates": candidates, "class_weight": class_weight})

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        round_no = session.next_round
        multi = session.task == multilabel.MULTI  # multi-label hook: a one-vs-rest probe, per-class probabilities
        probe, cand = _probe_and_candidates(p, session.task, labeled_rows, y, excluded, spec, budget, class_weight,
                                            random_state)
        proba = _proba_batched(probe, p.embeddings, cand)
        ctx = QueryContext(X=p.embeddings, candidates=cand, proba=proba, classes=probe.classes_,
                           labeled=labeled_rows, index=p.index if spec.kind == "knn" else None, probe=probe,
                           random_state=random_state,  # a full scan needs no index: not loading it saves N x d x 4 bytes
                           labels=y, origin=origins_of(ids_sorted, session.rounds))  # which labels were random picks
        res = fn(ctx, budget, **params)
        pos = np.searchsorted(cand, res.indices)
        pick_proba = proba[pos]
        pred_label, pred_p = (multilabel.predicted_sets(pick_proba, probe.classes_) if multi else
                              (probe.classes_[pick_proba.argmax(axis=1)], pick_proba.max(axis=1)))
        frame = pd.DataFrame({"id": p.ids_of(res.indices), "text": p.texts_of(res.indices), "strategy": strategy,
                              "score": res.scores, "predicted_label": pred_label,
                              "predicted_proba": np.round(pred_p.astype(np.float64), 4)})
        if res.is_random is not None:  # recorded with the round: the next adaptive round reads it
            frame["random_pick"] = np.asarray(res.is_random, dtype=bool)
        stop = _stop_info(p, session, probe, int(y.size))
        probe.save(_probe_path(p, round_no))
        session.record_file(_probe_path(p, round_no), round_no, "probe", owned=True)
        crash_point("query.probe-written")
        measured = {**res.info, **merge_info, "n_labels": int(y.size), "class_counts": probe.class_counts_,
                    "probe_C": probe.C_, **multilabel.cv_info(probe),
                    "candidates_scored": int(cand.size), **stop,
                    "probe_file": str(_probe_path(p, round_no)), **_blocks_note(p)}
        return frame, measured

    return _finish_round(p, session, "query", strategy, key, {"budget": budget, "random_state": random_state,
                        "n_labeled": int(labeled_rows.size), "params": params, "candidates": candidates}, compute, output)


def undo(pool: str | PathLike, *, index_dir: PathLike | None = None) -> UndoResult:
    """Undo the last round: its picks are no longer queued; labels are kept.

    One transaction removes the round from the session and deletes the files the pool wrote for
    it (its ``rounds/`` view, its stored probe: recorded in the database, inside the pool folder).
    A user's own ``output`` copy is never deleted. ``fmal query --undo`` runs this.

    Parameters
    ----------
    pool : str or path
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).

    Returns
    -------
    UndoResult
        The round removed (number, kind, strategy, picks) and the files removed with it.

    Raises
    ------
    InvalidInputError
        The pool has no rounds.
    PoolNotFoundError
        No pool at ``pool``.
    PoolBusyError
        Another process holds the pool's session lock.
    """
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    rec = session.undo_last_round()
    if rec is None:
        raise InvalidInputError(f"pool {p.name!r} has no rounds to undo")
    return UndoResult(rec.round, rec.kind, rec.strategy, rec.n_picks, list(session.removed_files))
