"""The embedding store of a pool: one folder with a JSON manifest, the rows (ids and texts, Parquet),
the embeddings (.npy, read memory-mapped) and a FAISS index.

    indexes/NAME/
        manifest.json     written last: its presence means the pool is complete; records each derived
                          file's size, sha256 and shape (fmal.pool_check)
        rows.parquet      id, text
        embeddings.npy    float32 (or float16: --precision) [n_rows, dim], L2-normalised
        index.faiss       FAISS index over embeddings.npy
        labels.db         labels, answers, rounds and their files: the truth (fmal.session)
        labels.csv        view of the current labels (id,label), rewritten from labels.db
        rounds/, probes/  each round's picks (a view) and stored probe
        .lock             the pool's write lock (fmal._lock)
        .partial/         while embedding: progress.json + one .npy per finished chunk
                          (Ray engine: one .parquet + .npy per finished input shard)

Embedding is resumable: chunks of unique texts are written one at a time (temp file, then
rename); a rerun with the same input and model skips the finished ones, and since a chunk's
batches do not depend on what ran before, the result is byte-identical to an uninterrupted run.
The Ray engine reads the input itself and resumes per input shard (``build_pool_from_shards``);
both paths end in ``_write_pool``, so the pool format is one.

A rerun on a finished pool checks its derived files (fmal.pool_check); ``repair=True`` rebuilds the
missing or damaged ones and leaves the session (labels, rounds) alone. ``overwrite`` never deletes
the session: it keeps it (``labels="keep"``) or moves it to ``backup-<time>/`` (fmal.human_work).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fmal import index as fmal_index
from fmal import human_work, pool_check
from fmal._atomic import atomic_path, write_json
from fmal._lock import pool_lock
from fmal._matrix import BlockMatrix, format_bytes, ram_cap
from fmal._validation import check_pool_name
from fmal._version import __version__
from fmal.encoders import Encoder
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError, ModelMismatchError, PoolExistsError, PoolNotFoundError
from fmal.human_work import has_human_work  # noqa: F401  (fmal.store.has_human_work: what --overwrite must not lose)
from fmal.io import ShardJoiner, ShardList, TextTable
from fmal._lazy import lazy_module

pd = lazy_module("pandas")  # imported on first use: fmal status and info read no table (0.3 s)

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
    """Folder of a pool given its name (under ``index_dir``, default ``./indexes``) or its path.

    A pool with a path separator (``./p``, ``../p``, ``/data/p``) is that folder; it is not
    combined with ``index_dir``, which applies to names only (giving both is an error)."""
    p = Path(pool)
    if len(p.parts) > 1:
        if index_dir is not None:
            raise InvalidInputError(
                f"--pool {pool}: a pool given as a path (with a '/') is that folder and --index-dir applies to pool "
                f"names only (got --index-dir {index_dir}); give a plain name with --index-dir, or the path alone"
            )
        return p
    if p.is_dir() and (p / MANIFEST).exists() and index_dir is None:
        return p
    check_pool_name(str(pool))
    return Path(index_dir if index_dir is not None else DEFAULT_INDEX_DIR) / str(pool)


@dataclass
class Pool:
    """A built pool, opened read-only: manifest, ids, texts, memory-mapped embeddings, index."""

    path: Path
    manifest: dict[str, Any]
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
    def ids(self) -> np.ndarray:
        """Read on first use: ``fmal status`` and ``info`` need none (a 1M-row pool's ids take ~1 s)."""
        return _read_rows(self.path, ["id"])["id"].to_numpy(dtype=object)

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
            raise CorruptPoolError(f"{f}: unreadable embeddings; {pool_check.repair_hint(self.path, self.manifest)}") from None

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
        raise CorruptPoolError(f"{f}: unreadable embeddings; {pool_check.repair_hint(f.parent)}") from None
    if X.shape != (n, dim) or X.dtype != np.dtype(dtype):
        raise CorruptPoolError(
            f"{f}: shape {X.shape} {X.dtype} disagrees with the manifest ({n}, {dim}) {dtype}; "
            + pool_check.repair_hint(f.parent)
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
        raise CorruptPoolError(f"{f}: missing or unreadable; {pool_check.repair_hint(path)}") from None


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest of a pool folder, None when there is none, CorruptPoolError when unreadable."""
    f = path / MANIFEST
    if not f.exists():
        return None
    try:
        m = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptPoolError(f"{f}: not valid JSON; {pool_check.repair_hint(path)}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or "n_rows" not in m or "dim" not in m:
        raise CorruptPoolError(f"{f}: not an fmal pool manifest; {pool_check.repair_hint(path)}")
    bad = [k for k in ("n_rows", "dim") if isinstance(m[k], bool) or not isinstance(m[k], int) or m[k] < 1]
    bad += [k for k in ("model", "input", "index") if not isinstance(m.get(k), dict)]
    if bad:
        raise CorruptPoolError(
            f"{f}: field(s) {', '.join(bad)} missing or invalid (n_rows and dim must be positive integers); "
            + pool_check.repair_hint(path)
        )
    _check_fields(m, f)
    return m


#: (section, field, types, required) of the manifest fields that commands read: a hand-edited or
#: damaged manifest gets one line naming the field, not a KeyError or TypeError later on
_FIELDS: tuple[tuple[str | None, str, tuple[type, ...], bool], ...] = (
    (None, "n_unique_texts", (int,), True),
    (None, "dtype", (str,), False),
    ("model", "name", (str,), True),
    ("model", "backend", (str,), False),
    ("input", "path", (str,), True),
    ("input", "format", (str,), True),
    ("input", "text_col", (str,), False),  # None for a pool of external embeddings without texts
    ("index", "type", (str,), True),
    ("index", "metric", (str,), False),  # always inner product; info prints unknown when missing
    ("index", "ntotal", (int,), True),
    ("index", "factory", (str,), False),
    ("index", "reason", (str,), False),
    ("index", "search_params", (dict,), False),
    ("index", "recall_at_10", (int, float), False),
    ("index", "max_memory", (int, float), False),
    ("index", "bytes_per_vector", (int, float), False),
)


def _check_fields(m: dict[str, Any], f: Path) -> None:
    for section, key, types, required in _FIELDS:
        part = m if section is None else m[section]
        name = key if section is None else f"{section}.{key}"
        if key not in part or part[key] is None:
            if required:
                raise CorruptPoolError(f"{f}: field {name} is missing; {pool_check.repair_hint(f.parent)}")
            continue
        value = part[key]
        if isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, (int, float)) and not value >= 0):
            want = " or ".join("an integer >= 0" if t is int else "a number >= 0" if t is float else "an object" if t is dict else "a string" for t in types)
            raise CorruptPoolError(f"{f}: field {name} must be {want}, got {type(value).__name__}; {pool_check.repair_hint(f.parent)}")
    if m.get("dtype", "float32") not in ("float32", "float16"):
        raise CorruptPoolError(f"{f}: field dtype must be float32 or float16, got {str(m['dtype'])[:40]!r}; {pool_check.repair_hint(f.parent)}")


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
    if problems := pool_check.check_pool(path, m, checksums=False):  # presence, sizes, shapes: no file read whole
        raise CorruptPoolError(pool_check.describe(path, problems, m))
    return Pool(path=path, manifest=m)


# ----------------------------------------------------------------------------- building


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
    labels: str | None = None,
    repair: bool = False,
    precision: str = "float32",
    on_progress: Callable[[int], None] | None = None,
) -> BuildResult:
    """Embed ``table`` with ``encoder`` into the pool folder ``path``, in this process, chunk after
    chunk of distinct texts, resuming unfinished work (the Ray engine, which reads its own input,
    uses :func:`build_pool_from_shards`).

    ``precision`` is the dtype of the stored embeddings (float16: half the disk; readers convert).
    ``overwrite`` rebuilds the pool; on a pool with labels it needs ``labels`` = "keep" (the
    session's files stay) or "drop" (they move to a backup folder in the pool). ``repair`` rebuilds
    the derived files that are missing or damaged (see :mod:`fmal.pool_check`), keeping the session;
    without it a damaged pool is a CorruptPoolError.

    ``on_progress(n)`` is called with the number of rows finished after each chunk.
    """
    path.mkdir(parents=True, exist_ok=True)
    with _pool_lock(path):
        return _build_pool_locked(
            table, encoder, path, batch_size=batch_size, chunk_size=chunk_size, index_kind=index_kind,
            max_index_memory=max_index_memory, overwrite=overwrite, labels=labels, repair=repair, precision=precision,
            on_progress=on_progress,
        )


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

    manifest: dict[str, Any] | None = None
    backup: Path | None = None


def _start_build(
    path: Path, source: TextTable | ShardList, encoder: Encoder, *, overwrite: bool, backend: str, precision: str,
    labels: str | None = None, repair: bool = False,
) -> _Start:
    """Clear the pool for ``overwrite`` (its session kept or moved to a backup, by ``labels``);
    return the manifest of a finished pool built from this input and model (nothing to do, or a
    repair), raise when the pool was built from something else or is damaged and not repaired."""
    backup = None
    if overwrite and path.exists():
        human_work.refuse_overwrite(path, labels)
        for name in (MANIFEST, ROWS, EMBEDDINGS, INDEX, PARTIAL, "reports"):  # derived: rebuilt from the input
            p = path / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        if labels != "keep":
            backup = human_work.move_to_backup(path)
    if not overwrite:
        try:
            m = check_existing(path, source, encoder.name, encoder.fingerprint, backend, precision)
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
    # a run killed while assembling leaves its temp files behind (as large as the embeddings): drop them
    for name in (EMBEDDINGS, ROWS, INDEX, MANIFEST):
        for stale in path.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    if not overwrite and not isinstance(source, ShardList) and (gone := human_work.labeled_ids(path) - set(source.ids)):
        # no finished pool (an unreadable manifest, or one deleted) but labels: they must fit this input
        raise PoolExistsError(
            f"{path}: {len(gone)} labeled id(s) are not in {source.path} (e.g. {sorted(gone)[0]!r}); "
            "embed the input those labels belong to, or pass --overwrite --drop-labels"
        )
    return _Start(None, backup)


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
    fill: Callable[[np.ndarray], None] | None,
    encoder: Encoder,
    backend: str,
    precision: str,
    input_info: dict[str, Any],
    batch_size: int,
    chunk_size: int,
    index_kind: str,
    max_index_memory: int,
    blocks: Iterable[np.ndarray] | None = None,
    normalized: bool = True,
    model_info: dict[str, Any] | None = None,
    read_in_blocks: bool = False,
) -> None:
    """Write a finished pool: embeddings (``fill`` writes them, in row order, into the
    [n_rows, dim] array it is given; or ``blocks`` of rows in order are streamed to the file;
    neither: the embeddings file is already written), rows, index, then the manifest; drop
    ``.partial``. Every engine, and embeddings made elsewhere (:mod:`fmal.external`), end here,
    so every pool has the same format."""
    if blocks is not None:
        _write_embeddings_stream(path, len(ids), encoder.dim, precision, blocks)
    elif fill is not None:
        _write_embeddings(path, len(ids), encoder.dim, precision, fill)
    _write_rows(path, ids, texts)
    index_info = _write_index(path, len(ids), encoder.dim, precision, index_kind, max_index_memory, read_in_blocks)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fmal_version": __version__,
        "n_rows": len(ids),
        "n_unique_texts": n_unique,
        "dim": encoder.dim,
        "dtype": precision,
        "normalized": normalized,
        "model": model_info or {
            "name": encoder.name,
            "fingerprint": encoder.fingerprint,
            "max_seq_length": getattr(encoder, "max_seq_length", None),
            "backend": backend,
            "device": getattr(encoder, "device", None),
            "threads": getattr(encoder, "threads", None),
            "onnx_file": getattr(encoder, "onnx_file", None),
            "onnx_fused": getattr(encoder, "onnx_fused", None),  # False: the export fell back to the unfused graph
        },
        "input": input_info,
        "embedding": {"batch_size": batch_size, "chunk_size": chunk_size},
        "index": index_info,
        "files": {"rows": ROWS, "embeddings": EMBEDDINGS, "index": INDEX},
    }
    _write_manifest(path, manifest)


def _write_embeddings(path: Path, n: int, dim: int, precision: str, fill: Callable[[np.ndarray], None]) -> None:
    with atomic_path(path / EMBEDDINGS) as tmp:
        X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.dtype(precision), shape=(n, dim))
        fill(X)
        X.flush()
        del X


def _write_embeddings_stream(path: Path, n: int, dim: int, precision: str, blocks: Iterable[np.ndarray]) -> None:
    """Write the embeddings file from ``blocks`` of rows in order, with plain writes: only one
    block is ever in memory (a memory map would keep every page written resident)."""
    dtype = np.dtype(precision)
    with atomic_path(path / EMBEDDINGS) as tmp:
        with open(tmp, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                                                      "shape": (n, dim)})
            done = 0
            for b in blocks:
                fh.write(np.ascontiguousarray(b, dtype=dtype).tobytes())
                done += len(b)
            if done != n:
                raise CorruptPoolError(f"{path / EMBEDDINGS}: {done} rows written, {n} expected")
            fh.flush()
            os.fsync(fh.fileno())


def _write_rows(path: Path, ids: list[str], texts: list[str]) -> None:
    with atomic_path(path / ROWS) as tmp:
        pd.DataFrame({"id": ids, "text": texts}).to_parquet(tmp, index=False)


def _write_index(path: Path, n: int, dim: int, precision: str, index_kind: str, max_index_memory: int,
                 read_in_blocks: bool = False) -> dict[str, Any]:
    """Build the index over the pool's embeddings file and save it; return its manifest record.
    ``read_in_blocks``: read the file with ``pread`` (:class:`BlockMatrix`) even when it would fit
    the RAM cap, so the pages read do not stay resident (ingesting a file made elsewhere)."""
    X = BlockMatrix(path / EMBEDDINGS) if read_in_blocks else open_embeddings(path / EMBEDDINGS, n, dim, precision)
    idx, index_info = fmal_index.build(X, index_kind, max_memory=max_index_memory)
    del X
    fmal_index.save_index(idx, path / INDEX)
    return index_info


def _write_manifest(path: Path, manifest: dict[str, Any], known: dict[str, Any] | None = None) -> None:
    """Record each derived file's size, sha256 and shape (``known``: records still valid, of files
    verified and kept), write the manifest (last: it marks the pool complete), drop ``.partial``."""
    n, dim = int(manifest["n_rows"]), int(manifest["dim"])
    shapes = {ROWS: (n, 2), EMBEDDINGS: (n, dim), INDEX: (n, dim)}
    checks = {}
    for name, shape in shapes.items():
        old = (known or {}).get(name)
        if isinstance(old, dict) and old.get("sha256"):
            checks[name] = {**old, "shape": list(shape)}
        else:
            checks[name] = pool_check.file_record(path / name, shape)
    write_json(path / MANIFEST, {**manifest, "file_checks": checks})
    shutil.rmtree(path / PARTIAL, ignore_errors=True)


def _repair(
    m: dict[str, Any], table: TextTable, encoder: Encoder, path: Path, *, backend: str, precision: str, batch_size: int,
    chunk_size: int, index_kind: str, max_index_memory: int, on_progress: Callable[[int], None] | None,
) -> BuildResult:
    """Rebuild the derived files of a finished pool that are missing or damaged, from ``table``
    (rows), the encoder (embeddings, resumable in chunks like a build) and the embeddings (index);
    rewrite the manifest. The session (labels, rounds) is not touched."""
    n, n_unique = len(table), len(set(table.texts))
    problems = pool_check.check_pool(path, m, n=n, dim=encoder.dim, checksums=True)
    if not problems:
        return BuildResult(path, n, n_unique, 0, 0, skipped=True)
    log.info("%s", pool_check.describe(path, problems, m))
    bad = {p.file for p in problems} - {MANIFEST}
    old = m.get("file_checks") if isinstance(m.get("file_checks"), dict) else {}
    if ROWS in bad:
        _write_rows(path, table.ids, table.texts)
    n_embedded = reused = 0
    if EMBEDDINGS in bad:
        fill, _, n_embedded, reused = _embed_chunks(table, encoder, path, backend=backend, batch_size=batch_size,
                                                    chunk_size=chunk_size, on_progress=on_progress)
        _write_embeddings(path, n, encoder.dim, precision, fill)
        if pool_check.sha256_file(path / EMBEDDINGS) != (old.get(EMBEDDINGS) or {}).get("sha256"):
            bad.add(INDEX)  # new vectors (or none recorded to compare): the index is rebuilt from them
    index_info = m.get("index", {})
    if INDEX in bad:
        kind = str(index_info.get("type") or index_kind)  # the pool's own choice, not a new one
        index_info = _write_index(path, n, encoder.dim, precision, kind, int(index_info.get("max_memory") or max_index_memory))
    manifest = {**m, "n_rows": n, "n_unique_texts": n_unique, "dim": encoder.dim, "index": index_info}
    _write_manifest(path, manifest, known={k: v for k, v in old.items() if k not in bad})
    return BuildResult(path, n, n_unique, n_embedded, reused, skipped=False, repaired=tuple(sorted(bad)) or (MANIFEST,))


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
    labels: str | None,
    repair: bool,
    precision: str,
    on_progress: Callable[[int], None] | None,
) -> BuildResult:
    precision = check_precision(precision)
    backend = str(getattr(encoder, "backend", "torch"))
    start = _start_build(path, table, encoder, overwrite=overwrite, backend=backend, precision=precision, labels=labels, repair=repair)
    if (m := start.manifest) is not None:
        if repair:
            return _repair(m, table, encoder, path, backend=backend, precision=precision, batch_size=batch_size,
                           chunk_size=chunk_size, index_kind=index_kind, max_index_memory=max_index_memory, on_progress=on_progress)
        return BuildResult(path, int(m["n_rows"]), int(m["n_unique_texts"]), 0, 0, skipped=True)
    fill, n_unique, n_embedded, reused = _embed_chunks(table, encoder, path, backend=backend, batch_size=batch_size,
                                                       chunk_size=chunk_size, on_progress=on_progress)
    _write_pool(
        path, ids=table.ids, texts=table.texts, n_unique=n_unique, fill=fill, encoder=encoder, backend=backend,
        precision=precision, input_info=_input_info(table, table.id_col), batch_size=batch_size,
        chunk_size=chunk_size, index_kind=index_kind, max_index_memory=max_index_memory,
    )
    return BuildResult(path, len(table), n_unique, n_embedded, reused, skipped=False, backup=start.backup)


def _embed_chunks(
    table: TextTable, encoder: Encoder, path: Path, *, backend: str, batch_size: int, chunk_size: int,
    on_progress: Callable[[int], None] | None,
) -> tuple[Callable[[np.ndarray], None], int, int, int]:
    """Embed the distinct texts of ``table`` chunk by chunk into ``.partial`` (reusing the chunks
    an interrupted run finished); return (fill, distinct texts, texts embedded now, chunks reused),
    ``fill(X)`` writing the rows' embeddings in order into X."""
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

    return fill, len(uniq), n_embedded, reused


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
    labels: str | None = None,
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
        start = _start_build(path, shards, encoder, overwrite=overwrite, backend=backend, precision=precision, labels=labels)
        if (m := start.manifest) is not None:  # a repair reads the input here: fmal.api.embed uses build_pool for it
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
        return BuildResult(path, len(ids), n_unique, n_embedded, len(copies) - len(todo), skipped=False, backup=start.backup)
