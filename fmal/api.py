"""The operations of fmal, one function per CLI command. The CLI only parses, calls one of these,
and prints what it returns."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fmal import encoders as fmal_encoders
from fmal import index as fmal_index
from fmal.engines import ENGINES
from fmal import frames, images, multilabel
from fmal.pool import BuildSettings, Manifest, Pool, open_pool, pool_path, read_manifest
from fmal.pool import check as pool_check
from fmal.pool.build import build_pool, build_pool_from_shards, check_existing
from fmal.pool.files import PARTIAL
from fmal.pool.manifest import check_index_kind, check_precision
from fmal._matrix import format_bytes, ram_cap
from fmal._validation import check_budget, check_positive, check_seed
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError, ModelMismatchError, PoolExistsError
from fmal.io import ShardList, list_shards, load_texts, write_table
from fmal.query import QUERY_STRATEGIES, QueryContext, knn_candidates, parse_candidates, stop_sample, stop_signal
from fmal.query.adaptive import origins_of
from fmal.query.stopping import advice as stop_advice
from fmal.seed import SEED_STRATEGIES  # noqa: F401  (fmal.api.SEED_STRATEGIES: the CLI help lists it)
from fmal.seed import check_params as check_seed_params
from fmal.seed import select as seed_select
from fmal._faults import crash_point
from fmal.session import Round, Session, params_key
from fmal.session.rounds import view_path as round_view_path
from fmal.session import backup as human_work

if TYPE_CHECKING:
    from fmal.probe import LinearProbe  # scikit-learn (0.9 s): imported by the functions that fit a probe

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
from fmal._defaults import DEFAULT_QUERY_STRATEGY, DEFAULT_SEED_STRATEGY  # noqa: E402  (in a light module: fmal --help shows them)


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
    backend: str = "torch"
    precision: str = "float32"
    max_seq_length: int | None = None
    threads: int | None = None
    engine: str = "local"
    n_shards: int = 0  # input files read by the Ray engine's workers (0: read here, by the local engine)
    repaired: tuple[str, ...] = ()  # --repair: the derived files rebuilt (empty: the pool was sound)
    labels_kept: int = 0  # --overwrite --keep-labels: labeled ids still in the new input
    labels_dropped: int = 0  # --overwrite --keep-labels --drop-labels: labeled ids gone from it (backed up)
    backup: Path | None = None  # where --overwrite put the session's files it did not keep
    source: str | None = None  # --embeddings: where the vectors came from (model "external")
    n_appended: int = 0  # --append: rows added to the pool
    n_skipped: int = 0  # --append: input rows already in the pool (same id, or same text with generated ids)
    bad_images: tuple[str, ...] = ()  # image input, bad_images="skip": "path: why" of each image left out

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


def embed(
    input: PathLike | frames.TextsLike | None,
    pool: str,
    *,
    index_dir: PathLike | None = None,
    text_col: str = "text",
    id_col: str | None = None,
    model: PathLike | None = None,
    batch_size: int = 64,
    chunk_size: int = 2048,
    overwrite: bool = False,
    repair: bool = False,
    keep_labels: bool = False,
    drop_labels: bool = False,
    trust_remote_code: bool = False,
    backend: str | None = None,
    precision: str | None = None,
    max_seq_length: int | None = None,
    threads: int | None = None,
    device: str | None = "auto",
    index: str = "auto",
    max_index_memory: str | int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    workers: int | None = None,
    on_start: Callable[[int | None], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    embeddings: Any = None,
    ids: Any = None,
    texts: Any = None,
    embedding_col: str | None = None,
    normalize: bool = True,
    append: bool = False,
    image_col: str | None = None,
    bad_images: str = "stop",
) -> EmbedResult:
    """Read ``input``, embed its texts (each distinct text once) and write the pool folder.

    Resumes an interrupted run with the same arguments; a finished pool built from the same input
    and model is left as it is (``skipped=True``). ``backend`` (torch, onnx, onnx-int8) and
    ``precision`` (float32, float16) left as None mean: the existing pool's (or the interrupted
    run's), else ``fmal.encoders.DEFAULT_BACKEND`` and float32. ``device``: auto, cpu, cuda or
    cuda:N (``fmal.encoders.resolve_device``; recorded in the manifest).

    ``engine="ray"``: Ray workers read the input (each file of a folder of shards, or the one
    file) and embed it; work is saved and resumed per shard, texts repeated across shards are
    embedded once per shard, and the pool is the local engine's. ``on_start(total)`` gets the
    row count, or None on Ray (rows are counted as they are read).

    A finished pool is checked first (files present, sizes and shapes as the manifest records,
    checksums of files changed since): a damaged one is a CorruptPoolError unless ``repair``,
    which rebuilds exactly the damaged files (embeddings through the encoder, in this process,
    resumable; the index from the embeddings; rows from the input) and keeps labels and rounds.

    ``overwrite`` on a pool with labels or rounds needs ``keep_labels`` (the labels stay; refused
    if a labeled id is not in the new input, unless ``drop_labels`` too: those labels are removed
    after a backup) or ``drop_labels`` alone (labels, rounds and probes move to
    ``backup-<time>/`` in the pool folder). Nothing a person made is deleted.

    ``embeddings``: vectors made elsewhere (an array, or an .npy / Parquet / Arrow file or folder:
    :mod:`fmal.external`) instead of texts to embed; ``ids`` (a list or a file; ``input`` may be
    that file) and ``texts`` (shown in exports) give one per row, ``embedding_col`` / ``id_col`` /
    ``text_col`` name their columns in a table file. Normalised unless ``normalize=False``.

    ``append``: add the rows of ``input`` (or ``embeddings``) that the pool lacks to the finished
    pool ``pool``, keeping every label, round and probe (:mod:`fmal.append`).

    Images (:mod:`fmal.images`): ``input`` a folder of images, one image, or a table whose
    ``image_col`` holds image paths; ``model`` a CLIP-style sentence-transformers model, run on
    torch. A bad image file stops the run unless ``bad_images="skip"`` (left out, listed in
    ``EmbedResult.bad_images``).
    """
    t0 = time.perf_counter()
    # --- images (fmal.images): the checks an image input adds
    is_images = not append and embeddings is None and images.is_image_input(input, image_col)
    if is_images:
        images.check_on_bad(bad_images)
        backend = images.check_backend(backend)
        if engine != "local":
            raise InvalidInputError("--engine ray reads text shards; embed images with --engine local")
        if max_seq_length is not None:
            raise InvalidInputError("--max-seq-length truncates texts; an image pool has none to truncate: leave it out")
    elif append and images.is_image_input(input, image_col):
        raise InvalidInputError("--append adds texts; growing an image pool is not supported yet: rebuild it with --overwrite --keep-labels")
    # ---
    if embeddings is not None or append:
        return _embed_more(input, pool, t0, index_dir=index_dir, text_col=text_col, id_col=id_col, model=model,
                           batch_size=batch_size, chunk_size=chunk_size, overwrite=overwrite, repair=repair,
                           keep_labels=keep_labels, drop_labels=drop_labels, trust_remote_code=trust_remote_code,
                           backend=backend, precision=precision, max_seq_length=max_seq_length, threads=threads,
                           index=index, max_index_memory=max_index_memory, on_start=on_start, on_progress=on_progress,
                           embeddings=embeddings, ids=ids, texts=texts, embedding_col=embedding_col, normalize=normalize,
                           append=append)
    if input is None:
        raise InvalidInputError("input: give the texts to embed (a file, folder, DataFrame or list), or embeddings=")
    if repair and overwrite:
        raise InvalidInputError("--repair keeps the pool and rebuilds its damaged files, --overwrite rebuilds it all: pass one")
    if (keep_labels or drop_labels) and not overwrite:
        raise InvalidInputError("--keep-labels and --drop-labels say what --overwrite does with the labels: pass --overwrite too")
    labels_policy = "keep" if keep_labels else "drop" if drop_labels else None
    check_positive(batch_size, "batch_size", integer=True)
    check_positive(chunk_size, "chunk_size", integer=True)
    if backend is not None:
        fmal_encoders.check_backend(backend)
    fmal_encoders.check_device(device)
    if precision is not None:
        check_precision(precision)
    check_index_kind(index)
    index_budget = fmal_index.parse_memory(max_index_memory)
    if engine not in ENGINES:
        raise InvalidInputError(f"engine must be one of [{', '.join(ENGINES)}], got {engine!r}")
    path = pool_path(pool, index_dir)
    if not overwrite:
        _refuse_texts_into_external(path)
    if overwrite:
        human_work.refuse_overwrite(path, labels_policy)  # before any heavy work
    if repair and engine == "ray":
        log.info("--repair reads and embeds the input in this process (the local engine)")
        engine = "local"
    if engine == "ray" and not frames.is_path(input):
        log.info("data given in memory is embedded in this process (the local engine)")
        engine = "local"
    # the Ray engine reads the input on its workers: here it is only listed and fingerprinted
    source = (images.load_images(input, image_col=image_col, id_col=id_col, on_bad=bad_images) if is_images
              else list_shards(input, text_col=text_col, id_col=id_col) if engine == "ray"
              else frames.texts_table(input, "input", text_col=text_col, id_col=id_col))
    bad = tuple(f"{b.path}: {b.reason}" for b in getattr(source, "bad", ()))  # images skipped (bad_images="skip")
    n_shards = len(source.files) if isinstance(source, ShardList) else 0
    if not isinstance(source, ShardList):
        fmal_index.check_trainable(len(source), index)  # before loading the model: an index that cannot be built
    kept, vanished = _labels_kept(path, input, source, text_col, id_col) if keep_labels else (0, set())
    if vanished and not drop_labels:
        raise PoolExistsError(
            f"{path}: {len(vanished)} labeled id(s) are not in {frames.describe(input, 'input')} (e.g. {sorted(vanished)[0]!r}) and --keep-labels "
            "would lose them; fix the input, or add --drop-labels to move those labels to a backup in the pool folder"
        )
    name, folder = fmal_encoders.resolve_model(model)
    if not overwrite and (backend is None or precision is None):
        backend, precision = _existing_build_settings(path, backend, precision, tolerant=repair)
    backend = backend or fmal_encoders.DEFAULT_BACKEND
    precision = precision or "float32"
    if not overwrite and folder is not None:
        # cheap no-op check before loading the model: a local model's fingerprint is its files' hash
        try:
            m = check_existing(path, source, name, fmal_encoders.fingerprint_folder(folder), backend, precision)
        except CorruptPoolError:  # an unreadable manifest: --repair rebuilds every derived file
            if not repair:
                raise
            m = None
        if m is not None and not repair:  # sizes and shapes; checksums of files newer than the manifest
            if problems := pool_check.check_pool(path, m):
                raise CorruptPoolError(pool_check.describe(path, problems, m))
            if pool_check.needs_checksum(path, m):
                pool_check.mark_verified(path)
            return EmbedResult(path, m.n_rows, m.n_unique_texts, 0, 0, True, time.perf_counter() - t0, name,
                               m.dim, backend, precision, m.model.max_seq_length, m.model.threads, engine, n_shards,
                               bad_images=bad)
    encoder_kwargs = {"model": None if model is None else str(model), "trust_remote_code": trust_remote_code,
                      "backend": backend, "max_seq_length": max_seq_length, "threads": threads, "device": device}
    if is_images:  # a CLIP model embeds the images under the input's root
        encoder = fmal_encoders.load_image_encoder(encoder_kwargs["model"], root=source.root,
                                                   trust_remote_code=trust_remote_code, threads=threads)
    else:
        encoder = fmal_encoders.load_encoder(**encoder_kwargs)
    if not isinstance(source, ShardList):  # say now, not after embedding, when the index departs from the budget
        note = fmal_index.choose_index(len(source), encoder.dim, index, index_budget).note
        if note:
            log.warning("%s", note)
    backup = human_work.drop_vanished(path, vanished) if vanished else None  # the model loaded: the build goes ahead
    settings = BuildSettings(batch_size=batch_size, chunk_size=chunk_size, index_kind=index, max_index_memory=index_budget,
                             precision=precision, overwrite=overwrite, labels=labels_policy)
    if isinstance(source, ShardList):
        from fmal.engines.ray_engine import RayEngine

        if on_start:
            on_start(None)  # rows are counted as the workers read them
        ray_engine = RayEngine(encoder_kwargs, batch_size=batch_size, address=ray_address, workers=workers)
        res = build_pool_from_shards(source, encoder, path, settings, engine=ray_engine, on_progress=on_progress)
    else:
        if on_start:
            on_start(len(source))
        res = build_pool(source, encoder, path, settings, repair=repair, on_progress=on_progress)
    return EmbedResult(
        path, res.n_rows, res.n_unique, res.n_embedded, res.n_chunks_reused, res.skipped,
        time.perf_counter() - t0, encoder.name, encoder.dim, backend, precision, encoder.max_seq_length, encoder.threads,
        engine, n_shards, res.repaired, kept, len(vanished), backup or res.backup, bad_images=bad,
    )


def _refuse_texts_into_external(path: Path) -> None:
    """A pool of embeddings made elsewhere has no encoder: texts cannot be embedded into it."""
    from fmal import external

    try:
        m = read_manifest(path)
    except CorruptPoolError:
        return
    if m is not None and external.is_external(m):
        src = m.model.source
        raise ModelMismatchError(
            f"{path}: pool holds embeddings made outside fmal ({src}); fmal has no encoder for it: add vectors with "
            f"fmal embed --embeddings FILE --ids FILE --pool {path.name} --append, or rebuild it with --overwrite"
        )


def _embed_more(input: Any, pool: str, t0: float, *, index_dir: PathLike | None, text_col: str, id_col: str | None,
                overwrite: bool, repair: bool, keep_labels: bool, drop_labels: bool, precision: str | None, index: str,
                max_index_memory: str | int | None, on_start: Callable[[int | None], None] | None,
                on_progress: Callable[[int], None] | None, embeddings: Any, ids: Any, texts: Any,
                embedding_col: str | None, normalize: bool, append: bool, **encoder_kwargs: Any) -> EmbedResult:
    """``embed`` with vectors made elsewhere (``embeddings``) and/or onto a finished pool (``append``)."""
    from fmal import append as fmal_append
    from fmal import external

    if (keep_labels or drop_labels) and not overwrite:
        raise InvalidInputError("--keep-labels and --drop-labels say what --overwrite does with the labels: pass --overwrite too")
    if append and (overwrite or repair):
        raise InvalidInputError("--append adds rows to the pool as it is: leave out --overwrite and --repair")
    if precision is not None:
        check_precision(precision)
    check_index_kind(index)
    fmal_index.parse_memory(max_index_memory)  # a bad budget fails before any reading
    path = pool_path(pool, index_dir)
    if overwrite:
        human_work.refuse_overwrite(path, "keep" if keep_labels else "drop" if drop_labels else None)
    if embeddings is not None and input is not None and ids is not None:
        raise InvalidInputError("give the ids once: as --ids FILE (ids=) or as the INPUT file, not both")
    if append:
        return fmal_append.append(input, path, t0, text_col=text_col, id_col=id_col, embeddings=embeddings,
                                  ids=ids if ids is not None else input if embeddings is not None else None, texts=texts,
                                  embedding_col=embedding_col, normalize=normalize, on_start=on_start,
                                  on_progress=on_progress, **encoder_kwargs)
    src = external.open_source(embeddings, ids=ids if ids is not None else input, texts=texts, id_col=id_col,
                               text_col=text_col, embedding_col=embedding_col)
    if keep_labels and (gone := human_work.labeled_ids(path) - set(src.ids)) and not drop_labels:
        raise PoolExistsError(
            f"{path}: {len(gone)} labeled id(s) are not in {src.path} (e.g. {sorted(gone)[0]!r}) and --keep-labels "
            "would lose them; fix the ids, or add --drop-labels to move those labels to a backup in the pool folder"
        )
    backup = human_work.drop_vanished(path, human_work.labeled_ids(path) - set(src.ids)) if keep_labels and drop_labels else None
    started = False

    def progress(done: int) -> None:  # the bar starts once the first block passed its checks
        nonlocal started
        if not started and on_start:
            on_start(src.n)
        started = True
        if on_progress:
            on_progress(done)

    res = external.build(src, path, normalize=normalize, precision=precision or "float32", index_kind=index,
                         max_index_memory=max_index_memory, overwrite=overwrite,
                         labels="keep" if keep_labels else "drop" if drop_labels else None, repair=repair,
                         on_progress=progress)
    m = read_manifest(path)
    return EmbedResult(path, res.n_rows, m.n_unique_texts if m else res.n_rows, res.n_written, int(res.resumed), res.skipped,
                       time.perf_counter() - t0, external.MODEL_NAME, src.dim, external.MODEL_NAME,
                       m.precision if m else precision or "float32", None, None, "local", 0, res.repaired,
                       len(human_work.labeled_ids(path)) if keep_labels else 0, 0, backup or res.backup, str(src.path))


def _labels_kept(path: Path, input: PathLike, source: Any, text_col: str, id_col: str | None) -> tuple[int, set[str]]:
    """For --overwrite --keep-labels: (labeled ids still in the new input, labeled ids gone from it).
    The Ray engine's input is read here for its ids."""
    ids = source.ids if not isinstance(source, ShardList) else load_texts(input, text_col=text_col, id_col=id_col).ids
    labeled = human_work.labeled_ids(path)
    gone = labeled - set(ids)
    return len(labeled) - len(gone), gone


