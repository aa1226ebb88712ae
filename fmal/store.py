"""The embedding store of a pool: one folder with a JSON manifest, the rows (ids and texts, Parquet),
the embeddings (.npy, read memory-mapped) and a FAISS index.

    indexes/NAME/
        manifest.json     written last: its presence means the pool is complete
        rows.parquet      id, text
        embeddings.npy    float32 (or float16: --precision) [n_rows, dim], L2-normalised
        index.faiss       FAISS index over embeddings.npy
        session.json      rounds of selection (fmal.session)
        labels.csv        every label fmal was given (fmal.session)
        .partial/         while embedding: progress.json + one .npy per finished chunk
                          (Ray engine: one .parquet + .npy per finished input shard)

Embedding is resumable: chunks of unique texts are written one at a time (temp file, then
rename); a rerun with the same input and model skips the finished ones, and since a chunk's
batches do not depend on what ran before, the result is byte-identical to an uninterrupted run.
The Ray engine reads the input itself and resumes per input shard (``build_pool_from_shards``);
both paths end in ``_write_pool``, so the pool format is one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from fmal import index as fmal_index
from fmal._atomic import atomic_path, write_json
from fmal._matrix import BlockMatrix, format_bytes, ram_cap
from fmal._validation import check_pool_name
from fmal._version import __version__
from fmal.encoders import Encoder
from fmal.exceptions import CorruptPoolError, PoolBusyError, InvalidInputError, LabelsError, ModelMismatchError, PoolExistsError, PoolNotFoundError
from fmal.io import ShardJoiner, ShardList, TextTable

log = logging.getLogger(__name__)

FORMAT = "fmal-pool"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "rows.parquet"
EMBEDDINGS = "embeddings.npy"
INDEX = "index.faiss"
PARTIAL = ".partial"
DEFAULT_INDEX_DIR = Path("indexes")


def pool_path(pool: str | Path, index_dir: str | Path | None = None) -> Path:
    """Folder of a pool given its name (under ``index_dir``, default ``./indexes``) or its path."""
    p = Path(pool)
    if len(p.parts) > 1 or (p.is_dir() and (p / MANIFEST).exists() and index_dir is None):
        return p
    check_pool_name(str(pool))
    return Path(index_dir if index_dir is not None else DEFAULT_INDEX_DIR) / str(pool)


@dataclass
class Pool:
    """A built pool, opened read-only: manifest, ids, texts, memory-mapped embeddings, index."""

    path: Path
    manifest: dict[str, Any]
    ids: np.ndarray
    _row_of: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n(self) -> int:
        return int(self.manifest["n_rows"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @cached_property
    def texts(self) -> np.ndarray:
        return _read_rows(self.path, ["text"])["text"].to_numpy(dtype=object)

    @cached_property
    def embeddings(self) -> np.ndarray:
        """[n, dim] float32, never loaded whole unless it fits: see :func:`open_embeddings`.
        ``stored_embeddings`` gives the raw memmap (float32 or float16)."""
        return open_embeddings(self.path / EMBEDDINGS, self.n, self.dim, str(self.manifest.get("dtype", "float32")))

    @property
    def read_in_blocks(self) -> bool:
        """True when the pool's embeddings exceed the RAM cap and are read block by block."""
        return isinstance(self.embeddings, BlockMatrix)

    @property
    def stored_embeddings(self) -> np.ndarray:
        """The embeddings as stored (float32 or float16), memory-mapped; convert batches as needed."""
        f = self.path / EMBEDDINGS
        try:
            return np.load(f, mmap_mode="r", allow_pickle=False)
        except Exception:
            raise CorruptPoolError(f"{f}: unreadable embeddings; rebuild with fmal embed --overwrite") from None

    @cached_property
    def index(self):  # -> faiss.Index
        """The FAISS index, memory-mapped: IVF lists and flat codes stay on disk until searched."""
        return fmal_index.load_index(
            self.path / INDEX, n=self.n, dim=self.dim, search_params=self.manifest["index"].get("search_params"), mmap=True,
            kind=self.manifest["index"].get("type"),
        )

    def _row_map(self) -> dict[str, int]:
        if not self._row_of:
            self._row_of = {str(x): i for i, x in enumerate(self.ids)}
        return self._row_of

    def in_pool(self, ids: list[str]) -> list[str]:
        """The ``ids`` that are rows of this pool, in their order (one id map shared with rows_of)."""
        row_of = self._row_map()
        return [x for x in ids if x in row_of]

    def rows_of(self, ids: list[str] | np.ndarray, *, source: str = "labels") -> np.ndarray:
        """Row numbers of ``ids``; unknown ids are an error naming a few of them."""
        self._row_map()
        missing = [x for x in ids if x not in self._row_of]
        if missing:
            shown = ", ".join(repr(x) for x in missing[:5])
            raise LabelsError(
                f"{source}: {len(missing)} id(s) are not in pool {self.name!r} ({shown}"
                f"{', ...' if len(missing) > 5 else ''}); check the file belongs to this pool"
            )
        return np.fromiter((self._row_of[x] for x in ids), dtype=np.int64, count=len(ids))


