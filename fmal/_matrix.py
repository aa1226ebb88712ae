"""A pool's embedding matrix read in blocks, for pools larger than the RAM fmal may use.

A memory map is the fast way to read a matrix that fits in RAM, but every page it touches counts
in the process's resident memory until the process ends: one streamed pass over a 15 GB pool
leaves 15 GB resident. :class:`BlockMatrix` instead reads contiguous rows with ``pread`` into a
fresh buffer (the kernel's page cache keeps them warm; the process holds only the block), and
gathers scattered rows through a memory map whose pages it releases right after. float16 stores
are cast block by block, so every reader sees float32 and nothing is converted whole.

It is read through a small explicit interface, as faiss' ``contrib.exhaustive_search`` reads a
database through a block iterator: :meth:`BlockMatrix.iter_blocks` (a streamed pass) and
:meth:`BlockMatrix.take` (scattered rows); the module functions :func:`iter_blocks`,
:func:`take` and :func:`in_blocks` take a BlockMatrix or an ndarray alike, so callers need no
isinstance. ``np.asarray`` of a BlockMatrix over the RAM cap is an error, never a silent read of
the whole file.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmal.pool import check as pool_check
from fmal.exceptions import CorruptPoolError, InvalidInputError

#: scattered rows gathered between two releases of the mapped pages
GATHER_ROWS = 4096
#: environment variable capping the RAM a pool's embeddings may take (e.g. "8G"); default half the machine's
RAM_CAP_ENV = "FMAL_MAX_RAM"


def physical_ram() -> int:
    """Bytes of RAM on this machine (cgroup limits not considered)."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def ram_cap() -> int:
    """Bytes of RAM a pool's float32 embeddings may occupy before fmal reads them in blocks:
    ``$FMAL_MAX_RAM`` ("8G", "512M", bytes) or half the machine's RAM."""
    from fmal.index import parse_memory  # index imports nothing from here

    text = os.environ.get(RAM_CAP_ENV, "").strip()
    if not text:
        return physical_ram() // 2
    try:
        return parse_memory(text)
    except InvalidInputError:
        raise InvalidInputError(f"{RAM_CAP_ENV}={text!r}: give a size such as 8G or 512M") from None


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB', 15360000000 -> '14.3 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class BlockMatrix:
    """Read-only ``[n, d]`` float32 view of a ``.npy`` file (float32 or float16) that is never
    loaded or mapped whole: read it with :meth:`iter_blocks` (rows in order, block by block) and
    :meth:`take` (given rows). ``shape``, ``dtype``, ``len()`` and indexing (``X[a:b]``,
    ``X[rows]``, ``X[rows, cols]``: reads of the rows named, for code written against arrays)
    work too. ``np.asarray(X)`` reads it whole only while it fits the RAM cap; above, it raises."""

    ndim = 2
    dtype = np.dtype(np.float32)
    #: read block by block (see :func:`in_blocks`)
    in_blocks = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if fortran or len(shape) != 2 or dtype not in (np.dtype(np.float32), np.dtype(np.float16)):
            raise InvalidInputError(f"{self.path}: expected a C-order 2-D float32 or float16 array, got {dtype} {shape}")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))
        self.stored_dtype = np.dtype(dtype)
        self._row_bytes = self.shape[1] * self.stored_dtype.itemsize
        self._fd = os.open(self.path, os.O_RDONLY)
        self._map: np.memmap | None = None

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)
            self._fd = None

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 matrix this stands for (not of the file)."""
        return self.size * 4

    def __repr__(self) -> str:
        return f"BlockMatrix({str(self.path)!r}, shape={self.shape}, stored={self.stored_dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """The whole matrix, while it fits the RAM cap; above it, InvalidInputError (a pool over
        the cap is read with :meth:`iter_blocks` or :meth:`take`, never whole)."""
        if self.nbytes > (cap := ram_cap()):
            raise InvalidInputError(
                f"{self.path}: {format_bytes(self.nbytes)} of float32 embeddings exceed the RAM cap "
                f"({format_bytes(cap)}, ${RAM_CAP_ENV}): read them in blocks (iter_blocks, take), or raise ${RAM_CAP_ENV}"
            )
        out = self._slice(0, self.shape[0])
        return out if dtype is None else out.astype(dtype, copy=False)

    def iter_blocks(self, rows_per_block: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, float32 rows) of rows ``start:stop`` in order, ``rows_per_block`` at a time,
        each read with ``pread`` into a fresh buffer: one block in memory at a time."""
        stop = self.shape[0] if stop is None else min(stop, self.shape[0])
        for s in range(start, stop, max(1, int(rows_per_block))):
            yield s, self._slice(s, min(s + rows_per_block, stop))

    def take(self, rows: Any) -> np.ndarray:
        """float32 rows ``rows`` (ints, negative from the end, or a boolean mask over all rows)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (self.shape[0],):
                raise IndexError(f"boolean row mask of shape {rows.shape} for {self.shape[0]} rows")
            rows = np.flatnonzero(rows)
        return self._gather(rows)

    def __getitem__(self, key: Any) -> np.ndarray:
        cols: Any = slice(None)
        if isinstance(key, tuple):
            if len(key) == 0 or len(key) > 2:
                raise IndexError(f"BlockMatrix takes X[rows] or X[rows, cols], got {key!r}")
            key, cols = key[0], key[1] if len(key) == 2 else slice(None)
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"row {int(key)} out of range for {n} rows")
            out = self._slice(i, i + 1)[0]
        elif isinstance(key, slice):
            start, stop, step = key.indices(n)
            out = self._slice(start, stop) if step == 1 else self._gather(np.arange(start, stop, step))
        else:
            out = self.take(key)
        return out if isinstance(cols, slice) and cols == slice(None) else out[..., cols]

    def _slice(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop read with pread: a fresh float32 array, no mapped pages left behind."""
        m = max(stop - start, 0)
        raw = np.empty((m, self.shape[1]), dtype=self.stored_dtype)
        if raw.size == 0:
            return raw.astype(np.float32)
        buf = memoryview(raw.reshape(-1).view(np.uint8))
        done, want, pos = 0, m * self._row_bytes, self._offset + start * self._row_bytes
        while done < want:
            got = os.preadv(self._fd, [buf[done:]], pos + done)
            if got <= 0:
                raise CorruptPoolError(f"{self.path}: file ends before row {stop}; {pool_check.repair_hint(self.path.parent)}")
            done += got
        return raw if self.stored_dtype == np.float32 else raw.astype(np.float32)

    def _gather(self, rows: np.ndarray) -> np.ndarray:
        """Scattered rows, through a memory map read without read-ahead (MADV_RANDOM: a fault
        maps its own page, not its neighbours, which on a sample would map most of the file) and
        released after every GATHER_ROWS rows."""
        rows = rows.astype(np.int64, copy=False)
        n = self.shape[0]
        if rows.size and (rows.min() < -n or rows.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        if self._map is None:
            self._map = np.memmap(self.path, dtype=self.stored_dtype, mode="r", offset=self._offset, shape=self.shape)
            self._madvise("MADV_RANDOM")
        out = np.empty(rows.shape + (self.shape[1],), dtype=np.float32)
        flat, dest = rows.reshape(-1), out.reshape(-1, self.shape[1])
        for s in range(0, flat.size, GATHER_ROWS):
            dest[s : s + GATHER_ROWS] = self._map[flat[s : s + GATHER_ROWS]]
            self._madvise("MADV_DONTNEED")  # drop the touched pages from this process; the page cache keeps them
        return out

    def _madvise(self, advice: str) -> None:
        mm = getattr(self._map, "_mmap", None)
        if mm is not None and hasattr(mmap, advice):
            mm.madvise(getattr(mmap, advice))


def in_blocks(X: Any) -> bool:
    """Whether ``X`` is read block by block (a :class:`BlockMatrix`: over the RAM cap, or a file
    ingested without keeping its pages) rather than held or memory-mapped whole."""
    return bool(getattr(X, "in_blocks", False))


def iter_blocks(X: Any, rows_per_block: int, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 C-contiguous rows) of ``X`` (an array, memmap or BlockMatrix) in order."""
    if in_blocks(X):
        yield from X.iter_blocks(rows_per_block, start, stop)
        return
    stop = X.shape[0] if stop is None else min(stop, X.shape[0])
    for s in range(start, stop, max(1, int(rows_per_block))):
        yield s, np.ascontiguousarray(X[s : min(s + rows_per_block, stop)], dtype=np.float32)


def take(X: Any, rows: Any) -> np.ndarray:
    """float32 rows ``rows`` of ``X`` (an array, memmap or BlockMatrix)."""
    return X.take(rows) if in_blocks(X) else np.asarray(X[np.asarray(rows)], dtype=np.float32)