def _existing_build_settings(
    path: Path, backend: str | None, precision: str | None, *, tolerant: bool = False
) -> tuple[str | None, str | None]:
    """Fill an unset backend / precision from the finished pool at ``path``, or from its
    interrupted run, so a plain rerun neither fails nor mixes backends (``tolerant``: an
    unreadable manifest counts as none, for --repair)."""
    try:
        m = read_manifest(path)
    except CorruptPoolError:
        if not tolerant:
            raise
        m = None
    if m is not None:
        return backend or m.backend, precision or m.precision
    try:
        progress = json.loads((path / PARTIAL / "progress.json").read_text(encoding="utf-8"))
        found = progress.get("backend")
        return backend or (found if found in fmal_encoders.BACKENDS else None), precision
    except (OSError, ValueError, AttributeError):
        return backend, precision


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

    @property
    def stop(self) -> dict[str, Any]:
        """The stopping signal of a query round (advice, agreement, kappa, compared_with_round); {} for seeds."""
        return {k[len("stop_"):]: v for k, v in self.info.items() if k.startswith("stop_")}

    def to_frame(self) -> pd.DataFrame:
        """The picks, one row each, with every column (a copy)."""
        return self.picks.copy()

    def to_dict(self) -> dict[str, Any]:
        """The round as plain values (``fmal seed/query --json``): its fields, the picks, ``stop``."""
        return {"round": self.round, "kind": self.kind, "strategy": self.strategy, "reused": self.reused,
                "output": str(self.output), "n_picks": len(self.picks), "ids": self.ids, "picks": self.picks,
                "info": self.info, "stop": self.stop or None}


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
        raise InvalidInputError(f"--output {output}: use a .csv, .tsv, .jsonl or .parquet file name")
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
    """Choose a cold-start set of ``budget`` rows with a seed strategy (no labels needed).

    Rows labeled so far (stored in the pool, and ``labels``) count as already chosen. The selection is written to
    ``output`` (default: the pool's ``rounds/`` folder) and recorded as a round of the session;
    the same arguments give the same selection, and rerunning the last round reuses it.
    ``classes`` ("A,B,C" or a list) declares the pool's label set, stored with the pool.
    ``multi_label`` makes the pool multi-label (recorded; :mod:`fmal.multilabel`).
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
    labeled_rows = p.rows_of(sorted(known), source="labels")  # stored labels count too, with or without --labels
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


def _proba_batched(probe: LinearProbe, X: np.ndarray, rows: np.ndarray, batch: int = 65536) -> np.ndarray:
    """Class probabilities of the sorted ``rows`` of ``X``. When they are most of the pool, contiguous
    blocks are scored whole and the rows kept: gathering 100k scattered rows of a memory-mapped pool
    cost 5x the CPU of streaming it (0.28 s against 0.05 s, 100k x 384)."""
    out = np.empty((rows.size, probe.classes_.size), dtype=np.float32)
    if 2 * rows.size < X.shape[0]:
        for s in range(0, rows.size, batch):
            out[s : s + batch] = probe.predict_proba(np.asarray(X[rows[s : s + batch]]))
        return out
    for s in range(0, X.shape[0], batch):
        lo, hi = np.searchsorted(rows, (s, s + batch))
        if hi > lo:
            out[lo:hi] = probe.predict_proba(X[s : s + batch])[rows[lo:hi] - s]
    return out


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
    """Fit a linear probe on every label the pool has (``labels`` are merged in first), score the
    unlabeled rows with ``strategy`` and pick the next ``budget`` rows.

    Labeled rows are never picked; rows queued by earlier rounds and not yet labeled are skipped
    unless ``allow_requeue``. ``candidates="knn:K"`` scores only the K nearest neighbours of the
    labeled rows (SEALS) instead of ``"all"`` rows. The picks carry the probe's suggested label
    and its probability; the fitted probe is stored as ``probes/round-NNN.json`` and compared with
    the previous round's probe on a fixed sample of the pool (the stopping signal, in ``info``).
    A multi-label pool (``multi_label`` makes one: :mod:`fmal.multilabel`) fits a one-vs-rest
    probe and runs the multi-label strategies (mean-margin, max-entropy, auto, random).
    """
    from fmal.probe import LinearProbe

    fn = QUERY_STRATEGIES.get(strategy)
    QUERY_STRATEGIES.check(strategy, params)  # an unknown parameter fails before any work
    spec = parse_candidates(candidates)
    random_state = check_seed(random_state)
    LinearProbe(class_weight=class_weight)._check_params()
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
        raise LabelsError(f"pool {p.name!r} has no labels yet; pass --labels FILE with id,label columns")
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
        probe_cls = multilabel.probe_class(session.task)
        probe = probe_cls(class_weight=class_weight, random_state=random_state).fit(np.asarray(p.embeddings[labeled_rows]), y)
        if spec.kind == "knn":
            cand = knn_candidates(p.index, p.embeddings, labeled_rows, excluded, spec.k, budget)
        else:
            cand = np.nonzero(~excluded)[0]
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
        frame = pd.DataFrame({"id": p.ids[res.indices], "text": p.texts[res.indices], "strategy": strategy,
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


@dataclass(frozen=True)
class UndoResult:
    """The round that was removed from the session, and the files removed with it."""

    round: int
    kind: str
    strategy: str
    n_picks: int
    removed_files: list[Path]

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


def undo(pool: str | PathLike, *, index_dir: PathLike | None = None) -> UndoResult:
    """Remove the last round from the session in one transaction: its picks are no longer queued,
    and the files the pool wrote for it (its ``rounds/`` view, its stored probe: recorded in the
    database, inside the pool folder) are deleted. A user's own ``--output`` copy is never
    deleted. Labels are kept."""
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    rec = session.undo_last_round()
    if rec is None:
        raise InvalidInputError(f"pool {p.name!r} has no rounds to undo")
    return UndoResult(rec.round, rec.kind, rec.strategy, rec.n_picks, list(session.removed_files))


# ----------------------------------------------------------------------------- status


@dataclass(frozen=True)
class PoolStatus:
    """A pool's manifest, label count and round history."""

    path: Path
    manifest: Manifest
    n_labels: int
    rounds: pd.DataFrame
    advice: str | None = None  # the last query round's stopping recommendation
    task: str = "single-label"  # or multi-label (fmal.multilabel)

    def to_frame(self) -> pd.DataFrame:
        """The rounds, one row each (a copy)."""
        return self.rounds.copy()


