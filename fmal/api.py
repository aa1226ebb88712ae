"""The operations of fmal, one function per CLI command. The CLI only parses, calls one of these,
and prints what it returns."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmal import encoders as fmal_encoders
from fmal import store
from fmal._validation import check_budget, check_positive
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import load_texts, read_labels, write_table
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.seed import SEED_STRATEGIES
from fmal.session import Session, params_key
from fmal.simulate import SimulationResult, simulate  # noqa: F401  (fmal simulate lives in its own module)

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
DEFAULT_SEED_STRATEGY = "typiclust"
DEFAULT_QUERY_STRATEGY = "margin"


# ----------------------------------------------------------------------------- embed


@dataclass(frozen=True)
class EmbedResult:
    """What ``embed`` did: where the pool is, how many rows, and how much work was (re)done."""

    pool_path: Path
    n_rows: int
    n_unique: int
    n_embedded: int
    n_chunks_reused: int
    skipped: bool
    seconds: float
    model: str
    dim: int


def embed(
    input: PathLike,
    pool: str,
    *,
    index_dir: PathLike | None = None,
    text_col: str = "text",
    id_col: str | None = None,
    model: PathLike | None = None,
    batch_size: int = 64,
    chunk_size: int = 2048,
    overwrite: bool = False,
    trust_remote_code: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> EmbedResult:
    """Read ``input``, embed its texts (each distinct text once) and write the pool folder.

    Resumes an interrupted run with the same arguments; a finished pool built from the same input
    and model is left as it is (``skipped=True``).
    """
    t0 = time.perf_counter()
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(chunk_size, "chunk_size", integer=True)
    path = store.pool_path(pool, index_dir)
    table = load_texts(input, text_col=text_col, id_col=id_col)
    name, folder = fmal_encoders.resolve_model(model)
    if not overwrite and folder is not None:
        # cheap no-op check before loading the model: a local model's fingerprint is its files' hash
        m = store.check_existing(path, table, name, fmal_encoders.fingerprint_folder(folder))
        if m is not None:
            return EmbedResult(path, m["n_rows"], m["n_unique_texts"], 0, 0, True, time.perf_counter() - t0, name, m["dim"])
    encoder = fmal_encoders.load_encoder(model, trust_remote_code=trust_remote_code)
    if on_start:
        on_start(len(table))
    res = store.build_pool(
        table, encoder, path, batch_size=batch_size, chunk_size=chunk_size, overwrite=overwrite, on_progress=on_progress
    )
    return EmbedResult(
        path, res.n_rows, res.n_unique, res.n_embedded, res.n_chunks_reused, res.skipped,
        time.perf_counter() - t0, encoder.name, encoder.dim,
    )


# ----------------------------------------------------------------------------- selections


@dataclass
class Selection:
    """One round of picks: the rows to send to annotators, and why they were chosen."""

    round: int
    kind: str
    strategy: str
    picks: pd.DataFrame
    output: Path
    reused: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return self.picks["id"].tolist()


def _labels_into_session(pool: store.Pool, session: Session, labels: PathLike | None) -> tuple[dict[str, str], dict[str, Any]]:
    """Read a labels file (if any), check its ids belong to the pool, merge it into the session."""
    if labels is None:
        return session.labels, {}
    new = read_labels(labels)
    pool.rows_of(list(new), source=str(labels))
    merge = session.add_labels(new, source=str(labels))
    return session.labels, {"labels_added": merge.added, "labels_changed": merge.changed, "labels_in_file": len(new)}


def _default_output(pool: store.Pool, round_no: int, kind: str, strategy: str) -> Path:
    return pool.path / "rounds" / f"round-{round_no:03d}-{kind}-{strategy}.csv"


def _frame_of_round(pool: store.Pool, rec: dict[str, Any]) -> pd.DataFrame:
    """Rebuild a round's picks table from the session (texts come from the pool)."""
    rows = pool.rows_of(rec["ids"], source="session")
    cols = {"id": rec["ids"], "text": pool.texts[rows], **rec["columns"], "round": rec["round"]}
    return pd.DataFrame(cols)


def _finish_round(
    pool: store.Pool,
    session: Session,
    kind: str,
    strategy: str,
    key: str,
    record: dict[str, Any],
    compute: Callable[[], tuple[pd.DataFrame, dict[str, Any]]],
    output: PathLike | None,
) -> Selection:
    """Reuse the last round when it had the same parameters (a rerun), else compute and record one.

    The picks table is written to ``output`` (atomically) before the round is recorded.
    """
    if output is not None and Path(output).suffix.lower() not in {".csv", ".jsonl", ".tsv", ".parquet"}:
        raise InvalidInputError(f"--output {output}: use a .csv, .tsv, .jsonl or .parquet file name")
    prev = session.last_round_like(key)
    if prev is not None:
        frame = _frame_of_round(pool, prev)
        out = Path(output) if output else _default_output(pool, prev["round"], kind, strategy)
        write_table(frame, out)
        return Selection(prev["round"], kind, strategy, frame, out, True, prev.get("info", {}))
    frame, info = compute()
    round_no = len(session.rounds) + 1
    frame["round"] = round_no
    out = Path(output) if output else _default_output(pool, round_no, kind, strategy)
    write_table(frame, out)
    columns = {c: [None if pd.isna(v) else v for v in frame[c].tolist()] for c in frame.columns if c not in {"id", "text", "round"}}
    session.add_round({"kind": kind, "strategy": strategy, "key": key, **record, "ids": frame["id"].tolist(),
                       "columns": columns, "output": str(out), "info": info})
    return Selection(round_no, kind, strategy, frame, out, False, info)


