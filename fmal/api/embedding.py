"""``embed``: texts (or images, or vectors made elsewhere) into a pool folder, and its helpers."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fmal import encoders as fmal_encoders
from fmal import frames, images
from fmal import index as fmal_index
from fmal._validation import check_positive
from fmal.api.results import EmbedResult
from fmal.engines import ENGINES
from fmal.exceptions import CorruptPoolError, InvalidInputError, ModelMismatchError, PoolExistsError
from fmal.io import ShardList, list_shards, load_texts
from fmal.pool import BuildSettings, pool_path, read_manifest
from fmal.pool import check as pool_check
from fmal.pool.build import build_pool, build_pool_from_shards, check_existing
from fmal.pool.files import PARTIAL
from fmal.pool.manifest import check_index_kind, check_precision
from fmal.session import backup as human_work

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]


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
    gpus_per_worker: float = 0.0,
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
    """Embed texts into a pool: L2-normalised embeddings, ids, texts and a FAISS index.

    Identical texts are embedded once. Work is saved chunk by chunk: a rerun with the same
    arguments resumes an interrupted run, and a finished pool built from the same input and model
    is checked (files present, sizes and shapes as the manifest records, checksums of files
    changed since) and left as it is (``skipped=True``).

    Parameters
    ----------
    input : path, DataFrame, Series, list, dict or None
        The texts: a .csv, .tsv, .jsonl, .json, .parquet or .txt file, a folder of such shards,
        a Hugging Face datasets folder, or the texts in memory (:mod:`fmal.frames`). Images: a
        folder of images, one image, or a table with ``image_col``. With ``embeddings``: the file
        of ids (and texts) of the vectors, like ``ids``. None only with ``embeddings``.
    pool : str
        The pool: a name (a folder under ``index_dir``) or a folder path with a '/'.
    index_dir : path, optional
        Where named pools live (default ``./indexes``).
    text_col, id_col : str, optional
        The columns holding the texts (default ``text``) and unique ids (default ``id`` if
        present, else stable ids made from the text).
    model : str or path, optional
        A sentence-transformers model: a local folder or a hub name (default: the bundled
        all-MiniLM-L6-v2). For images, a CLIP-style model, run on torch.
    batch_size : int
        Texts per forward pass.
    chunk_size : int
        Distinct texts per saved chunk: an interrupted run loses at most one chunk.
    overwrite : bool
        Rebuild the pool from this input even if it exists. A pool with labels or rounds needs
        ``keep_labels`` or ``drop_labels`` too.
    repair : bool
        Rebuild exactly the damaged files of the existing pool (embeddings through the encoder, in
        this process, resumable; the index from the embeddings; rows from the input), keeping
        labels and rounds. Not with ``overwrite``.
    keep_labels : bool
        With ``overwrite``: keep labels, answers and rounds; refused if a labeled id is not in
        the new input, unless ``drop_labels`` too (those labels are removed after a backup).
    drop_labels : bool
        With ``overwrite``: move labels, rounds and probes to ``backup-<time>/`` in the pool
        folder (never deleted).
    trust_remote_code : bool
        Let the model run code from its folder.
    backend : {"torch", "onnx", "onnx-int8"}, optional
        Encoder runtime; None: the existing pool's (or the interrupted run's), else
        ``fmal.encoders.DEFAULT_BACKEND``.
    precision : {"float32", "float16"}, optional
        Stored embedding dtype; None: the existing pool's, else float32.
    max_seq_length : int, optional
        Truncate texts to this many tokens (default: the model's own limit).
    threads : int, optional
        CPU threads for the encoder (default: the cores available to this process).
    device : str, optional
        Where the encoder runs: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``
        (:func:`fmal.encoders.resolve_device`; recorded in the manifest).
    index : str
        FAISS index: ``auto`` (chosen from the pool's size and ``max_index_memory``), ``flat``,
        ``hnsw``, ``ivfflat``, ``ivfsq`` or ``ivfpq``.
    max_index_memory : str or int, optional
        Memory budget of the index for ``index="auto"``, e.g. ``"512M"``, ``"4G"``.
    engine : {"local", "ray"}
        ``ray``: Ray workers read the input (each file of a folder of shards, or the one file)
        and embed it; work is saved and resumed per shard, texts repeated across shards are
        embedded once per shard, and the pool is the local engine's. Data in memory and
        ``repair`` run locally.
    ray_address : str, optional
        With ``engine="ray"``: the cluster to join (default: a local Ray).
    workers : int, optional
        With ``engine="ray"``: the number of encoder actors.
    gpus_per_worker : float, default 0
        With ``engine="ray"``: the GPUs each encoder actor requests from Ray (e.g. 1, or 0.5 to
        share one GPU between two actors); the actor's ``device="auto"`` then finds the GPU Ray
        gave it. 0: CPU actors.
    on_start : callable, optional
        Called once with the row count (None on Ray: rows are counted as they are read).
    on_progress : callable, optional
        Called with the rows done so far.
    embeddings : array, path, optional
        Vectors made elsewhere instead of texts to embed: an array, or an .npy / Parquet / Arrow
        file or folder (:mod:`fmal.external`). The pool records model ``external``.
    ids : list or path, optional
        With ``embeddings``: one id per vector (a list or a file; ``input`` may be that file).
    texts : list, optional
        With ``embeddings``: one text per vector, shown in exports.
    embedding_col : str, optional
        With ``embeddings`` in a Parquet/Arrow table: the column of vectors.
    normalize : bool
        With ``embeddings``: L2-normalise the vectors.
    append : bool
        Add the rows of ``input`` (or ``embeddings``) that the finished pool lacks, keeping every
        label, round and probe (:mod:`fmal.append`). Not with ``overwrite`` or ``repair``.
    image_col : str, optional
        Images: the column of a table ``input`` holding image paths.
    bad_images : {"stop", "skip"}
        Images: a bad image file stops the run, or is left out and listed in
        ``EmbedResult.bad_images``.

    Returns
    -------
    EmbedResult
        Where the pool is, how many rows, and how much work was (re)done.

    Raises
    ------
    InvalidInputError
        A bad argument or combination of arguments, or input that cannot be read.
    CorruptPoolError
        The finished pool's files are damaged (pass ``repair``).
    PoolExistsError
        The pool was built from other input (pass ``overwrite``), or ``overwrite`` would lose
        labels (pass ``keep_labels`` or ``drop_labels``).
    ModelMismatchError
        The pool was built with another model, or holds vectors made elsewhere.
    PoolBusyError
        Another process is building the pool.
    ModelLoadError
        The encoder cannot be loaded.
    """
    t0 = time.perf_counter()
    # --- images (fmal.images): the checks an image input adds
    is_images = not append and embeddings is None and images.is_image_input(input, image_col)
    if is_images:
        images.check_on_bad(bad_images)
        backend = images.check_backend(backend)
        if engine != "local":
            raise InvalidInputError("engine ray reads text shards; embed images with engine local", param="engine")
        if max_seq_length is not None:
            raise InvalidInputError("max_seq_length truncates texts; an image pool has none to truncate: leave it out",
                                    param="max_seq_length")
    elif append and images.is_image_input(input, image_col):
        raise InvalidInputError("append adds texts; growing an image pool is not supported yet: rebuild it with overwrite and "
                                "keep_labels", param=("append", "overwrite", "keep_labels"))
    # ---
    fmal_encoders.check_device(device)  # a bad device fails before any reading, on every path
    if embeddings is not None or append:
        return _embed_more(input, pool, t0, index_dir=index_dir, text_col=text_col, id_col=id_col, model=model,
                           batch_size=batch_size, chunk_size=chunk_size, overwrite=overwrite, repair=repair,
                           keep_labels=keep_labels, drop_labels=drop_labels, trust_remote_code=trust_remote_code,
                           backend=backend, precision=precision, max_seq_length=max_seq_length, threads=threads,
                           index=index, max_index_memory=max_index_memory, on_start=on_start, on_progress=on_progress,
                           embeddings=embeddings, ids=ids, texts=texts, embedding_col=embedding_col, normalize=normalize,
                           append=append, device=device)
    if input is None:
        raise InvalidInputError("input: give the texts to embed (a file, folder, DataFrame or list), or embeddings=")
    if repair and overwrite:
        raise InvalidInputError("repair keeps the pool and rebuilds its damaged files, overwrite rebuilds it all: pass one",
                                param=("repair", "overwrite"))
    if (keep_labels or drop_labels) and not overwrite:
        raise InvalidInputError("keep_labels and drop_labels say what overwrite does with the labels: pass overwrite too",
                                param=("keep_labels", "drop_labels", "overwrite"))
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
        raise InvalidInputError(f"engine must be one of [{', '.join(ENGINES)}], got {engine!r}", param="engine")
    check_positive(gpus_per_worker, "gpus_per_worker", allow_zero=True)
    if gpus_per_worker and engine != "ray":
        raise InvalidInputError(f"gpus_per_worker asks Ray for GPUs: use it with engine ray (got engine {engine!r}); "
                                "a local run uses a GPU through device", param=("gpus_per_worker", "engine", "device"))
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
            f"{path}: {len(vanished)} labeled id(s) are not in {frames.describe(input, 'input')} (e.g. {sorted(vanished)[0]!r}) and keep_labels "
            "would lose them; fix the input, or add drop_labels to move those labels to a backup in the pool folder",
            param=("keep_labels", "drop_labels"),
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
        ray_engine = RayEngine(encoder_kwargs, batch_size=batch_size, address=ray_address, workers=workers,
                               gpus_per_worker=gpus_per_worker)
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
        raise InvalidInputError("keep_labels and drop_labels say what overwrite does with the labels: pass overwrite too",
                                param=("keep_labels", "drop_labels", "overwrite"))
    if append and (overwrite or repair):
        raise InvalidInputError("append adds rows to the pool as it is: leave out overwrite and repair",
                                param=("append", "overwrite", "repair"))
    if precision is not None:
        check_precision(precision)
    check_index_kind(index)
    fmal_index.parse_memory(max_index_memory)  # a bad budget fails before any reading
    path = pool_path(pool, index_dir)
    if overwrite:
        human_work.refuse_overwrite(path, "keep" if keep_labels else "drop" if drop_labels else None)
    if embeddings is not None and input is not None and ids is not None:
        raise InvalidInputError("give the vectors' identifiers once: in ids or in the input file, not both", param="ids")
    if append:
        return fmal_append.append(input, path, t0, text_col=text_col, id_col=id_col, embeddings=embeddings,
                                  ids=ids if ids is not None else input if embeddings is not None else None, texts=texts,
                                  embedding_col=embedding_col, normalize=normalize, on_start=on_start,
                                  on_progress=on_progress, **encoder_kwargs)
    src = external.open_source(embeddings, ids=ids if ids is not None else input, texts=texts, id_col=id_col,
                               text_col=text_col, embedding_col=embedding_col)
    if keep_labels and (gone := human_work.labeled_ids(path) - set(src.ids)) and not drop_labels:
        raise PoolExistsError(
            f"{path}: {len(gone)} labeled id(s) are not in {src.path} (e.g. {sorted(gone)[0]!r}) and keep_labels "
            "would lose them; fix the ids, or add drop_labels to move those labels to a backup in the pool folder",
            param=("keep_labels", "drop_labels"),
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
