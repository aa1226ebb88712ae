"""Building a pool: embed an input into a pool folder, resumably, and repair a damaged one.

Embedding is resumable: chunks of unique texts are written one at a time (temp file, then
rename); a rerun with the same input and model skips the finished ones, and since a chunk's
batches do not depend on what ran before, the result is byte-identical to an uninterrupted run.
The Ray engine reads the input itself and resumes per input shard (:func:`build_pool_from_shards`);
both paths end in :func:`fmal.pool.write.write_pool`, so the pool format is one.

A rerun on a finished pool checks its derived files (:mod:`fmal.pool.check`); ``repair=True``
rebuilds the missing or damaged ones and leaves the session (labels, rounds) alone. ``overwrite``
never deletes the session: it keeps it (``labels="keep"``) or moves it to ``backup-<time>/``
(fmal.session.backup).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmal.session import backup as human_work
from fmal._lazy import lazy_module
from fmal._lock import pool_lock
from fmal.encoders import Encoder
from fmal.engines.shards import ShardEngine, ShardTask, shard_key, unique_texts
from fmal.exceptions import CorruptPoolError, ModelMismatchError, PoolExistsError
from fmal.io import ShardJoiner, ShardList, TextTable
from fmal.pool import check as pool_check
from fmal.pool import write
from fmal.pool.files import EMBEDDINGS, INDEX, MANIFEST, PARTIAL, ROWS
from fmal.pool.manifest import BuildSettings, InputRecord, Manifest, ModelRecord, read_manifest

pd = lazy_module("pandas")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    path: Path
    n_rows: int
    n_unique: int
    n_embedded: int
    n_chunks_reused: int
    skipped: bool
    repaired: tuple[str, ...] = ()  # derived files rebuilt by a repair
    backup: Path | None = None  # where --overwrite moved the session's files (labels, rounds)


def _same_input(inp: InputRecord, source: TextTable | ShardList) -> bool:
    """Whether a manifest's ``input`` is ``source``: same bytes, same text column, same id column.
    A ShardList's ``id_col`` is the column asked for: None picks ``id`` when the input has one, so
    with the same bytes it matches a pool that used ``id`` or no id column, and nothing else."""
    if (inp.fingerprint, inp.text_col) != (source.fingerprint, source.text_col):
        return False
    if isinstance(source, ShardList) and source.id_col is None:
        return inp.id_col in (None, "id")
    return inp.id_col == source.id_col


def check_existing(
    path: Path,
    table: TextTable | ShardList,
    model_name: str,
    model_fingerprint: str | None,
    backend: str | None = None,
    precision: str | None = None,
) -> Manifest | None:
    """If ``path`` holds a finished pool: return its manifest when it was built from this input
    (and model, backend and precision, when given), raise when it was not. None when there is no
    finished pool.

    The backend is part of the model's identity: ONNX and int8 embeddings differ slightly from
    torch ones (cosine ~0.99+), so a pool is never silently extended or reused across backends."""
    m = read_manifest(path)
    if m is None:
        return None
    if not _same_input(m.input, table):
        raise PoolExistsError(
            f"{path}: pool exists, built from other input ({m.input.path}); "
            "pass --overwrite to rebuild it or choose another --pool"
        )
    if model_fingerprint is not None and m.model.fingerprint != model_fingerprint:
        raise ModelMismatchError(
            f"{path}: pool was built with model {m.model.name!r} ({str(m.model.fingerprint)[:19]}), "
            f"not {model_name!r}; pass --overwrite to rebuild it or choose another --pool"
        )
    if backend is not None and m.backend != backend:
        raise ModelMismatchError(
            f"{path}: pool was built with --backend {m.backend}, not {backend}; its embeddings would differ "
            f"slightly: pass --backend {m.backend} (or leave it out) to keep it, or --overwrite to rebuild it"
        )
    if precision is not None and m.precision != precision:
        raise ModelMismatchError(
            f"{path}: pool is stored as --precision {m.precision}, not {precision}; leave --precision "
            "out to keep it, or pass --overwrite to rebuild it"
        )
    return m


def model_record(encoder: Encoder) -> ModelRecord:
    """The manifest's ``model`` record of a pool embedded by ``encoder``."""
    return ModelRecord(
        name=encoder.name,
        fingerprint=encoder.fingerprint,
        max_seq_length=getattr(encoder, "max_seq_length", None),
        backend=_backend(encoder),
        threads=getattr(encoder, "threads", None),
        device=getattr(encoder, "device", None),
        onnx_file=getattr(encoder, "onnx_file", None),
        onnx_fused=getattr(encoder, "onnx_fused", None),  # False: the export fell back to the unfused graph
        present=frozenset({"max_seq_length", "threads", "device", "onnx_file", "onnx_fused"}),  # written as null when unknown
    )