def seed(
    pool: str | PathLike,
    budget: int,
    strategy: str = DEFAULT_SEED_STRATEGY,
    *,
    index_dir: PathLike | None = None,
    labels: PathLike | None = None,
    output: PathLike | None = None,
    random_state: int = 0,
    **params: Any,
) -> Selection:
    """Choose a cold-start set of ``budget`` rows with a seed strategy (no labels needed).

    With ``labels``, the labeled rows count as already chosen. The selection is written to
    ``output`` (default: the pool's ``rounds/`` folder) and recorded as a round of the session;
    the same arguments give the same selection, and rerunning the last round reuses it.
    """
    fn = SEED_STRATEGIES.get(strategy)
    p = store.open_pool(pool, index_dir)
    session = Session(p.path)
    known, merge_info = _labels_into_session(p, session, labels)
    labeled_rows = p.rows_of(sorted(known)) if labels is not None else np.zeros(0, dtype=np.int64)
    check_budget(budget, p.n - labeled_rows.size)
    key = params_key({"kind": "seed", "strategy": strategy, "budget": budget, "seed": random_state,
                      "labeled": sorted(p.ids[labeled_rows].tolist()), "params": params})

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        res = fn(p.embeddings, budget, index=p.index, labeled=labeled_rows, random_state=random_state, **params)
        frame = pd.DataFrame({"id": p.ids[res.indices], "text": p.texts[res.indices], "strategy": strategy,
                              "score": res.scores, "cluster": res.clusters})
        return frame, {**res.info, **merge_info}

    return _finish_round(p, session, "seed", strategy, key, {"budget": budget, "random_state": random_state,
                        "n_labeled": int(labeled_rows.size), "params": params}, compute, output)


def _proba_batched(probe: LinearProbe, X: np.ndarray, rows: np.ndarray, batch: int = 65536) -> np.ndarray:
    out = np.empty((rows.size, probe.classes_.size), dtype=np.float32)
    for s in range(0, rows.size, batch):
        out[s : s + batch] = probe.predict_proba(np.asarray(X[rows[s : s + batch]]))
    return out


def query(
    pool: str | PathLike,
    labels: PathLike | None,
    budget: int,
    strategy: str = DEFAULT_QUERY_STRATEGY,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    random_state: int = 0,
    allow_requeue: bool = False,
    **params: Any,
) -> Selection:
    """Fit a linear probe on every label the pool has (``labels`` are merged in first), score the
    unlabeled rows with ``strategy`` and pick the next ``budget`` rows.

    Labeled rows are never picked; rows queued by earlier rounds and not yet labeled are skipped
    unless ``allow_requeue``. The picks carry the probe's suggested label and its probability.
    """
    fn = QUERY_STRATEGIES.get(strategy)
    p = store.open_pool(pool, index_dir)
    session = Session(p.path)
    known, merge_info = _labels_into_session(p, session, labels)
    if not known:
        raise LabelsError(f"pool {p.name!r} has no labels yet; pass --labels FILE with id,label columns")
    ids_sorted = sorted(known)
    labeled_rows = p.rows_of(ids_sorted, source="labels")
    y = np.asarray([known[i] for i in ids_sorted])
    excluded = np.zeros(p.n, dtype=bool)
    excluded[labeled_rows] = True
    if not allow_requeue:
        queued = [i for i in session.queued() if i in set(p.ids)]
        if queued:
            excluded[p.rows_of(queued, source="session")] = True
    candidates = np.nonzero(~excluded)[0]
    check_budget(budget, candidates.size, what="rows neither labeled nor queued" if not allow_requeue else "unlabeled rows")
    key = params_key({"kind": "query", "strategy": strategy, "budget": budget, "seed": random_state,
                      "labels": [(i, known[i]) for i in ids_sorted], "requeue": allow_requeue, "params": params})

    def compute() -> tuple[pd.DataFrame, dict[str, Any]]:
        probe = LinearProbe(random_state=random_state).fit(np.asarray(p.embeddings[labeled_rows]), y)
        proba = _proba_batched(probe, p.embeddings, candidates)
        ctx = QueryContext(X=p.embeddings, candidates=candidates, proba=proba, classes=probe.classes_,
                           labeled=labeled_rows, index=p.index, probe=probe, random_state=random_state)
        res = fn(ctx, budget, **params)
        pos = np.searchsorted(candidates, res.indices)
        pick_proba = proba[pos]
        frame = pd.DataFrame({"id": p.ids[res.indices], "text": p.texts[res.indices], "strategy": strategy,
                              "score": res.scores, "predicted_label": probe.classes_[pick_proba.argmax(axis=1)],
                              "predicted_proba": pick_proba.max(axis=1).round(4)})
        info = {**res.info, **merge_info, "n_labels": int(y.size), "class_counts": probe.class_counts_,
                "probe_C": probe.C_, "probe_cv_accuracy": None if np.isnan(probe.cv_accuracy_) else round(probe.cv_accuracy_, 4)}
        return frame, info

    return _finish_round(p, session, "query", strategy, key, {"budget": budget, "random_state": random_state,
                        "n_labeled": int(labeled_rows.size), "params": params}, compute, output)


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class PoolStatus:
    """A pool's manifest, label count and round history."""

    path: Path
    manifest: dict[str, Any]
    n_labels: int
    rounds: pd.DataFrame


def status(pool: str | PathLike, *, index_dir: PathLike | None = None) -> PoolStatus:
    """Describe a pool and its session: rows, model, index, labels and rounds so far."""
    p = store.open_pool(pool, index_dir)
    s = Session(p.path)
    rows = [{"round": r["round"], "kind": r["kind"], "strategy": r["strategy"], "picks": len(r["ids"]),
             "labels_then": r.get("n_labeled", 0), "created": r["created"]} for r in s.rounds]
    return PoolStatus(p.path, p.manifest, len(s.labels), pd.DataFrame(rows))