def _to_float32(X: np.ndarray, batch: int = 65536) -> np.ndarray:
    """A float32 copy of ``X``, converted in row batches (no float64 temporaries)."""
    out = np.empty(X.shape, dtype=np.float32)
    for s in range(0, X.shape[0], batch):
        out[s : s + batch] = X[s : s + batch]
    return out


def open_embeddings(f: Path, n: int, dim: int, dtype: str = "float32") -> np.ndarray:
    """The one way to read a pool's embeddings (``f``, an ``.npy`` of ``n`` x ``dim`` ``dtype``) as float32.

    While the float32 matrix fits the RAM cap (``$FMAL_MAX_RAM``, default half the machine's RAM):
    memory-mapped when stored as float32, converted into RAM when float16. Beyond the cap: a
    :class:`~fmal._matrix.BlockMatrix`, read block by block, so no command holds the pool whole."""
    try:
        X = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception:
        raise CorruptPoolError(f"{f}: unreadable embeddings; rebuild with fmal embed --overwrite") from None
    if X.shape != (n, dim) or X.dtype != np.dtype(dtype):
        raise CorruptPoolError(
            f"{f}: shape {X.shape} {X.dtype} disagrees with the manifest ({n}, {dim}) {dtype}; "
            "rebuild with fmal embed --overwrite"
        )
    if n * dim * 4 > ram_cap():
        log.info("%s: %s of float32 embeddings exceed the RAM cap: reading them in blocks", f, format_bytes(n * dim * 4))
        del X
        return BlockMatrix(f)  # type: ignore[return-value]  (array-like: what the readers use)
    if X.dtype != np.float32:
        log.debug("%s: converting %s embeddings to float32 in memory", f, X.dtype)
        return _to_float32(X)
    return X


def _read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    f = path / ROWS
    try:
        return pd.read_parquet(f, columns=columns)
    except Exception:
        raise CorruptPoolError(f"{f}: missing or unreadable; rebuild with fmal embed --overwrite") from None


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a pool folder, None when there is none, CorruptPoolError when unreadable."""
    f = path / MANIFEST
    if not f.exists():
        return None
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptPoolError(f"{f}: not valid JSON; rebuild with fmal embed --overwrite") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or "n_rows" not in m or "dim" not in m:
        raise CorruptPoolError(f"{f}: not an fmal pool manifest; rebuild with fmal embed --overwrite")
    bad = [k for k in ("n_rows", "dim") if isinstance(m[k], bool) or not isinstance(m[k], int) or m[k] < 1]
    bad += [k for k in ("model", "input", "index") if not isinstance(m.get(k), dict)]
    if bad:
        raise CorruptPoolError(
            f"{f}: field(s) {', '.join(bad)} missing or invalid (n_rows and dim must be positive integers); "
            "rebuild with fmal embed --overwrite"
        )
    return m


def open_pool(pool: str | Path, index_dir: str | Path | None = None) -> Pool:
    """Open a built pool: the one way every command loads a pool."""
    path = pool_path(pool, index_dir)
    m = read_manifest(path)
    if m is None:
        hint = " (an embed was interrupted: rerun it to finish)" if (path / PARTIAL).exists() else ""
        raise PoolNotFoundError(
            f"{path}: no pool there{hint}; build it with: fmal embed INPUT --pool {path.name}"
            + (f" --index-dir {path.parent}" if index_dir is not None else "")
        )
    ids = _read_rows(path, ["id"])["id"].to_numpy(dtype=object)
    if len(ids) != int(m["n_rows"]):
        raise CorruptPoolError(f"{path / ROWS}: {len(ids)} rows, the manifest says {m['n_rows']}; rebuild the pool")
    return Pool(path=path, manifest=m, ids=ids)


# ----------------------------------------------------------------------------- building


@dataclass(frozen=True)
class BuildResult:
    path: Path
    n_rows: int
    n_unique: int
    n_embedded: int
    n_chunks_reused: int
    skipped: bool


def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order and, per row, the index of its unique text."""
    first: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inverse[i] = first.setdefault(t, len(first))
    return list(first), inverse


