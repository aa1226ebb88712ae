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

import contextlib
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROWS = "rows.parquet"
EMBEDDINGS = "embeddings.npy"
INDEX = "index.faiss"
MANIFEST = "manifest.json"
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


def file_record(f: Path, shape: tuple[int, ...]) -> dict[str, Any]:
    """What the manifest records of a derived file it was just written."""
    return {"size": f.stat().st_size, "sha256": sha256_file(f), "shape": list(shape)}


def rows_shape(f: Path) -> tuple[int, int]:
    """(rows, columns) of a Parquet file from its footer; raises OSError/ValueError when unreadable.

    The footer of a flat file (what fmal writes) is decoded here (:func:`_flat_footer`): importing
    pyarrow.parquet costs ~0.3 s, most of ``fmal status``. Anything else (a nested schema, a footer
    this reader does not follow) is read by pyarrow, whose answer, or error, stands."""
    with contextlib.suppress(ValueError, IndexError, UnicodeDecodeError, RecursionError):
        names, rows = _flat_footer(f)
        if not {"id", "text"} <= set(names):
            raise ValueError("no id and text columns")
        return rows, len(names)
    import pyarrow.parquet as pq

    meta = pq.read_metadata(f)
    names = set(meta.schema.names)
    if not {"id", "text"} <= names:
        raise ValueError("no id and text columns")
    return meta.num_rows, meta.num_columns


def _flat_footer(f: Path) -> tuple[list[str], int]:
    """(column names, rows) from a Parquet footer (Thrift compact protocol), for a flat schema only:
    ValueError/IndexError for anything else, so the caller asks pyarrow instead."""
    with open(f, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size < 12:
            raise ValueError("too short")
        fh.seek(size - 8)
        tail = fh.read(8)
        n = struct.unpack("<i", tail[:4])[0]
        if tail[4:] != b"PAR1" or not 0 < n <= size - 12:
            raise ValueError("no plain Parquet footer")
        fh.seek(0)
        if fh.read(4) != b"PAR1":
            raise ValueError("no Parquet header")
        fh.seek(size - 8 - n)
        buf = fh.read(n)
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = out = 0
        while True:
            b = buf[pos]
            pos += 1
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7
            if shift > 70:
                raise ValueError("bad varint")

    def zigzag() -> int:
        v = varint()
        return (v >> 1) ^ -(v & 1)

    def value(t: int, want: bool = False):  # noqa: ANN202  (returns what was asked for, else None)
        nonlocal pos
        if t in (1, 2):
            return t == 1
        if t == 3:
            pos += 1
            return None
        if t in (4, 5, 6):
            return zigzag()
        if t == 7:
            pos += 8
            return None
        if t == 8:
            k = varint()
            pos += k
            if pos > len(buf):
                raise ValueError("cut")
            return bytes(buf[pos - k:pos]) if want else None
        if t in (9, 10):
            head = buf[pos]
            pos += 1
            k, et = head >> 4, head & 0x0F
            if k == 15:
                k = varint()
            items = []
            for _ in range(k):
                if et in (1, 2):  # booleans in a list are one byte each
                    pos += 1
                    items.append(None)
                else:
                    items.append(value(et, want))
            return items if want else None
        if t == 11:
            k = varint()
            if k:
                kv = buf[pos]
                pos += 1
                for _ in range(k):
                    value(kv >> 4)
                    value(kv & 0x0F)
            return None
        if t == 12:
            return struct_(want)
        raise ValueError(f"thrift type {t}")

    def struct_(want: bool) -> dict[int, Any] | None:
        nonlocal pos
        fields: dict[int, Any] = {}
        fid = 0
        while True:
            head = buf[pos]
            pos += 1
            if head == 0:
                return fields if want else None
            delta, t = head >> 4, head & 0x0F
            fid = fid + delta if delta else zigzag()
            fields[fid] = value(t, want)

    # FileMetaData: 2 schema (list<SchemaElement>: 4 name, 5 num_children), 3 num_rows; the rest skipped
    meta = struct_(True)
    assert meta is not None
    schema, rows = meta.get(2), meta.get(3)
    if not isinstance(schema, list) or not schema or not isinstance(rows, int) or rows < 0:
        raise ValueError("no schema or row count")
    if not all(isinstance(c, dict) for c in schema):
        raise ValueError("no schema")
    root, cols = schema[0], schema[1:]
    if root.get(5) != len(cols) or any(c.get(5) for c in cols) or not all(isinstance(c.get(4), bytes) for c in cols):
        raise ValueError("not a flat schema")
    return [c[4].decode("utf-8") for c in cols], rows


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


def check_pool(path: Path, m: dict[str, Any], *, n: int | None = None, dim: int | None = None,
               checksums: bool | None = None) -> list[Problem]:
    """What is wrong with the derived files of the pool at ``path`` (manifest ``m``); [] when nothing.

    ``n`` and ``dim`` are the true row count and dimension when known (the input's and the model's,
    during a repair); else the manifest's. ``checksums``: True always streams the recorded sha256,
    False never, None only for files newer than the manifest."""
    m_n, m_dim = m.get("n_rows"), m.get("dim")
    n = m_n if n is None else n
    dim = m_dim if dim is None else dim
    problems: list[Problem] = []
    if (m_n, m_dim) != (n, dim):
        problems.append(Problem(MANIFEST, f"says {m_n} rows of dim {m_dim}, the input and model give {n} of dim {dim}"))
    records = m.get("file_checks") if isinstance(m.get("file_checks"), dict) else {}
    since = _manifest_mtime(path)
    dtype = str(m.get("dtype", "float32"))
    for name in DERIVED:
        f = path / name
        if not f.is_file():
            problems.append(Problem(name, "missing"))
            continue
        try:
            if name == ROWS:
                rows, _ = rows_shape(f)
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


def needs_checksum(path: Path, m: dict[str, Any]) -> bool:
    """Whether a derived file with a recorded checksum is newer than the manifest (a check hashes it)."""
    records = m.get("file_checks") if isinstance(m.get("file_checks"), dict) else {}
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


def repair_hint(path: Path, m: dict[str, Any] | None = None) -> str:
    """The command that repairs the pool at ``path``, keeping its labels and rounds."""
    from fmal.encoders import DEFAULT_MODEL

    inp = str((m or {}).get("input", {}).get("path") or "INPUT")
    model = (m or {}).get("model", {}).get("name")
    if model == "external":  # embeddings made elsewhere: rebuilt from their source, no encoder
        src = (m or {}).get("model", {})
        ids = f" --ids {src['ids_source']}" if src.get("ids_source") else ""
        return f"repair it with: fmal embed --embeddings {src.get('source') or 'FILE'}{ids} --pool {path} --repair (labels and rounds are kept)"
    flag = f" --model {model}" if model and model != DEFAULT_MODEL else ""
    return f"repair it with: fmal embed {inp} --pool {path}{flag} --repair (labels and rounds are kept)"


def describe(path: Path, problems: list[Problem], m: dict[str, Any] | None = None) -> str:
    """One line: what is wrong with the pool and how to repair it."""
    return f"{path}: damaged pool: {'; '.join(map(str, problems))}; {repair_hint(path, m)}"