def status(pool: str | PathLike, *, index_dir: PathLike | None = None) -> PoolStatus:
    """Describe a pool and its session: rows, model, index, labels and rounds so far (each round's
    labels per class, probe C and cross-validated accuracy, and the stopping signal for query rounds)."""
    from fmal.describe import status_rows

    st = status_rows(pool, index_dir=index_dir)
    return PoolStatus(st.path, st.manifest, st.n_labels, pd.DataFrame(st.rounds), st.advice, st.task)


# ----------------------------------------------------------------------------- the annotation loop
# export -> (annotators) -> import-labels; audit; report   (fmal.export, fmal.audit, fmal.report)

from fmal.audit import DEFAULT_FOLDS, LabelAudit, audit_info, audit_labels  # noqa: E402
from fmal.report import DEFAULT_CLUSTERS, DEFAULT_RARE_RATIO, BiasReport, class_balance, rounds_balance, unlabeled_clusters  # noqa: E402
from fmal.report import write as write_report  # noqa: E402
from fmal.export import FORMATS, Answer, Disagreement  # noqa: E402
from fmal.export.base import Answers  # noqa: E402
from fmal.seed.clustering import kmeans as fmal_seed_kmeans  # noqa: E402
from fmal.session import LabelConflict  # noqa: E402