def _same_build(m: dict[str, Any], table: TextTable, encoder: Encoder) -> bool:
    return (
        m.get("input", {}).get("fingerprint") == table.fingerprint
        and m.get("input", {}).get("text_col") == table.text_col
        and m.get("input", {}).get("id_col") == table.id_col
        and m.get("model", {}).get("fingerprint") == encoder.fingerprint
    )


PRECISIONS = ("float32", "float16")


def pool_backend(m: dict[str, Any]) -> str:
    """The encoder backend a pool was built with (pools from before backends existed: torch)."""
    return str(m.get("model", {}).get("backend", "torch"))


def check_precision(precision: object) -> str:
    """Return ``precision`` when it is a storable embedding dtype, else a clear InvalidInputError."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return str(precision)


def _same_input(inp: dict[str, Any], source: TextTable | ShardList) -> bool:
    """Whether a manifest's ``input`` is ``source``: same bytes, same text column, same id column.
    A ShardList's ``id_col`` is the column asked for: None picks ``id`` when the input has one, so
    with the same bytes it matches a pool that used ``id`` or no id column, and nothing else."""
    if (inp.get("fingerprint"), inp.get("text_col")) != (source.fingerprint, source.text_col):
        return False
    if isinstance(source, ShardList) and source.id_col is None:
        return inp.get("id_col") in (None, "id")
    return inp.get("id_col") == source.id_col


def check_existing(
    path: Path,
    table: TextTable | ShardList,
    model_name: str,
    model_fingerprint: str | None,
    backend: str | None = None,
    precision: str | None = None,
) -> dict | None:
    """If ``path`` holds a finished pool: return its manifest when it was built from this input
    (and model, backend and precision, when given), raise when it was not. None when there is no
    finished pool.

    The backend is part of the model's identity: ONNX and int8 embeddings differ slightly from
    torch ones (cosine ~0.99+), so a pool is never silently extended or reused across backends."""
    m = read_manifest(path)
    if m is None:
        return None
    inp = m.get("input", {})
    if not _same_input(inp, table):
        raise PoolExistsError(
            f"{path}: pool exists, built from other input ({inp.get('path')}); "
            "pass --overwrite to rebuild it or choose another --pool"
        )
    mm = m.get("model", {})
    if model_fingerprint is not None and mm.get("fingerprint") != model_fingerprint:
        raise ModelMismatchError(
            f"{path}: pool was built with model {mm.get('name')!r} ({str(mm.get('fingerprint'))[:19]}), "
            f"not {model_name!r}; pass --overwrite to rebuild it or choose another --pool"
        )
    if backend is not None and pool_backend(m) != backend:
        raise ModelMismatchError(
            f"{path}: pool was built with --backend {pool_backend(m)}, not {backend}; its embeddings would differ "
            f"slightly: pass --backend {pool_backend(m)} (or leave it out) to keep it, or --overwrite to rebuild it"
        )
    if precision is not None and str(m.get("dtype", "float32")) != precision:
        raise ModelMismatchError(
            f"{path}: pool is stored as --precision {m.get('dtype', 'float32')}, not {precision}; leave --precision "
            "out to keep it, or pass --overwrite to rebuild it"
        )
    return m


def build_pool(
    table: TextTable,
    encoder: Encoder,
    path: Path,
    *,
    batch_size: int = 64,
    chunk_size: int = 2048,
    index_kind: str = "auto",
    max_index_memory: int = fmal_index.DEFAULT_MAX_MEMORY,
    overwrite: bool = False,
    precision: str = "float32",
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Embed ``table`` with ``encoder`` into the pool folder ``path``, in this process, chunk after
    chunk of distinct texts, resuming unfinished work (the Ray engine, which reads its own input,
    uses :func:`build_pool_from_shards`).

    ``precision`` is the dtype of the stored embeddings (float16: half the disk; readers convert).

    ``on_progress(n)`` is called with the number of rows finished after each chunk.
    """
    path.mkdir(parents=True, exist_ok=True)
    with _pool_lock(path):
        return _build_pool_locked(
            table, encoder, path, batch_size=batch_size, chunk_size=chunk_size, index_kind=index_kind,
            max_index_memory=max_index_memory, overwrite=overwrite, precision=precision, on_progress=on_progress,
        )


