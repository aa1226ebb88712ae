"""Writing a pool's files: the finished pool (embeddings, rows, index, then the manifest) and the
unfinished work of a build in ``.partial`` (chunks of distinct texts, or shards, each written
atomically so a killed run resumes where it stopped).

Every engine, and embeddings made elsewhere (:mod:`fmal.external`), end in :func:`write_pool`,
so every pool has the same format.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fmal import index as fmal_index
from fmal._atomic import atomic_path, write_json
from fmal._lazy import lazy_module
from fmal._matrix import BlockMatrix
from fmal._version import __version__
from fmal.engines.shards import ShardResult
from fmal.exceptions import CorruptPoolError
from fmal.pool import check as pool_check
from fmal.pool.files import EMBEDDINGS, FORMAT, FORMAT_VERSION, INDEX, MANIFEST, PARTIAL, ROWS
from fmal.pool.manifest import BuildSettings, IndexRecord, InputRecord, Manifest, ModelRecord, write_manifest_file
from fmal.pool.read import open_embeddings

pd = lazy_module("pandas")

log = logging.getLogger(__name__)


def write_pool(
    path: Path,
    *,
    ids: list[str],
    texts: list[str],
    n_unique: int,
    dim: int,
    model: ModelRecord,
    input: InputRecord,
    settings: BuildSettings,
    fill: Callable[[np.ndarray], None] | None = None,
    normalized: bool = True,
    read_in_blocks: bool = False,
    known: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write a finished pool: embeddings (``fill`` writes them, in row order, into the [n_rows,
    dim] array it is given; None: the embeddings file is already written), rows, index, then the
    manifest; drop ``.partial``. ``read_in_blocks``: see :func:`write_index`. ``known``: file
    records (size, sha256) of files this run wrote and hashed as it wrote them."""
    if fill is not None:
        write_embeddings(path, len(ids), dim, settings.precision, fill)
    write_rows(path, ids, texts)
    known = dict(known or {})
    index = write_index(path, len(ids), dim, settings.precision, settings.index_kind, settings.max_index_memory, read_in_blocks,
                        checks=known)
    manifest = Manifest(
        format=FORMAT, format_version=FORMAT_VERSION, fmal_version=__version__, n_rows=len(ids), n_unique_texts=n_unique,
        dim=dim, dtype=settings.precision, normalized=normalized, model=model, input=input, embedding=settings.embedding,
        index=index, files={"rows": ROWS, "embeddings": EMBEDDINGS, "index": INDEX},
    )
    write_manifest(path, manifest, known)


def write_embeddings(path: Path, n: int, dim: int, precision: str, fill: Callable[[np.ndarray], None]) -> None:
    with atomic_path(path / EMBEDDINGS) as tmp:
        X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(precision), shape=(n, dim))
        fill(X)
        X.flush()
        del X


def write_embeddings_stream(path: Path, n: int, dim: int, precision: str, blocks: Iterable[np.ndarray]) -> dict[str, Any]:
    """Write the embeddings file from ``blocks`` of rows in order, with plain writes: only one
    block is ever in memory (a memory map would keep every page written resident). Returns the
    file's record for the manifest (size, sha256), hashed as it is written: no second read."""
    dtype = np.dtype(precision)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                                "shape": (n, dim)})
    h = pool_check.StreamSha256(head.getvalue())
    with atomic_path(path / EMBEDDINGS) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(head.getvalue())
            done = 0
            for b in blocks:
                if not len(b):  # an empty block (an empty Arrow batch): nothing to write, and no view to cast
                    continue
                buf = memoryview(np.ascontiguousarray(b, dtype=dtype)).cast("B")
                h.update(buf)
                fh.write(buf)
                done += len(b)
            if done != n:
                raise CorruptPoolError(f"{path / EMBEDDINGS}: {done} rows written, {n} expected")
            fh.flush()
            os.fsync(fh.fileno())
            size = fh.tell()
    return {"size": size, "sha256": h.hexdigest()}


def write_rows(path: Path, ids: list[str], texts: list[str]) -> None:
    with atomic_path(path / ROWS) as tmp:
        pd.DataFrame({"id": ids, "text": texts}).to_parquet(tmp, index=False)