def _check_output(fmt_name: str, output: PathLike | None, default: Path) -> Path:
    fmt = FORMATS.get(fmt_name)
    out = Path(output) if output is not None else default.with_suffix(fmt.suffixes[0])
    if out.suffix.lower() not in fmt.suffixes:
        raise InvalidInputError(f"--output {out}: a {fmt.name} file must end in {' or '.join(fmt.suffixes)}")
    return out


def parse_classes(classes: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``--classes A,B,C`` (or a list) as a list of names; None when not given."""
    if classes is None:
        return None
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c).strip() for c in classes]
    if not names or any(not n for n in names):
        raise InvalidInputError(f"--classes {classes!r}: give class names separated by commas, e.g. --classes POS,NEG,NEUTRAL")
    return names


def _declare(session: Session, classes: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Store ``classes`` as the pool's label set when given; warn about stored labels outside it."""
    names = parse_classes(classes)
    if names is not None:
        outside = session.set_classes(names)
        if outside:
            log.warning("%s: stored label(s) outside the declared classes: %s (kept; relabel them or add the class)",
                        session.dir, ", ".join(map(repr, outside)))
    return session.classes


def declare_classes(pool: str | PathLike, classes: str | list[str], *, index_dir: PathLike | None = None) -> tuple[list[str], list[str]]:
    """Declare a pool's label set (stored in its labels.db). Returns (classes, stored labels outside them)."""
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    names = parse_classes(classes) or []
    outside = session.set_classes(names)
    return session.classes, outside


def _classes(session: Session, *extra: Any) -> list[str]:
    """The pool's declared classes (in their order) and any class seen outside them; with none
    declared, every class seen so far: stored labels, suggested labels and the last probe's classes."""
    seen = set(session.labels.values())
    for values in extra:
        seen |= {str(v) for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))}
    probes = sorted((session.dir / PROBES).glob("round-*.json")) if (session.dir / PROBES).is_dir() else []
    if probes:
        try:
            seen |= {str(c) for c in json.loads(probes[-1].read_text(encoding="utf-8")).get("classes", [])}
        except (OSError, ValueError, AttributeError):
            pass  # an unreadable probe adds nothing: the labels still list the classes
    if session.task == multilabel.MULTI:  # multi-label hook: the classes named in the answers, not the answers
        seen = set(multilabel.classes_of(seen))
    declared = list(session.classes)
    return declared + sorted(seen - set(declared))


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote: a round's picks as one annotation tool's import file."""

    round: int
    format: str
    output: Path
    n_tasks: int
    n_suggestions: int
    classes: list[str]
    declared: bool = False  # the classes are the pool's declared label set
    warning: str | None = None  # e.g. a seed round exported with no classes known

    def to_frame(self) -> pd.DataFrame:
        """One row: this result's fields."""
        return frames.one_row(self)