@contextlib.contextmanager
def _pool_lock(path: Path) -> Iterator[None]:
    """One writer per pool folder: a second concurrent ``fmal embed`` into it fails at once
    instead of racing on its chunks. The OS releases the lock if the process dies."""
    fd = os.open(path, os.O_RDONLY)  # the lock is on the folder itself: no lock file to leave behind
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PoolBusyError(
                f"{path}: another fmal process is building this pool; wait for it to finish or use another --pool"
            ) from None
        yield
    finally:
        os.close(fd)


def _start_build(
    path: Path, source: TextTable | ShardList, encoder: Encoder, *, overwrite: bool, backend: str, precision: str
) -> dict[str, Any] | None:
    """Clear the pool for ``overwrite``; return the manifest of a finished pool built from this
    input and model (nothing to do), raise when the pool was built from something else."""
    if overwrite and path.exists():
        for name in (MANIFEST, ROWS, EMBEDDINGS, INDEX, PARTIAL, "session.json", "labels.csv"):
            p = path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    if not overwrite and (m := check_existing(path, source, encoder.name, encoder.fingerprint, backend, precision)) is not None:
        return m
    # a run killed while assembling leaves its temp files behind (as large as the embeddings): drop them
    for name in (EMBEDDINGS, ROWS, INDEX, MANIFEST):
        for stale in path.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    return None


def _open_partial(path: Path, progress: dict[str, Any]) -> Path:
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


def _write_pool(
    path: Path,
    *,
    ids: list[str],
    texts: list[str],
    n_unique: int,
    fill: Callable[[np.ndarray], None],
    encoder: Encoder,
    backend: str,
    precision: str,
    input_info: dict[str, Any],
    batch_size: int,
    chunk_size: int,
    index_kind: str,
    max_index_memory: int,
) -> None:
    """Write a finished pool: embeddings (``fill`` writes them, in row order, into the
    [n_rows, dim] array it is given), rows, index, then the manifest; drop ``.partial``.
    Every engine ends here, so every pool has the same format."""
    X_path = path / EMBEDDINGS
    with atomic_path(X_path) as tmp:
        X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(precision), shape=(len(ids), encoder.dim))
        fill(X)
        X.flush()
        del X
    with atomic_path(path / ROWS) as tmp:
        pd.DataFrame({"id": ids, "text": texts}).to_parquet(tmp, index=False)
    X = open_embeddings(X_path, len(ids), encoder.dim, precision)
    idx, index_info = fmal_index.build(X, index_kind, max_memory=max_index_memory)
    del X
    fmal_index.save_index(idx, path / INDEX)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fmal_version": __version__,
        "n_rows": len(ids),
        "n_unique_texts": n_unique,
        "dim": encoder.dim,
        "dtype": precision,
        "normalized": True,
        "model": {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "max_seq_length": getattr(encoder, "max_seq_length", None),
            "backend": backend,
            "threads": getattr(encoder, "threads", None),
            "onnx_file": getattr(encoder, "onnx_file", None),
            "onnx_fused": getattr(encoder, "onnx_fused", None),  # False: the export fell back to the unfused graph
        },
        "input": input_info,
        "embedding": {"batch_size": batch_size, "chunk_size": chunk_size},
        "index": index_info,
        "files": {"rows": ROWS, "embeddings": EMBEDDINGS, "index": INDEX},
    }
    write_json(path / MANIFEST, manifest)
    shutil.rmtree(path / PARTIAL, ignore_errors=True)


