"""Health of a pool's derived files (rows.parquet, embeddings.npy, index.faiss) against its manifest.

The manifest records, per derived file, its size, sha256 and shape (``file_checks``; no times, so
an interrupted build still ends byte-identical). A check always verifies presence, size and shape
from the files' headers (cheap: no file is read whole); the sha256 is streamed only when asked
(``fmal embed --repair``) or when a file is newer than the manifest (written last, so a newer file
was changed afterwards). After such a file's checksum matched, ``fmal embed`` sets the manifest's
mtime to now (:func:`mark_verified`), so the next run does not hash it again. Manifests from before
``file_checks`` are checked by shape and size alone.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fmal.pool.files import EMBEDDINGS, INDEX, MANIFEST, ROWS

if TYPE_CHECKING:
    from fmal.pool.manifest import Manifest

DERIVED = (ROWS, EMBEDDINGS, INDEX)
_BLOCK = 4 << 20  # sha256 is streamed in 4 MiB blocks: bounded memory for any file size


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of a pool."""

    file: str
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.what}"


def sha256_file(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return "sha256:" + h.hexdigest()


class StreamSha256:
    """sha256 of the chunks a writer writes, hashed on a worker thread while the writer goes on to
    its next chunk (hashlib releases the GIL): a file is hashed as it is written, in about the time
    of whichever is slower, never by reading it back. One chunk in flight at a time (the writer
    waits for it before handing over the next), so memory stays one chunk."""

    def __init__(self, first: bytes = b"") -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._h = hashlib.sha256(first)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fmal-sha256")
        self._pending: Any = None

    def update(self, chunk: Any) -> None:
        """Hash ``chunk`` (bytes or a contiguous buffer the caller no longer changes) next."""
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._h.update, chunk)

    def hexdigest(self) -> str:
        """'sha256:<hex>' of everything passed to :meth:`update` (waits for the last chunk)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        self._pool.shutdown()
        return "sha256:" + self._h.hexdigest()


def file_record(f: Path, shape: tuple[int, ...]) -> dict[str, Any]:
    """What the manifest records of a derived file it was just written."""
    return {"size": f.stat().st_size, "sha256": sha256_file(f), "shape": list(shape)}


def rows_shape(f: Path, rec: Any = None, since: int = 0) -> tuple[int, int]:
    """(rows, columns) of a Parquet file; raises OSError/ValueError when unreadable.

    When the manifest recorded the file (``rec``: its size and shape) and the file has that size
    and is not newer than the manifest (``since``), the recorded shape stands: importing
    pyarrow.parquet to read the footer costs ~0.3 s, most of ``fmal status``. Otherwise pyarrow
    reads the footer."""
    shape = rec.get("shape") if isinstance(rec, dict) else None
    if isinstance(shape, list) and len(shape) == 2 and all(type(x) is int for x in shape):  # a hand-edited record: read the footer
        st = f.stat()
        if rec.get("size") == st.st_size and st.st_mtime_ns <= since:
            return shape[0], shape[1]
    import pyarrow.parquet as pq

    meta = pq.read_metadata(f)
    names = set(meta.schema.names)
    if not {"id", "text"} <= names:
        raise ValueError("no id and text columns")
    return meta.num_rows, meta.num_columns


def npy_header(f: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes expected) of an .npy file from its header alone."""
    with open(f, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format {version}")
        offset = fh.tell()
    if fortran or dtype.hasobject:
        raise ValueError("not a C-ordered numeric array")
    return tuple(shape), dtype, offset + int(np.prod(shape)) * dtype.itemsize


def index_shape(f: Path) -> tuple[int, int]:
    """(ntotal, dim) of a FAISS index file from its header: a 4-byte type code, int32 d, int64 ntotal."""
    with open(f, "rb") as fh:
        head = fh.read(16)
    if len(head) < 16 or not head[:4].isalnum():
        raise ValueError("not a FAISS index")
    d, ntotal = struct.unpack("<iq", head[4:16])
    return ntotal, d


def check_pool(path: Path, m: Manifest, *, n: int | None = None, dim: int | None = None,
               checksums: bool | None = None) -> list[Problem]:
    """What is wrong with the derived files of the pool at ``path`` (manifest ``m``); [] when nothing.

    ``n`` and ``dim`` are the true row count and dimension when known (the input's and the model's,
    during a repair); else the manifest's. ``checksums``: True always streams the recorded sha256,
    False never, None only for files newer than the manifest."""
    m_n, m_dim = m.n_rows, m.dim
    n = m_n if n is None else n
    dim = m_dim if dim is None else dim
    problems: list[Problem] = []
    if (m_n, m_dim) != (n, dim):
        problems.append(Problem(MANIFEST, f"says {m_n} rows of dim {m_dim}, the input and model give {n} of dim {dim}"))
    records = m.file_records
    since = _manifest_mtime(path)
    dtype = m.precision
    for name in DERIVED:
        f = path / name
        if not f.is_file():
            problems.append(Problem(name, "missing"))
            continue
        try:
            if name == ROWS:
                rows, _ = rows_shape(f, records.get(name), since)
                bad = None if rows == n else f"{rows} rows, expected {n}"
            elif name == EMBEDDINGS:
                shape, dt, expected = npy_header(f)
                size = f.stat().st_size
                bad = (f"shape {shape} {dt}, expected ({n}, {dim}) {dtype}" if shape != (n, dim) or dt != np.dtype(dtype)
                       else f"{size} bytes, its header needs {expected} (truncated)" if size != expected else None)
            else:
                ntotal, d = index_shape(f)
                bad = None if (ntotal, d) == (n, dim) else f"holds {ntotal} vectors of dim {d}, expected {n} of dim {dim}"
        except (OSError, ValueError, EOFError, struct.error):
            bad = "unreadable"
        if bad is None:
            bad = _against_record(f, records.get(name), checksums, since)
        if bad is not None:
            problems.append(Problem(name, bad))
    return problems


def _manifest_mtime(path: Path) -> int:
    try:
        return (path / MANIFEST).stat().st_mtime_ns
    except OSError:
        return 0


def _against_record(f: Path, rec: Any, checksums: bool | None, since: int) -> str | None:
    if not isinstance(rec, dict):
        return None  # a manifest from before file_checks: shape and size only
    st = f.stat()
    if rec.get("size") is not None and st.st_size != rec["size"]:
        return f"{st.st_size} bytes, the manifest recorded {rec['size']}"
    if checksums is False or (checksums is None and st.st_mtime_ns <= since):
        return None
    if rec.get("sha256") and sha256_file(f) != rec["sha256"]:
        return "checksum differs from the one recorded (the file was changed after it was written)"
    return None


def needs_checksum(path: Path, m: Manifest) -> bool:
    """Whether a derived file with a recorded checksum is newer than the manifest (a check hashes it)."""
    records = m.file_records
    since = _manifest_mtime(path)
    for name in records:
        try:
            if (path / name).stat().st_mtime_ns > since:
                return True
        except OSError:
            return True
    return False


def mark_verified(path: Path) -> None:
    """Set the manifest's mtime to now: every derived file was just verified against it."""
    os.utime(path / MANIFEST)


def repair_hint(path: Path, m: Manifest | None = None) -> str:
    """The command that repairs the pool at ``path``, keeping its labels and rounds."""
    from fmal.encoders import DEFAULT_MODEL

    inp = str((m.input.path if m else None) or "INPUT")
    model = m.model.name if m else None
    if m and model == "external":  # embeddings made elsewhere: rebuilt from their source, no encoder
        ids = f" --ids {m.model.ids_source}" if m.model.ids_source else ""
        return f"repair it with: fmal embed --embeddings {m.model.source or 'FILE'}{ids} --pool {path} --repair (labels and rounds are kept)"
    flag = f" --model {model}" if model and model != DEFAULT_MODEL else ""
    return f"repair it with: fmal embed {inp} --pool {path}{flag} --repair (labels and rounds are kept)"


def describe(path: Path, problems: list[Problem], m: Manifest | None = None) -> str:
    """One line: what is wrong with the pool and how to repair it."""
    return f"{path}: damaged pool: {'; '.join(map(str, problems))}; {repair_hint(path, m)}"