def export(
    pool: str | PathLike,
    round: int | None = None,
    format: str = "csv",
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    classes: str | list[str] | None = None,
    with_vectors: bool = False,
    image_root: PathLike | None = None,
    image_url_prefix: str | None = None,
) -> ExportResult:
    """Write the picks of round ``round`` (default: the last) for an annotation tool.

    Every task lists every class (Prodigy ``options``; the Label Studio config and Argilla
    question from :func:`fmal.export.labelstudio.label_config` / the Argilla settings): the pool's
    declared classes (``classes`` declares them, stored in labels.db), else every class seen so
    far, with a warning when there are none (a seed round before ``--classes``).
    Query rounds carry the probe's suggested label and probability, written as the tool's
    pre-annotation (Label Studio predictions, Prodigy preselected option and score, Argilla
    suggestions, ``predicted_label``/``predicted_proba`` columns in CSV/JSONL). ``with_vectors``:
    Argilla records carry the pool's embedding of each text (vector ``embedding``).
    Default output: the pool's ``exports/round-NNN-FORMAT.EXT``.

    An image pool's tasks show the image (:func:`fmal.images.image_sources`): its file path under
    the pool's image folder, or under ``image_root``, or ``image_url_prefix`` + its relative path.
    """
    fmt = FORMATS.get(format)
    if with_vectors and fmt.name != "argilla":
        raise InvalidInputError(f"--with-vectors adds the embeddings to Argilla records; {fmt.name} has no place for them")
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    if session.refresh_views():  # a writer killed after its commit left a view stale
        session = Session(p.path)
    if classes is not None:
        _declare(session, classes)
    if not session.rounds:
        raise InvalidInputError(f"pool {p.name!r} has no rounds yet; pick rows first with fmal seed --pool {p.name} --budget N")
    numbers = [r.round for r in session.rounds]
    if round is None:
        round = numbers[-1]
    rec = next((r for r in session.rounds if r.round == round), None)
    if rec is None:
        raise InvalidInputError(f"--round must be one of the pool's rounds ({', '.join(map(str, numbers))}), got {round}")
    frame = _frame_of_round(p, rec)
    # --- images (fmal.images): where the tool loads each pick's image from
    if (root := images.pool_image_root(p.manifest)) is not None:
        frame["image"] = images.image_sources(frame["text"].astype(str).tolist(), root, image_root=image_root,
                                              url_prefix=image_url_prefix)
        frame.attrs["modality"] = "image"
    elif image_root is not None or image_url_prefix is not None:
        raise InvalidInputError(f"--image-root and --image-url-prefix say where an image pool's images are; pool {p.name!r} holds texts")
    # ---
    if session.task == multilabel.MULTI:  # multi-label hook: the formats write multiple-choice questions
        frame.attrs["multi_label"] = True
    if with_vectors:
        frame.attrs["vectors"] = np.asarray(p.embeddings[p.rows_of(rec.ids, source="session")], dtype=np.float32)
    out = _check_output(fmt.name, output, p.path / "exports" / f"round-{round:03d}-{fmt.name}")
    names = _classes(session, frame.get("predicted_label", []))
    warning = None
    if not names and fmt.name != "csv" and fmt.name != "jsonl":
        warning = (f"pool {p.name!r} has no classes yet: the {fmt.name} tasks offer no choice; declare them with "
                   f"fmal export --pool {p.name} --format {fmt.name} --classes A,B,C")
        log.warning("%s", warning)
    fmt.write(frame, out, names)
    n_sugg = int(frame["predicted_label"].notna().sum()) if "predicted_label" in frame else 0
    return ExportResult(round, fmt.name, out, len(frame), n_sugg, names, bool(session.classes), warning)