def _input_info(source: TextTable | ShardList, id_col: str | None) -> dict[str, Any]:
    """The manifest's ``input`` record (``id_col``: the id column used, None when generated)."""
    return {
        "path": str(source.path),
        "format": source.format,
        "fingerprint": source.fingerprint,
        "text_col": source.text_col,
        "id_col": id_col,
        "ids_generated": id_col is None,
    }


def _build_pool_locked(
    table: TextTable,
    encoder: Encoder,
    path: Path,
    *,
    batch_size: int,
    chunk_size: int,
    index_kind: str,
    max_index_memory: int,
    overwrite: bool,
    precision: str,
    on_progress: Callable[[int], None] | None,
) -> BuildResult:
    precision = check_precision(precision)
    backend = str(getattr(encoder, "backend", "torch"))
    if (m := _start_build(path, table, encoder, overwrite=overwrite, backend=backend, precision=precision)) is not None:
        return BuildResult(path, int(m["n_rows"]), int(m["n_unique_texts"]), 0, 0, skipped=True)

    uniq, inverse = _unique(table.texts)
    n_chunks = (len(uniq) + chunk_size - 1) // chunk_size
    partial = _open_partial(path, {
        "input_fingerprint": table.fingerprint,
        "text_col": table.text_col,
        "id_col": table.id_col,
        "model_fingerprint": encoder.fingerprint,
        "backend": backend,
        "chunk_size": chunk_size,
        "batch_size": batch_size,
        "n_unique": len(uniq),
        "dim": encoder.dim,
    })

    chunks = [Chunk(c, c * chunk_size, min((c + 1) * chunk_size, len(uniq))) for c in range(n_chunks)]
    todo = [ch for ch in chunks if _load_chunk(partial / ch.file_name, ch.hi - ch.lo, encoder.dim) is None]
    reused = n_chunks - len(todo)
    rows_per_unique = np.bincount(inverse, minlength=len(uniq))
    rows_done = int(sum(rows_per_unique[ch.lo : ch.hi].sum() for ch in chunks if ch not in todo))
    if on_progress and rows_done:
        on_progress(rows_done)
    for ch in todo:
        save_chunk(partial / ch.file_name, encoder.encode(uniq[ch.lo : ch.hi], batch_size=batch_size, normalize=True))
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

    _write_pool(
        path, ids=table.ids, texts=table.texts, n_unique=len(uniq), fill=fill, encoder=encoder, backend=backend,
        precision=precision, input_info=_input_info(table, table.id_col), batch_size=batch_size,
        chunk_size=chunk_size, index_kind=index_kind, max_index_memory=max_index_memory,
    )
    return BuildResult(path, len(table), len(uniq), n_embedded, reused, skipped=False)


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


def _load_chunk(f: Path, n: int, dim: int) -> np.ndarray | None:
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


# ----------------------------------------------------------------------------- building from shards read by workers


@dataclass(frozen=True)
class ShardTask:
    """One input file for an engine that reads its input itself: read ``file``, embed its texts."""

    key: str
    file: Path
    digest: str


@dataclass(frozen=True)
class ShardResult:
    """One shard read and embedded: its validated texts, ids (None: generated at assembly) and
    id column, the embeddings in row order, and how many texts were embedded for it."""

    key: str
    texts: list[str]
    ids: list[str] | None
    emb: np.ndarray
    n_embedded: int