def input_record(source: TextTable | ShardList, id_col: str | None) -> InputRecord:
    """The manifest's ``input`` record (``id_col``: the id column used, None when generated)."""
    return InputRecord(path=str(source.path), format=source.format, fingerprint=source.fingerprint,
                       text_col=source.text_col, id_col=id_col, ids_generated=id_col is None,
                       present=frozenset({"fingerprint", "text_col", "id_col"}),
                       **(source.input_info() if hasattr(source, "input_info") else {}))  # images: modality, root


def _backend(encoder: Encoder) -> str:
    return str(getattr(encoder, "backend", "torch"))


def build_pool(
    table: TextTable,
    encoder: Encoder,
    path: Path,
    settings: BuildSettings = BuildSettings(),
    *,
    repair: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Embed ``table`` with ``encoder`` into the pool folder ``path``, in this process, chunk after
    chunk of distinct texts, resuming unfinished work (the Ray engine, which reads its own input,
    uses :func:`build_pool_from_shards`).

    ``settings.precision`` is the dtype of the stored embeddings (float16: half the disk; readers
    convert). ``settings.overwrite`` rebuilds the pool; on a pool with labels it needs
    ``settings.labels`` = "keep" (the session's files stay) or "drop" (they move to a backup folder
    in the pool). ``repair`` rebuilds the derived files that are missing or damaged (see
    :mod:`fmal.pool.check`), keeping the session; without it a damaged pool is a CorruptPoolError.

    ``on_progress(n)`` is called with the number of rows finished after each chunk.
    """
    path.mkdir(parents=True, exist_ok=True)
    with _pool_lock(path):
        start = _start_build(path, table, encoder, settings, repair=repair)
        if (m := start.manifest) is not None:
            if repair:
                return _repair(m, table, encoder, path, settings, on_progress)
            return BuildResult(path, m.n_rows, m.n_unique_texts, 0, 0, skipped=True)
        fill, n_unique, n_embedded, reused = _embed_chunks(table, encoder, path, settings, on_progress)
        write.write_pool(path, ids=table.ids, texts=table.texts, n_unique=n_unique, dim=encoder.dim,
                         model=model_record(encoder), input=input_record(table, table.id_col), settings=settings, fill=fill)
        return BuildResult(path, len(table), n_unique, n_embedded, reused, skipped=False, backup=start.backup)


@contextlib.contextmanager
def _pool_lock(path: Path) -> Iterator[None]:
    """One writer per pool folder: the write lock every command that writes a pool takes
    (:func:`fmal._lock.pool_lock`). ``embed`` does not wait for it: a second ``fmal embed`` into a
    pool being built, or an embed while seed/query/import-labels writes it, fails at once
    (PoolBusyError) instead of racing on its chunks or waiting out a build of hours. The OS
    releases the lock if the process dies."""
    with pool_lock(path, timeout=0, what="embed"):
        yield


@dataclass(frozen=True)
class _Start:
    """How a build starts: the finished pool's manifest (None: build), and where --overwrite moved the session."""

    manifest: Manifest | None = None
    backup: Path | None = None


def _start_build(
    path: Path, source: TextTable | ShardList, encoder: Encoder, settings: BuildSettings, *, repair: bool = False,
) -> _Start:
    """Clear the pool for ``overwrite`` (its session kept or moved to a backup, by ``labels``);
    return the manifest of a finished pool built from this input and model (nothing to do, or a
    repair), raise when the pool was built from something else or is damaged and not repaired."""
    backup = None
    if settings.overwrite and path.exists():
        human_work.refuse_overwrite(path, settings.labels)
        for name in (MANIFEST, ROWS, EMBEDDINGS, INDEX, PARTIAL, "reports"):  # derived: rebuilt from the input
            p = path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        if settings.labels != "keep":
            backup = human_work.move_to_backup(path)
    if not settings.overwrite:
        try:
            m = check_existing(path, source, encoder.name, encoder.fingerprint, _backend(encoder), settings.precision)
        except CorruptPoolError:
            if not repair:
                raise
            log.warning("%s: unreadable manifest: rebuilding every derived file (labels and rounds are kept)", path / MANIFEST)
            m = None
        if m is not None:
            if not repair:
                if problems := pool_check.check_pool(path, m):  # hashes only files newer than the manifest
                    raise CorruptPoolError(pool_check.describe(path, problems, m))
                if pool_check.needs_checksum(path, m):  # files newer than the manifest matched their checksums
                    pool_check.mark_verified(path)
            return _Start(m)
    write.clear_stale_temps(path)
    if not settings.overwrite and not isinstance(source, ShardList) and (gone := human_work.labeled_ids(path) - set(source.ids)):
        # no finished pool (an unreadable manifest, or one deleted) but labels: they must fit this input
        raise PoolExistsError(
            f"{path}: {len(gone)} labeled id(s) are not in {source.path} (e.g. {sorted(gone)[0]!r}); "
            "embed the input those labels belong to, or pass --overwrite --drop-labels"
        )
    return _Start(None, backup)


def _repair(m: Manifest, table: TextTable, encoder: Encoder, path: Path, settings: BuildSettings,
            on_progress: Callable[[int], None] | None) -> BuildResult:
    """Rebuild the derived files of a finished pool that are missing or damaged, from ``table``
    (rows), the encoder (embeddings, resumable in chunks like a build) and the embeddings (index);
    rewrite the manifest. The session (labels, rounds) is not touched."""
    n, n_unique = len(table), len(set(table.texts))
    problems = pool_check.check_pool(path, m, n=n, dim=encoder.dim, checksums=True)
    if not problems:
        return BuildResult(path, n, n_unique, 0, 0, skipped=True)
    log.info("%s", pool_check.describe(path, problems, m))
    bad = {p.file for p in problems} - {MANIFEST}
    old = m.file_records
    if ROWS in bad:
        write.write_rows(path, table.ids, table.texts)
    n_embedded = reused = 0
    fresh: dict[str, dict] = {}  # records of the files rewritten here, hashed once
    if EMBEDDINGS in bad:
        fill, _, n_embedded, reused = _embed_chunks(table, encoder, path, settings, on_progress)
        write.write_embeddings(path, n, encoder.dim, settings.precision, fill)
        fresh[EMBEDDINGS] = {"size": (path / EMBEDDINGS).stat().st_size, "sha256": pool_check.sha256_file(path / EMBEDDINGS)}
        if fresh[EMBEDDINGS]["sha256"] != (old.get(EMBEDDINGS) or {}).get("sha256"):
            bad.add(INDEX)  # new vectors (or none recorded to compare): the index is rebuilt from them
    index = m.index
    if INDEX in bad:
        kind = index.type or settings.index_kind  # the pool's own choice, not a new one
        index = write.write_index(path, n, encoder.dim, settings.precision, kind, int(index.max_memory or settings.max_index_memory),
                                  checks=fresh)
    manifest = dataclasses.replace(m, n_rows=n, n_unique_texts=n_unique, dim=encoder.dim, index=index)
    write.write_manifest(path, manifest, known={**{k: v for k, v in old.items() if k not in bad}, **fresh})
    return BuildResult(path, n, n_unique, n_embedded, reused, skipped=False, repaired=tuple(sorted(bad)) or (MANIFEST,))


def _embed_chunks(
    table: TextTable, encoder: Encoder, path: Path, settings: BuildSettings, on_progress: Callable[[int], None] | None,
) -> tuple[Callable[[np.ndarray], None], int, int, int]:
    """Embed the distinct texts of ``table`` chunk by chunk into ``.partial`` (reusing the chunks
    an interrupted run finished); return (fill, distinct texts, texts embedded now, chunks reused),
    ``fill(X)`` writing the rows' embeddings in order into X."""
    chunk_size = settings.chunk_size
    uniq, inverse = unique_texts(table.texts)
    n_chunks = (len(uniq) + chunk_size - 1) // chunk_size
    partial = write.open_partial(path, {
        "input_fingerprint": table.fingerprint,
        "text_col": table.text_col,
        "id_col": table.id_col,
        "model_fingerprint": encoder.fingerprint,
        "backend": _backend(encoder),
        "chunk_size": chunk_size,
        "batch_size": settings.batch_size,
        "n_unique": len(uniq),
        "dim": encoder.dim,
    })

    chunks = [write.Chunk(c, c * chunk_size, min((c + 1) * chunk_size, len(uniq))) for c in range(n_chunks)]
    todo = [ch for ch in chunks if write.load_chunk(partial / ch.file_name, ch.hi - ch.lo, encoder.dim) is None]
    reused = n_chunks - len(todo)
    rows_per_unique = np.bincount(inverse, minlength=len(uniq))
    rows_done = int(sum(rows_per_unique[ch.lo : ch.hi].sum() for ch in chunks if ch not in todo))
    if on_progress and rows_done:
        on_progress(rows_done)
    # an encoder with encode_chunks prepares the next chunk while this one runs (fmal.encoders)
    many = getattr(encoder, "encode_chunks", None)
    texts = (uniq[ch.lo : ch.hi] for ch in todo)
    embedded = (many(texts, batch_size=settings.batch_size, normalize=True) if many
                else (encoder.encode(t, batch_size=settings.batch_size, normalize=True) for t in texts))
    with contextlib.closing(embedded):
        for ch, emb in zip(todo, embedded):
            write.save_chunk(partial / ch.file_name, emb)
            rows_done += int(rows_per_unique[ch.lo : ch.hi].sum())
            if on_progress:
                on_progress(rows_done)
    n_embedded = sum(ch.hi - ch.lo for ch in todo)

    def fill(X: np.ndarray) -> None:  # rows in order, duplicates expanded from their unique text's chunk
        order = np.argsort(inverse, kind="stable")  # rows grouped by their unique text, chunk by chunk
        bounds = np.searchsorted(inverse[order], [ch.lo for ch in chunks] + [len(uniq)])
        for ch in chunks:
            emb = np.load(partial / ch.file_name, allow_pickle=False)
            rows = np.sort(order[bounds[ch.index] : bounds[ch.index + 1]])
            X[rows] = emb[inverse[rows] - ch.lo]

    return fill, len(uniq), n_embedded, reused


def build_pool_from_shards(
    shards: ShardList,
    encoder: Encoder,
    path: Path,
    settings: BuildSettings = BuildSettings(),
    *,
    engine: ShardEngine,
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Build the pool of ``shards`` with an engine that reads the files itself (the Ray engine).

    Resumable per shard: each finished shard (rows and embeddings) is saved in ``.partial`` under
    a name taken from its bytes; a rerun redoes only the others. Assembly is the local engine's:
    same rows, ids (generated over all shards in order), checks and files. Texts repeated across
    shards are embedded once per shard (each shard is deduplicated on its own), which changes
    no result. ``n_chunks_reused`` counts shards here; ``on_progress(rows)`` follows shards.
    """
    path.mkdir(parents=True, exist_ok=True)
    with _pool_lock(path):
        start = _start_build(path, shards, encoder, settings)
        if (m := start.manifest) is not None:  # a repair reads the input here: fmal.api.embed uses build_pool for it
            return BuildResult(path, m.n_rows, m.n_unique_texts, 0, 0, skipped=True)
        partial = write.open_partial(path, {
            "engine": "shards",
            "text_col": shards.text_col,
            "id_col": shards.id_col,
            "model_fingerprint": encoder.fingerprint,
            "backend": _backend(encoder),
            "batch_size": settings.batch_size,
            "dim": encoder.dim,
        })
        keys = [shard_key(d) for d in shards.digests]
        copies = Counter(keys)  # identical files share one key: read and embedded once
        rows_of = {k: n for k in set(keys) if (n := write.load_shard_rows(partial, k, encoder.dim)) is not None}
        todo = list({k: ShardTask(k, f, d) for k, f, d in zip(keys, shards.files, shards.digests) if k not in rows_of}.values())
        rows_done = sum(rows_of[k] for k in keys if k in rows_of)
        if on_progress and rows_done:
            on_progress(rows_done)
        n_embedded = 0
        for res in engine.run_shards(todo, text_col=shards.text_col, id_col=shards.id_col, chunk_size=settings.chunk_size):
            if res.emb.shape != (len(res.texts), encoder.dim):
                raise CorruptPoolError(f"shard {res.key}: embeddings of shape {res.emb.shape}, expected ({len(res.texts)}, {encoder.dim})")
            write.save_shard(partial, res)
            n_embedded += res.n_embedded
            rows_done += len(res.texts) * copies[res.key]
            if on_progress:
                on_progress(rows_done)

        joiner = ShardJoiner(shards.files)
        for k in keys:
            frame = pd.read_parquet(partial / f"{k}.parquet")
            has_ids = "id" in frame.columns
            joiner.add(frame["text"].tolist(), frame["id"].tolist() if has_ids else None, (shards.id_col or "id") if has_ids else None)
        ids = joiner.ids()  # the local engine's checks: ids in every shard or none, unique

        def fill(X: np.ndarray) -> None:  # shard after shard, in input order
            start = 0
            for k in keys:
                emb = np.load(partial / f"{k}.npy", allow_pickle=False)
                X[start : start + len(emb)] = emb
                start += len(emb)

        n_unique = len(set(joiner.texts))
        write.write_pool(path, ids=ids, texts=joiner.texts, n_unique=n_unique, dim=encoder.dim, model=model_record(encoder),
                         input=input_record(shards, joiner.id_col if joiner.has_ids else None), settings=settings, fill=fill)
        return BuildResult(path, len(ids), n_unique, n_embedded, len(copies) - len(todo), skipped=False, backup=start.backup)