@dataclass(frozen=True)
class ImportResult:
    """What ``import_labels`` found in a file and did to the pool's labels."""

    path: Path
    format: str
    on_conflict: str
    n_records: int
    n_answers: int
    added: int
    changed: int
    unchanged: int
    kept: int
    conflicts: tuple[LabelConflict, ...]  # stored label vs the file's, and what the policy did
    disagreements: tuple[Disagreement, ...]  # ids the file itself answers differently
    unknown: tuple[Answer, ...]  # answers for ids not in the pool (not imported)
    skipped: tuple[tuple[str, str], ...]  # (where, why) records with no usable answer
    outside: tuple[str, ...] = ()  # imported labels outside the pool's declared classes
    ties: tuple[Disagreement, ...] = ()  # --on-conflict majority: ids with tied answers (not imported)
    annotator_quality: dict[str, float] = field(default_factory=dict)  # crowdlab: annotator -> estimated quality
    annotator_answers: dict[str, int] = field(default_factory=dict)  # annotator -> answers in the file
    detected: bool = False  # the format was read from the content (no --format)

    def to_frame(self) -> pd.DataFrame:
        """One row per answer that was not simply added: conflicts, disagreements in the file,
        unknown ids and skipped records (columns kind, id, stored, incoming, resolution, where, why)."""
        rows = [{"kind": "conflict", "id": c.id, "stored": c.stored, "incoming": c.incoming, "resolution": c.resolution}
                for c in self.conflicts]
        rows += [{"kind": "disagreement", "id": d.id, "incoming": ", ".join(a.label for a in d.answers), "resolution": d.chosen}
                 for d in self.disagreements]
        rows += [{"kind": "unknown", "id": a.id, "incoming": a.label, "where": a.where} for a in self.unknown]
        rows += [{"kind": "skipped", "where": w, "why": why} for w, why in self.skipped]
        return pd.DataFrame(rows, columns=["kind", "id", "stored", "incoming", "resolution", "where", "why"])