class ShardEngine(Protocol):
    """Reads input files (with ``fmal.io.read_shard``) and embeds them; yields each shard once done."""

    def run_shards(self, tasks: list[ShardTask], *, text_col: str, id_col: str | None, chunk_size: int) -> Iterator[ShardResult]: ...


def shard_key(digest: str) -> str:
    """The name of a shard's files in ``.partial``: from its bytes, so a changed shard is redone
    and an unchanged one is reused, wherever it sits in the folder."""
    return "shard-" + digest.split(":", 1)[-1][:32]


def save_shard(partial: Path, res: ShardResult) -> None:
    """Write one finished shard: its rows (Parquet) then its embeddings (.npy, float32), each
    atomically; the .npy, written last, marks the shard done."""
    cols = {"text": res.texts} if res.ids is None else {"id": res.ids, "text": res.texts}
    with atomic_path(partial / f"{res.key}.parquet") as tmp:
        pd.DataFrame(cols).to_parquet(tmp, index=False)
    save_chunk(partial / f"{res.key}.npy", res.emb)


def _load_shard_rows(partial: Path, key: str, dim: int) -> int | None:
    """Rows of a finished shard in ``partial``, None when it is missing or unreadable (redo it)."""
    import pyarrow.parquet as pq

    try:
        n = pq.read_metadata(partial / f"{key}.parquet").num_rows
        emb = np.load(partial / f"{key}.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):  # missing, or cut short outside fmal's atomic writes (ArrowInvalid is a ValueError)
        return None
    return n if emb.shape == (n, dim) and emb.dtype == np.float32 else None


def build_pool_from_shards(
    shards: ShardList,
    encoder: Encoder,
    path: Path,
    *,
    engine: ShardEngine,
    batch_size: int = 64,
    chunk_size: int = 2048,
    index_kind: str = "auto",
    max_index_memory: int = fmal_index.DEFAULT_MAX_MEMORY,
    overwrite: bool = False,
    precision: str = "float32",
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
        precision = check_precision(precision)
        backend = str(getattr(encoder, "backend", "torch"))
        if (m := _start_build(path, shards, encoder, overwrite=overwrite, backend=backend, precision=precision)) is not None:
            return BuildResult(path, int(m["n_rows"]), int(m["n_unique_texts"]), 0, 0, skipped=True)
        partial = _open_partial(path, {
            "engine": "shards",
            "text_col": shards.text_col,
            "id_col": shards.id_col,
            "model_fingerprint": encoder.fingerprint,
            "backend": backend,
            "batch_size": batch_size,
            "dim": encoder.dim,
        })
        keys = [shard_key(d) for d in shards.digests]
        copies = Counter(keys)  # identical files share one key: read and embedded once
        rows_of = {k: n for k in set(keys) if (n := _load_shard_rows(partial, k, encoder.dim)) is not None}
        todo = list({k: ShardTask(k, f, d) for k, f, d in zip(keys, shards.files, shards.digests) if k not in rows_of}.values())
        rows_done = sum(rows_of[k] for k in keys if k in rows_of)
        if on_progress and rows_done:
            on_progress(rows_done)
        n_embedded = 0
        for res in engine.run_shards(todo, text_col=shards.text_col, id_col=shards.id_col, chunk_size=chunk_size):
            if res.emb.shape != (len(res.texts), encoder.dim):
                raise CorruptPoolError(f"shard {res.key}: embeddings of shape {res.emb.shape}, expected ({len(res.texts)}, {encoder.dim})")
            save_shard(partial, res)
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
        _write_pool(
            path, ids=ids, texts=joiner.texts, n_unique=n_unique, fill=fill, encoder=encoder, backend=backend,
            precision=precision, input_info=_input_info(shards, joiner.id_col if joiner.has_ids else None),
            batch_size=batch_size, chunk_size=chunk_size, index_kind=index_kind, max_index_memory=max_index_memory,
        )
        return BuildResult(path, len(ids), n_unique, n_embedded, len(copies) - len(todo), skipped=False)