def write_index(path: Path, n: int, dim: int, precision: str, index_kind: str, max_index_memory: int,
                read_in_blocks: bool = False, checks: dict[str, dict[str, Any]] | None = None) -> IndexRecord:
    """Build the index over the pool's embeddings file and save it; return its manifest record.
    ``read_in_blocks``: read the file with ``pread`` (:class:`BlockMatrix`) even when it would fit
    the RAM cap, so the pages read do not stay resident (ingesting a file made elsewhere).
    ``checks``: gets the index file's record (size, sha256, hashed as it is written)."""
    X = BlockMatrix(path / EMBEDDINGS) if read_in_blocks else open_embeddings(path / EMBEDDINGS, n, dim, precision)
    idx, index_info = fmal_index.build(X, index_kind, max_memory=max_index_memory)
    del X
    sha = fmal_index.save_index(idx, path / INDEX)
    if checks is not None:
        checks[INDEX] = {"size": (path / INDEX).stat().st_size, "sha256": sha}
    return IndexRecord.from_json(index_info)


def write_manifest(path: Path, manifest: Manifest, known: dict[str, Any] | None = None) -> None:
    """Record each derived file's size, sha256 and shape (``known``: records still valid, of files
    verified and kept), write the manifest (last: it marks the pool complete), drop ``.partial``."""
    n, dim = manifest.n_rows, manifest.dim
    shapes = {ROWS: (n, 2), EMBEDDINGS: (n, dim), INDEX: (n, dim)}
    checks = {}
    for name, shape in shapes.items():
        old = (known or {}).get(name)
        if isinstance(old, dict) and old.get("sha256"):
            checks[name] = {**old, "shape": list(shape)}
        else:
            checks[name] = pool_check.file_record(path / name, shape)
    write_manifest_file(path, replace(manifest, file_checks=checks))
    shutil.rmtree(path / PARTIAL, ignore_errors=True)


def open_partial(path: Path, progress: dict[str, Any]) -> Path:
    """The ``.partial`` folder of an unfinished build with these settings (``progress``): kept
    when an interrupted run had the same ones, emptied otherwise."""
    partial = path / PARTIAL
    pfile = partial / "progress.json"
    if partial.exists():
        try:
            old = json.loads(pfile.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != progress:
            log.info("discarding unfinished work in %s: it was for other input or settings", partial)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not pfile.exists():
        write_json(pfile, progress)
    return partial


def clear_stale_temps(path: Path) -> None:
    """Drop the temp files a run killed while assembling leaves behind (as large as the embeddings)."""
    for name in (EMBEDDINGS, ROWS, INDEX, MANIFEST):
        for stale in path.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


@dataclass(frozen=True)
class Chunk:
    """Unique texts ``lo:hi``, saved as ``.partial/chunk-NNNNNN.npy`` once embedded."""

    index: int
    lo: int
    hi: int

    @property
    def file_name(self) -> str:
        return f"chunk-{self.index:06d}.npy"


def save_chunk(f: Path, emb: np.ndarray) -> None:
    """Write one finished chunk (atomically: a killed run never leaves half a chunk)."""
    with atomic_path(f) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(emb, dtype=np.float32), allow_pickle=False)


def load_chunk(f: Path, n: int, dim: int) -> np.ndarray | None:
    """A finished chunk of ``n`` x ``dim``, None when missing, unreadable or of the wrong shape (redo it)."""
    if not f.exists():
        return None
    try:
        emb = np.load(f, allow_pickle=False)
    except Exception:
        log.warning("re-embedding unreadable chunk %s", f)
        return None
    if emb.shape != (n, dim) or emb.dtype != np.float32:
        log.warning("re-embedding chunk %s of the wrong shape", f)
        return None
    return emb


def save_shard(partial: Path, res: ShardResult) -> None:
    """Write one finished shard: its rows (Parquet) then its embeddings (.npy, float32), each
    atomically; the .npy, written last, marks the shard done."""
    cols = {"text": res.texts} if res.ids is None else {"id": res.ids, "text": res.texts}
    with atomic_path(partial / f"{res.key}.parquet") as tmp:
        pd.DataFrame(cols).to_parquet(tmp, index=False)
    save_chunk(partial / f"{res.key}.npy", res.emb)


def load_shard_rows(partial: Path, key: str, dim: int) -> int | None:
    """Rows of a finished shard in ``partial``, None when it is missing or unreadable (redo it)."""
    import pyarrow.parquet as pq

    try:
        n = pq.read_metadata(partial / f"{key}.parquet").num_rows
        emb = np.load(partial / f"{key}.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing, or cut short outside fmal's atomic writes (ArrowInvalid is a ValueError)
        return None
    return n if emb.shape == (n, dim) and emb.dtype == np.float32 else None