def _no_usable_answer(path: Path, fmt: str, got: Any, detected: bool) -> LabelsError:
    """The one-line error for a file whose records hold no answer fmal can use."""
    from collections import Counter

    from fmal.export.detect import guess

    why = "; ".join(f"{n} x {w}" for w, n in Counter(w for _, w in got.skipped).most_common(3))
    other = None if detected else guess(path)
    if other is not None and other != fmt:
        hint = f"it looks like a {other} export: pass --format {other} (or leave --format out)"
    elif any("not annotated" in w or "no response" in w or "no label yet" in w or "no answer" in w for _, w in got.skipped):
        hint = "annotate some tasks, export again and import that file"
    else:
        hint = "check that the file is the tool's export of tasks fmal wrote, and --format"
    return LabelsError(f"{path}: {got.n_records} record(s) read as {fmt}, none holds a usable answer ({why or 'no answer field'}); {hint}")


def import_labels(
    file: PathLike | frames.LabelsLike,
    pool: str | PathLike,
    format: str | None = None,
    *,
    on_conflict: str = "error",
    index_dir: PathLike | None = None,
    control: str | None = None,
    classes: str | list[str] | None = None,
    multi_label: bool = False,
) -> ImportResult:
    """Read an annotation tool's export and merge its answers into the pool's labels.

    ``format`` None: read from the content (:func:`fmal.export.detect.detect`). A file whose
    records hold no usable answer (the wrong format, nothing annotated) is a LabelsError saying
    why. Answers for ids not in the pool are reported, not imported; labels outside the pool's
    declared classes (``classes`` declares them) are imported and reported. A file that answers
    an id twice differently, or answers a labeled id differently from the stored label, is a
    conflict: ``on_conflict`` = ``error`` (default: nothing is written), ``keep`` (the stored /
    first answer wins), ``replace`` (the file's / last answer wins; the old label is kept in the
    pool's labels.db: ``relabels`` and ``answers``), ``majority`` (most annotators' label; a tie
    imports nothing for that id) or ``crowdlab`` (cleanlab's CROWDLAB consensus, with each
    annotator's estimated quality); a consensus replaces a differing stored label. Every answer of
    an id answered several times is kept in ``answers`` (outcome ``vote``, with its annotator).
    ``control``: the Label Studio choices control to read (default ``label``, else the only one).
    Importing the same file again changes no label. The file is read before the pool's write lock
    is taken; the merge is one transaction.
    ``file`` may also be the answers themselves (a DataFrame with id and label columns, a dict, a
    Series, (id, label) pairs: :mod:`fmal.frames`; ``format`` and ``control`` are then not used).
    ``multi_label`` makes the pool multi-label (:mod:`fmal.multilabel`); a multi-label pool reads
    several chosen classes (a list, ``a|b``) as one answer.
    """
    from fmal.export import consensus
    from fmal.export import labelstudio as ls_format
    from fmal.export.detect import detect

    if on_conflict not in consensus.POLICIES:
        raise InvalidInputError(f"--on-conflict must be one of {', '.join(consensus.POLICIES)}, got {on_conflict!r}")
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    if frames.is_path(file):
        path = Path(file)
        detected = format is None
        fmt = FORMATS.get(detect(path) if format is None else format)
        if control is not None and fmt.name != "label-studio":
            raise InvalidInputError(f"--control names a Label Studio control; the file is read as {fmt.name}")
        got = ls_format.read(path, control) if fmt.name == "label-studio" else fmt.read(path)
        got = multilabel.read_answers(got, session.task, multi_label, on_conflict, path, p.name)
        if got.n_records and not got.answers:
            raise multilabel.switch_hint(_no_usable_answer(path, fmt.name, got, detected), got, p.name)
    else:  # the answers themselves: an id,label table in memory
        path, detected = Path(frames.describe(file, "file")), False
        fmt = FORMATS.get("csv")
        got = Answers([Answer(i, lab, f"row {r}") for r, i, lab in frames.label_answers(file, "file")], [], len(file))
        got = multilabel.read_answers(got, session.task, multi_label, on_conflict, path, p.name)
    in_pool = set(p.in_pool([a.id for a in got.answers]))
    unknown = tuple(a for a in got.answers if a.id not in in_pool)
    if got.answers and len(unknown) == len(got.answers):
        shown = ", ".join(repr(a.id) for a in unknown[:5])
        raise LabelsError(f"{path}: none of the {len(unknown)} answered ids are in pool {p.name!r} ({shown}); check the file belongs to this pool")
    source = f"{fmt.name}:{path.name}" if frames.is_path(file) else str(path)
    with session.transaction("import labels"):  # the task type, classes and labels in one transaction
        if classes is not None:
            _declare(session, classes)
        multilabel.prepare(session, p.name, None, str(path), multi_label=multi_label)
        res = _resolve_answers(p, session, [a for a in got.answers if a.id in in_pool], on_conflict, str(path))
        res.labels = multilabel.prepare(session, p.name, res.labels, str(path)) or {}
        merge = session.add_labels(res.labels, source=source, on_conflict=consensus.merge_policy(on_conflict),
                                   annotators=res.annotators, votes=res.votes)
    declared = set(session.classes)
    named = (multilabel.classes_of(res.labels.values()) if session.task == multilabel.MULTI  # multi-label hook: per class
             else set(res.labels.values()))
    outside = tuple(sorted({lab for lab in named if declared and lab not in declared}))
    return ImportResult(path, fmt.name, on_conflict, got.n_records, len(got.answers), merge.added, merge.changed,
                        merge.unchanged, merge.kept, merge.conflicts, tuple(res.disagreements), unknown, tuple(got.skipped),
                        outside, tuple(res.ties), res.annotator_quality, res.annotator_answers, detected)


