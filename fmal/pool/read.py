"""Reading a built pool: where it lives (:func:`pool_path`), the one way to open it
(:func:`open_pool`) and its rows and embeddings, read lazily (:class:`Pool`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from fmal import index as fmal_index
from fmal._lazy import lazy_module
from fmal._matrix import BlockMatrix, format_bytes, in_blocks, ram_cap
from fmal._validation import check_pool_name
from fmal.exceptions import CorruptPoolError, InvalidInputError, LabelsError, PoolNotFoundError
from fmal.pool import check as pool_check
from fmal.pool.files import DEFAULT_INDEX_DIR, EMBEDDINGS, INDEX, MANIFEST, PARTIAL, ROWS
from fmal.pool.manifest import Manifest, read_manifest

pd = lazy_module("pandas")  # imported on first use: fmal status and info read no table (0.3 s)
pa = lazy_module("pyarrow")
pc = lazy_module("pyarrow.compute")
pq = lazy_module("pyarrow.parquet")

log = logging.getLogger(__name__)


def pool_path(pool: str | Path, index_dir: str | Path | None = None) -> Path:
    """Folder of a pool given its name (under ``index_dir``, default ``./indexes``) or its path.

    A pool with a path separator (``./p``, ``../p``, ``/data/p``) is that folder; it is not
    combined with ``index_dir``, which applies to names only (giving both is an error)."""
    p = Path(pool)
    if len(p.parts) > 1 or "/" in str(pool) or os.sep in str(pool):  # Path("./p").parts is ('p',)
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
    manifest: Manifest
    _row_of: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n(self) -> int:
        return self.manifest.n_rows

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @cached_property
    def ids(self) -> np.ndarray:
        """Read on first use: ``fmal status`` and ``info`` need none (a 1M-row pool's ids take ~1 s)."""
        return read_rows(self.path, ["id"])["id"].to_numpy(dtype=object)

    @cached_property
    def texts(self) -> np.ndarray:
        return read_rows(self.path, ["text"])["text"].to_numpy(dtype=object)

    @cached_property
    def embeddings(self) -> np.ndarray:
        """[n, dim] float32, never loaded whole unless it fits: see :func:`open_embeddings`.
        ``stored_embeddings`` gives the raw memmap (float32 or float16)."""
        return open_embeddings(self.path / EMBEDDINGS, self.n, self.dim, self.manifest.precision)

    @property
    def read_in_blocks(self) -> bool:
        """True when the pool's embeddings exceed the RAM cap and are read block by block."""
        return in_blocks(self.embeddings)

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
            self.path / INDEX, n=self.n, dim=self.dim, search_params=self.manifest.index.search_params, mmap=True,
            kind=self.manifest.index.type,
        )

    def _row_map(self) -> dict[str, int]:
        if not self._row_of:
            self._row_of = {str(x): i for i, x in enumerate(self.ids)}
        return self._row_of

    def _column(self, name: str) -> pa.ChunkedArray:
        """One column of the rows file as Arrow (no Python object per row)."""
        cache = self.__dict__.setdefault("_columns", {})
        if name not in cache:
            f = self.path / ROWS
            try:
                cache[name] = pq.read_table(f, columns=[name]).column(name)
            except Exception:
                raise CorruptPoolError(f"{f}: missing or unreadable; {pool_check.repair_hint(self.path)}") from None
        return cache[name]

    def _found(self, ids: list[str]) -> dict[str, int] | None:
        """id -> row of those of ``ids`` in the pool, found by one Arrow membership pass over the id
        column: for a few ids (labels, queued picks) of a big pool, instead of reading every id into
        Python and mapping them (1M rows: 0.5-1.4 s). None when the full map is cheaper or built."""
        if self._row_of or len(ids) * 20 > self.n or not all(type(x) is str for x in ids):
            return None
        if not ids:
            return {}
        col = self._column("id")
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            return None  # ids stored otherwise (not written by fmal): the map compares them as str
        rows = np.flatnonzero(pc.is_in(col, value_set=pa.array(ids, pa.string())).to_numpy(zero_copy_only=False))
        return dict(zip(col.take(pa.array(rows)).to_pylist(), rows.tolist()))

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """The ids of ``rows`` (object array), without reading every id into Python."""
        return self.ids[rows] if "ids" in self.__dict__ else self._column("id").take(pa.array(rows)).to_numpy(zero_copy_only=False)

    def texts_of(self, rows: np.ndarray) -> np.ndarray:
        """The texts of ``rows`` (object array), without reading every text into Python."""
        return self.texts[rows] if "texts" in self.__dict__ else self._column("text").take(pa.array(rows)).to_numpy(zero_copy_only=False)

    def in_pool(self, ids: list[str]) -> list[str]:
        """The ``ids`` that are rows of this pool, in their order (one id map shared with rows_of)."""
        row_of = self._found(ids)
        if row_of is None:
            row_of = self._row_map()
        return [x for x in ids if x in row_of]

    def rows_of(self, ids: list[str] | np.ndarray, *, source: str = "labels") -> np.ndarray:
        """Row numbers of ``ids``; unknown ids are an error naming a few of them."""
        ids = list(ids)
        row_of = self._found(ids)
        if row_of is None:
            row_of = self._row_map()
        missing = [x for x in ids if x not in row_of]
        if missing:
            shown = ", ".join(repr(x) for x in missing[:5])
            raise LabelsError(
                f"{source}: {len(missing)} id(s) are not in pool {self.name!r} ({shown}"
                f"{', ...' if len(missing) > 5 else ''}); check the file belongs to this pool"
            )
        return np.fromiter((row_of[x] for x in ids), dtype=np.int64, count=len(ids))


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


def read_rows(path: Path, columns: list[str]) -> pd.DataFrame:
    f = path / ROWS
    try:
        return pd.read_parquet(f, columns=columns)
    except Exception:
        raise CorruptPoolError(f"{f}: missing or unreadable; {pool_check.repair_hint(path)}") from None


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