def _resolve_answers(p: Pool, session: Session, answers: list[Answer], policy: str, source: str) -> Any:
    """One label per id (:func:`fmal.export.consensus.resolve`), CROWDLAB with the pool's embeddings."""
    from fmal.export.consensus import resolve

    def embeddings_of(ids: list[str]) -> np.ndarray:
        return np.asarray(p.embeddings[p.rows_of(ids, source="labels")], dtype=np.float32)

    return resolve(answers, policy, source, embeddings_of=embeddings_of, stored=session.labels, classes=session.classes)


@dataclass
class AuditResult:
    """The labels most likely wrong, ranked, with the suggested label (``audit.table``)."""

    audit: LabelAudit
    output: Path | None
    format: str | None
    info: dict[str, Any]

    def to_frame(self) -> pd.DataFrame:
        """Every audited label, most suspicious first (a copy of ``audit.table``)."""
        return self.audit.table.copy()


def _stored_labels(p: Pool, session: Session) -> tuple[list[str], np.ndarray, list[str]]:
    """The pool's labeled ids (sorted), their rows and labels; an error when there are none yet."""
    known = session.labels
    if not known:
        raise LabelsError(f"pool {p.name!r} has no labels yet; import some first with fmal import-labels FILE --pool {p.name}")
    ids = sorted(known)
    return ids, p.rows_of(ids, source="labels"), [known[i] for i in ids]


def audit(
    pool: str | PathLike,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    format: str | None = None,
    include_all: bool = False,
    n_folds: int = DEFAULT_FOLDS,
    random_state: int = 0,
) -> AuditResult:
    """Cross-validated probe probabilities on every labeled row, then cleanlab's label-issue
    detection: the likely wrong labels, most suspicious first, each with a suggested label.

    With ``output``, the flagged rows (all audited rows with ``include_all``) are written for
    re-review in ``format`` (default: from the extension, .csv -> csv, .jsonl -> jsonl), with the
    suggestion as pre-annotation and the given label as ``given_label``.
    """
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    ids, rows, y = _stored_labels(p, session)
    if session.task == multilabel.MULTI:  # multi-label hook: cleanlab's multi_label=True on one-vs-rest probabilities
        from fmal.audit_multilabel import audit_multilabel as audit_labels_of
    else:
        audit_labels_of = audit_labels
    res = audit_labels_of(np.asarray(p.embeddings[rows]), ids, y, n_folds=n_folds, random_state=random_state)
    out = None
    if output is not None:
        if format is None:
            format = {".csv": "csv", ".tsv": "csv", ".jsonl": "jsonl"}.get(Path(output).suffix.lower())
            if format is None:
                raise InvalidInputError(f"--output {output}: pass --format ({', '.join(FORMATS.names())}) for this extension")
        out = _check_output(format, output, Path(output))
        table = res.table if include_all else res.issues
        frame = table.assign(text=p.texts[p.rows_of(table["id"].tolist(), source="labels")], audit_rank=table["rank"])
        frame = frame[["id", "text", "predicted_label", "predicted_proba", "given_label", "label_quality", "audit_rank"]]
        if session.task == multilabel.MULTI:
            frame.attrs["multi_label"] = True
        FORMATS.get(format).write(frame, out, _classes(session))
    return AuditResult(res, out, format if out else None, audit_info(res))


def report(
    pool: str | PathLike,
    *,
    index_dir: PathLike | None = None,
    output: PathLike | None = None,
    n_clusters: int = DEFAULT_CLUSTERS,
    rare_ratio: float = DEFAULT_RARE_RATIO,
    random_state: int = 0,
) -> BiasReport:
    """Labeled class distribution vs the probe's predicted distribution over the pool (with a
    warning per class far rarer among the labels than predicted), k-means clusters holding no
    label, and the class balance round by round; written as markdown (``output``, default the
    pool's ``reports/report.md``) and a PNG beside it."""
    check_positive(n_clusters, "n_clusters", integer=True)
    check_positive(rare_ratio, "rare_ratio")
    random_state = check_seed(random_state)
    p = open_pool(pool, index_dir)
    session = Session(p.path)
    ids, rows, y = _stored_labels(p, session)
    out = Path(output) if output is not None else p.path / "reports" / "report.md"
    if out.suffix.lower() != ".md":
        raise InvalidInputError(f"--output {out}: the report is markdown, use a .md file name (the PNG goes beside it)")
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



# ----------------------------------------------------------------------------- info


from fmal.describe import PoolInfo, info  # noqa: E402,F401  (light: fmal info runs it without this module)
