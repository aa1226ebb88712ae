"""Embeddings made outside fmal: read them, check them, and write a pool as if fmal had embedded them.

Sources (``fmal embed --embeddings SRC``, ``fmal.embed(embeddings=...)``):

* an ``.npy`` file of a 2-D float array (float16, float32 or float64), read in blocks of rows
  with ``pread``: never loaded or mapped whole, so memory stays bounded for any file size;
* a Parquet file, or an Arrow IPC file or stream (``.arrow``, ``.feather``, ``.ipc``; memory-mapped),
  with a column of fixed-size (or equal-length) float lists (``--embedding-col``, default
  ``embedding``, or the one list column there is), read batch by batch; ids and texts may be
  columns of the same file;
* a folder of such shards (read in name order), or a Hugging Face ``datasets`` folder written
  by ``save_to_disk`` (its Arrow files, in the order ``state.json`` lists them);
* in Python, an array (or anything ``np.asarray`` makes a 2-D float array of).

Ids come from the same file (``id_col``, default ``id`` when there is one), from a second file
(``--ids FILE``: CSV, TSV, JSONL, Parquet or text, one id per row in order, optionally with a text
column), or in Python a list; without any, row numbers (0, 1, ...) are the ids. Texts (what
exports and reports show) come the same way, else the id is shown. Every block is checked: NaN or
infinite values, all-zero rows (cannot be normalised), ragged or differing dimensions, a count of
ids unlike the count of vectors, blank or duplicate ids: one-line errors naming the file and row.

Rows are L2-normalised unless ``normalize=False`` (rows already of unit length, within 1e-6, are
stored bit for bit). The pool's files are the usual ones (:mod:`fmal.pool`), its manifest says
``model: external`` with the source and a fingerprint of the vectors, ids and texts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmal._faults import crash_point
from fmal.exceptions import InvalidInputError
from fmal.pool.files import EMBEDDINGS, INDEX, ROWS
from fmal.pool.manifest import BuildSettings, InputRecord, Manifest, ModelRecord

log = logging.getLogger(__name__)

#: bytes of float32 rows per block read, checked and written (memory bound of an ingestion)
BLOCK_BYTES = 64 << 20
NPY = {".npy"}
PARQUET = {".parquet", ".pq"}
ARROW = {".arrow", ".feather", ".ipc"}
EMBEDDING_SUFFIXES = NPY | PARQUET | ARROW
UNIT_TOL = 1e-6
MODEL_NAME = "external"


def block_rows(dim: int) -> int:
    return max(1, BLOCK_BYTES // max(1, 4 * dim))


@dataclass
class _Part:
    """One shard of vectors: its rows, dim, a block reader, and columns it carries (ids, texts)."""

    where: str
    n: int
    dim: int
    blocks: Callable[[int], Iterator[np.ndarray]]
    digest: Callable[[], str]
    column: Callable[[str], list[Any] | None] = lambda name: None


@dataclass
class ExternalSource:
    """Vectors made elsewhere, with their ids and display texts, checked but not yet read whole."""

    path: Path
    format: str
    n: int
    dim: int
    ids: list[str]
    texts: list[str]
    id_col: str | None
    text_col: str | None
    ids_generated: bool
    parts: list[_Part] = field(repr=False, default_factory=list)
    ids_source: str | None = None
    _digest: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.n

    @property
    def fingerprint(self) -> str:
        """sha256 over the vectors' bytes (streamed, once), the ids and the texts."""
        if self._digest is None:
            h = hashlib.sha256()
            for p in self.parts:
                h.update(p.digest().encode() + b"\n")
            h.update(_list_digest(self.ids).encode() + b"\n" + _list_digest(self.texts).encode())
            self._digest = "sha256:" + h.hexdigest()
        return self._digest

    def raw_blocks(self, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, block) in row order, as stored (any float dtype), ``rows`` at a time."""
        rows = rows or block_rows(self.dim)
        start = 0
        for p in self.parts:
            for b in p.blocks(rows):
                yield start, b
                start += len(b)

    def blocks(self, *, normalize: bool, rows: int | None = None) -> Iterator[np.ndarray]:
        """Checked float32 blocks in row order, L2-normalised when ``normalize``."""
        for start, b in self.raw_blocks(rows):
            yield check_block(b, start, self.row_name, normalize=normalize)

    def row_name(self, r: int) -> str:
        """The file and row (1-based, within its shard) of global row ``r``, for errors."""
        acc = 0
        for p in self.parts:
            if r < acc + p.n:
                return f"{p.where}: row {r - acc + 1}"
            acc += p.n
        return f"{self.path}: row {r + 1}"


def _list_digest(values: list[str]) -> str:
    h = hashlib.sha256()
    for v in values:
        h.update(v.encode("utf-8", "surrogatepass") + b"\0")
    return h.hexdigest()


def check_block(b: np.ndarray, start: int, where: Callable[[int], str], *, normalize: bool) -> np.ndarray:
    """One block as float32, checked (finite; non-zero when normalising), normalised if asked."""
    X = np.array(b, dtype=np.float32, copy=True)
    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        r = int(np.argmin(finite))
        raise InvalidInputError(f"{where(start + r)}: NaN or infinite value in the embedding; fix or drop that row")
    if normalize:
        norms = row_norms(X)
        if (norms == 0).any():
            r = int(np.argmax(norms == 0))
            raise InvalidInputError(f"{where(start + r)}: all-zero embedding cannot be normalised; drop that row or pass --no-normalize")
        off = np.abs(norms - 1.0) > UNIT_TOL
        if off.any():
            X /= np.where(off, norms, 1)[:, None]  # x / 1 is x, bit for bit: rows of unit length stay as stored
    return X


def row_norms(X: np.ndarray, rows: int = 4096) -> np.ndarray:
    """``np.linalg.norm(X, axis=1)``, bit for bit (the same products and per-row sums), a few
    thousand rows at a time: its block-sized temporaries (two of 64 MiB a block) were fresh memory
    maps to fault in, 7 of 43 s of a 1M ingestion (2026-12)."""
    out = np.empty(X.shape[0], dtype=X.dtype)
    for s in range(0, X.shape[0], rows):
        part = X[s : s + rows]
        np.sqrt(np.add.reduce(part * part, axis=1), out=out[s : s + rows])
    return out


# ----------------------------------------------------------------------------- readers


def _float_dtype(dtype: np.dtype, where: str) -> np.dtype:
    if dtype.kind != "f":
        raise InvalidInputError(f"{where}: embeddings must be floats (float16/32/64), got {dtype}")
    return dtype


def _file_digest(path: Path) -> Callable[[], str]:
    def digest() -> str:
        from fmal.pool.check import sha256_file

        return f"{path.name}:{sha256_file(path)}"
    return digest


def _npy_part(path: Path) -> _Part:
    from fmal.pool.check import npy_header

    try:
        shape, dtype, expected = npy_header(path)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npy file of numbers ({exc})") from None
    if len(shape) != 2:
        raise InvalidInputError(f"{path}: embeddings must be a 2-D array (rows x dims), got shape {shape}")
    _float_dtype(dtype, str(path))
    size = path.stat().st_size
    if size < expected:
        raise InvalidInputError(f"{path}: {size} bytes, its header needs {expected} (cut short); copy the file again")
    n, dim = int(shape[0]), int(shape[1])
    offset = expected - n * dim * dtype.itemsize

    def blocks(rows: int) -> Iterator[np.ndarray]:
        row_bytes = dim * dtype.itemsize
        fd = os.open(path, os.O_RDONLY)
        try:
            for s in range(0, n, rows):
                k = min(rows, n - s)
                buf = os.pread(fd, k * row_bytes, offset + s * row_bytes)
                if len(buf) != k * row_bytes:
                    raise InvalidInputError(f"{path}: cut short at row {s + len(buf) // row_bytes + 1}; copy the file again")
                yield np.frombuffer(buf, dtype=dtype).reshape(k, dim)
        finally:
            os.close(fd)

    return _Part(str(path), n, dim, blocks, _file_digest(path))


class _ArrowFile:
    """A Parquet file or an Arrow IPC file/stream, read batch by batch (IPC: memory-mapped)."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path = path
        self.kind = "parquet" if path.suffix.lower() in PARQUET else "arrow"
        try:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._pf = pq.ParquetFile(path)
                self.schema = self._pf.schema_arrow
                self.num_rows = self._pf.metadata.num_rows
            else:
                with self._open() as reader:
                    self.schema = reader.schema
                self.num_rows = sum(b.num_rows for b in self._batches(None))
        except (OSError, pa.ArrowInvalid) as exc:
            raise InvalidInputError(f"{path}: not a readable {self.kind} file ({exc})") from None

    def _open(self) -> Any:
        import pyarrow as pa

        src = pa.memory_map(str(self.path))
        try:
            return pa.ipc.open_file(src)
        except pa.ArrowInvalid:
            return pa.ipc.open_stream(pa.memory_map(str(self.path)))

    def _batches(self, columns: list[str] | None) -> Iterator[Any]:
        reader = self._open()
        if hasattr(reader, "num_record_batches"):
            it = (reader.get_batch(i) for i in range(reader.num_record_batches))
        else:
            it = iter(reader)
        for b in it:
            yield b if columns is None else b.select(columns)

    def batches(self, columns: list[str], rows: int) -> Iterator[Any]:
        if self.kind == "parquet":
            yield from self._pf.iter_batches(batch_size=rows, columns=columns)
            return
        for b in self._batches(columns):
            for s in range(0, b.num_rows, rows):
                yield b.slice(s, rows)

    def column(self, name: str) -> list[Any] | None:
        if name not in self.schema.names:
            return None
        out: list[Any] = []
        for b in self.batches([name], 1 << 16):
            out.extend(b.column(0).to_pylist())
        return out


def _list_columns(schema: Any) -> list[str]:
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_list(f.type) or pa.types.is_large_list(f.type) or pa.types.is_fixed_size_list(f.type)]


def _arrow_part(path: Path, embedding_col: str | None) -> _Part:
    import pyarrow as pa
    import pyarrow.compute as pc

    f = _ArrowFile(path)
    lists = _list_columns(f.schema)
    col = embedding_col or ("embedding" if "embedding" in f.schema.names else (lists[0] if len(lists) == 1 else None))
    if col is None or col not in f.schema.names:
        cols = ", ".join(f.schema.names) or "(none)"
        raise InvalidInputError(f"{path}: no embedding column {col or 'embedding'!r} (columns: {cols}); pass --embedding-col")
    typ = f.schema.field(col).type
    if col not in lists or not pa.types.is_floating(typ.value_type):
        raise InvalidInputError(f"{path}: column {col!r} is {typ}, not a list of floats; pass the column of embeddings with --embedding-col")
    if pa.types.is_fixed_size_list(typ):
        dim = int(typ.list_size)
    else:
        first = next((b.column(0) for b in f.batches([col], 1) if b.num_rows), None)
        dim = 0 if first is None or first[0].values is None else len(first[0].values)
    if dim < 1:
        raise InvalidInputError(f"{path}: column {col!r}: the first embedding is empty or null; every row needs a vector")

    def blocks(rows: int) -> Iterator[np.ndarray]:
        start = 0
        for b in f.batches([col], rows):
            arr = b.column(0)
            if arr.null_count:
                r = start + int(np.argmax(np.asarray(arr.is_null())))
                raise InvalidInputError(f"{path}: row {r + 1}: null embedding in column {col!r}; fix or drop that row")
            if not pa.types.is_fixed_size_list(arr.type):
                lens = np.asarray(pc.list_value_length(arr))
                if (lens != dim).any():
                    r = int(np.argmax(lens != dim))
                    raise InvalidInputError(
                        f"{path}: row {start + r + 1}: embedding of {int(lens[r])} values, earlier rows have {dim} (ragged); "
                        "every row needs the same dimension")
            vals = arr.flatten().to_numpy(zero_copy_only=False)
            yield vals.reshape(len(arr), dim)
            start += len(arr)

    return _Part(str(path), f.num_rows, dim, blocks, _file_digest(path), f.column)


def _array_part(X: Any) -> _Part:
    try:
        arr = X if isinstance(X, np.ndarray) else np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"embeddings: cannot read as a 2-D array of floats ({exc}); pass a rows x dims array") from None
    if arr.dtype == object:
        raise InvalidInputError("embeddings: rows of different lengths (ragged); every row needs the same dimension")
    if arr.ndim != 2:
        raise InvalidInputError(f"embeddings: must be a 2-D array (rows x dims), got shape {arr.shape}")
    _float_dtype(arr.dtype, "embeddings")
    n, dim = arr.shape

    def blocks(rows: int) -> Iterator[np.ndarray]:
        for s in range(0, n, rows):
            yield arr[s : s + rows]

    def digest() -> str:
        h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
        for s in range(0, n, block_rows(dim)):
            h.update(np.ascontiguousarray(arr[s : s + block_rows(dim)]).tobytes())
        return "array:" + h.hexdigest()

    return _Part("embeddings (array)", int(n), int(dim), blocks, digest)


def hf_dataset_files(folder: Path) -> list[Path] | None:
    """The Arrow files of a Hugging Face ``datasets`` folder (``save_to_disk``), in order; None
    when ``folder`` is not one. A DatasetDict folder is an error naming its splits."""
    if (folder / "dataset_dict.json").is_file():
        try:
            splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        except (OSError, ValueError, AttributeError):
            splits = []
        raise InvalidInputError(f"{folder}: a datasets DatasetDict with splits {', '.join(map(str, splits)) or '?'}; "
                                f"give one split's folder (e.g. {folder / (splits[0] if splits else 'train')})")
    state = folder / "state.json"
    if not state.is_file():
        return None
    try:
        files = [folder / d["filename"] for d in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"{state}: not a datasets state file ({exc}); save the dataset again with save_to_disk") from None
    if not files or not all(f.is_file() for f in files):
        raise InvalidInputError(f"{folder}: state.json lists Arrow files that are missing; save the dataset again")
    return files


def embedding_files(path: Path) -> list[Path]:
    """The files of an embeddings source: the file, a datasets folder's Arrow files, or the
    .npy / Parquet / Arrow shards of a folder in name order."""
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found; check the --embeddings path")
    if path.is_dir():
        hf = hf_dataset_files(path)
        if hf is not None:
            return hf
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in EMBEDDING_SUFFIXES)
        if not files:
            raise InvalidInputError(f"{path}: folder holds no {', '.join(sorted(EMBEDDING_SUFFIXES))} files; give embeddings files")
        kinds = {f.suffix.lower() in NPY for f in files}
        if len(kinds) > 1:
            raise InvalidInputError(f"{path}: mixes .npy and table shards; give one kind")
        return files
    if path.suffix.lower() not in EMBEDDING_SUFFIXES:
        raise InvalidInputError(f"{path}: embeddings must be {', '.join(sorted(EMBEDDING_SUFFIXES))} (or a folder of them), "
                                f"not {path.suffix or '(no extension)'!r}")
    return [path]


# ----------------------------------------------------------------------------- ids and texts


def _ids_table(ids: Any, id_col: str | None, text_col: str | None) -> tuple[list[Any], list[Any] | None, str, str | None, str | None]:
    """(ids, texts or None, where, id column used, text column used) of an ids file or an in-memory list."""
    from fmal import frames
    from fmal.io import read_table

    if frames.is_path(ids):
        p = Path(ids)
        frame, fmt, _ = read_table(p)
        if fmt == "txt":
            return frame["text"].tolist(), None, str(p), None, None
        col = id_col or ("id" if "id" in frame.columns else (frame.columns[0] if len(frame.columns) == 1 else None))
        if col is None or col not in frame.columns:
            cols = ", ".join(map(str, frame.columns)) or "(none)"
            raise InvalidInputError(f"{p}: no id column {id_col or 'id'!r} (columns: {cols}); pass --id-col")
        tcol = text_col if text_col in frame.columns else None
        return frame[col].tolist(), frame[tcol].tolist() if tcol else None, str(p), col, tcol
    try:
        values = list(ids.tolist() if hasattr(ids, "tolist") else ids)
    except TypeError:
        raise InvalidInputError(f"ids: expected a file path or a list of ids, got {type(ids).__name__}") from None
    return values, None, "ids", None, None


def _check_ids(values: list[Any], where: str) -> list[str]:
    out: list[str] = []
    first: dict[str, int] = {}
    for i, v in enumerate(values, start=1):
        if v is None or (isinstance(v, float) and v != v) or not str(v).strip():
            raise InvalidInputError(f"{where}: row {i}: empty id; every embedding row needs an id")
        s = str(v).strip()
        if s in first:
            raise InvalidInputError(f"{where}: rows {first[s]} and {i}: duplicate id {s!r}; ids must be unique")
        first[s] = i
        out.append(s)
    return out


def open_source(
    embeddings: Any,
    *,
    ids: Any = None,
    texts: Any = None,
    id_col: str | None = None,
    text_col: str | None = None,
    embedding_col: str | None = None,
) -> ExternalSource:
    """Read the shape, ids and texts of an embeddings source and check they agree (the vectors
    themselves are read later, block by block, by :meth:`ExternalSource.blocks`)."""
    from fmal import frames

    if frames.is_path(embeddings):
        path = Path(embeddings)
        files = embedding_files(path)
        parts = [_npy_part(f) if f.suffix.lower() in NPY else _arrow_part(f, embedding_col) for f in files]
        kinds = sorted({f.suffix.lower().lstrip(".") for f in files})
        fmt = "/".join(kinds) if len(files) == 1 else f"folder of {len(files)} {'/'.join(kinds)} files"
    else:
        path, fmt, parts = Path("embeddings (array)"), "array", [_array_part(embeddings)]
    dims = {p.dim for p in parts}
    if len(dims) > 1:
        other = next(p for p in parts if p.dim != parts[0].dim)
        raise InvalidInputError(f"{other.where}: embeddings of dim {other.dim}, {parts[0].where} has {parts[0].dim}; every shard needs the same dimension")
    n, dim = sum(p.n for p in parts), parts[0].dim
    if n == 0:
        raise InvalidInputError(f"{path}: no rows; give at least one embedding")
    if dim < 1:
        raise InvalidInputError(f"{path}: embeddings of dimension 0")

    id_values: list[Any] | None = None
    text_values: list[Any] | None = None
    ids_where, used_id, used_text = str(path), None, None
    if ids is not None:
        id_values, text_values, ids_where, used_id, used_text = _ids_table(ids, id_col, text_col)
        if len(id_values) != n:
            raise InvalidInputError(f"{ids_where}: {len(id_values)} ids for {n} embedding rows in {path}; give one id per row, in order")
    else:
        want = id_col or "id"
        cols = [p.column(want) for p in parts]
        if all(c is not None for c in cols):
            id_values, used_id = [v for c in cols for v in c], want  # type: ignore[union-attr]
        elif id_col is not None:
            raise InvalidInputError(f"{path}: no id column {id_col!r}; pass --ids FILE with one id per row, or the right --id-col")
        if text_values is None and id_values is not None:
            tc = text_col or "text"
            tcols = [p.column(tc) for p in parts]
            if all(c is not None for c in tcols):
                text_values, used_text = [v for c in tcols for v in c], tc  # type: ignore[union-attr]
    generated = id_values is None
    id_list = [str(i) for i in range(n)] if generated else _check_ids(id_values, ids_where)  # type: ignore[arg-type]
    if generated:
        log.warning("%s: no ids given: rows are numbered 0..%d (pass ids to keep labels across rebuilds and appends)", path, n - 1)
    if texts is not None:
        text_values = list(texts.tolist() if hasattr(texts, "tolist") else texts)
        if len(text_values) != n:
            raise InvalidInputError(f"texts: {len(text_values)} texts for {n} embedding rows; give one per row, or none")
        used_text = None
    if text_values is None:
        text_list = id_list
    else:
        text_list = [i if v is None or (isinstance(v, float) and v != v) else str(v) for v, i in zip(text_values, id_list)]
    return ExternalSource(path, fmt, n, dim, id_list, text_list, used_id, used_text, generated, parts,
                          None if ids is None or not frames.is_path(ids) else str(ids))


# ----------------------------------------------------------------------------- building a pool


@dataclass(frozen=True)
class ExternalModel:
    """What stands for the encoder of a pool of embeddings made elsewhere (manifest ``model``)."""

    dim: int
    normalize: bool
    name: str = MODEL_NAME
    backend: str = MODEL_NAME

    @property
    def fingerprint(self) -> str:
        return f"{MODEL_NAME}:{'l2' if self.normalize else 'raw'}"


def is_external(m: Manifest | None) -> bool:
    """Whether a pool manifest is of embeddings made outside fmal."""
    return m is not None and m.model.name == MODEL_NAME


def model_info(source: ExternalSource, model: ExternalModel) -> ModelRecord:
    return ModelRecord.from_json({
        "name": MODEL_NAME, "fingerprint": model.fingerprint, "backend": MODEL_NAME, "source": str(source.path),
        "source_format": source.format, "ids_source": source.ids_source, "max_seq_length": None, "threads": None,
        "onnx_file": None})


def input_info(source: ExternalSource) -> InputRecord:
    return InputRecord.from_json({
        "path": str(source.path), "format": source.format, "fingerprint": source.fingerprint,
        "text_col": source.text_col, "id_col": source.id_col, "ids_generated": source.ids_generated,
        "ids_source": source.ids_source, "embeddings": True})


@dataclass(frozen=True)
class ExternalBuild:
    path: Path
    n_rows: int
    n_written: int
    skipped: bool
    resumed: bool = False
    repaired: tuple[str, ...] = ()
    backup: Path | None = None


_DONE = "embeddings.done.json"


def build(
    source: ExternalSource,
    path: Path,
    *,
    normalize: bool = True,
    precision: str = "float32",
    index_kind: str = "auto",
    max_index_memory: int | None = None,
    overwrite: bool = False,
    labels: str | None = None,
    repair: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ExternalBuild:
    """Write the pool of ``source`` at ``path`` through the store's own writers (one format).

    Under the pool's write lock. A finished pool of the same source is checked and left alone
    (``repair``: its damaged derived files are rewritten from the source; labels untouched).
    Resumable: once the embeddings file is written, ``.partial`` records it, and a rerun after
    an interruption goes on with the rows and the index."""
    from fmal import index as fmal_index
    from fmal.pool import build as pool_build
    from fmal.pool import check as pool_check
    from fmal.pool import write as pool_write

    model = ExternalModel(source.dim, normalize)
    settings = BuildSettings(batch_size=block_rows(source.dim), chunk_size=block_rows(source.dim), index_kind=index_kind,
                             max_index_memory=fmal_index.parse_memory(max_index_memory), precision=precision,
                             overwrite=overwrite, labels=labels)
    path.mkdir(parents=True, exist_ok=True)
    with pool_build._pool_lock(path):
        start = pool_build._start_build(path, source, model, settings, repair=repair)  # type: ignore[arg-type]
        repaired: tuple[str, ...] = ()
        if (m := start.manifest) is not None:
            if not repair:
                return ExternalBuild(path, m.n_rows, 0, skipped=True)
            problems = pool_check.check_pool(path, m, n=source.n, dim=source.dim, checksums=True)
            if not problems:
                return ExternalBuild(path, m.n_rows, 0, skipped=True)
            repaired = tuple(sorted({p.file for p in problems}))
            settings = dataclasses.replace(settings, index_kind=m.index.type or index_kind)  # the pool's own choice
            for name in (EMBEDDINGS, INDEX, ROWS):
                (path / name).unlink(missing_ok=True)
        partial = pool_write.open_partial(path, {"engine": "external", "input_fingerprint": source.fingerprint,
                                                  "normalize": normalize, "precision": precision, "dim": source.dim})
        want = {"n": source.n, "dim": source.dim, "dtype": precision}
        resumed = _embeddings_done(path, partial, want)
        written = 0
        known: dict[str, Any] = {}

        def blocks() -> Iterator[np.ndarray]:
            nonlocal written
            for b in source.blocks(normalize=normalize):
                written += len(b)
                yield b
                if on_progress:
                    on_progress(written)

        if not resumed:
            known[EMBEDDINGS] = pool_write.write_embeddings_stream(path, source.n, source.dim, precision, blocks())
            from fmal._atomic import write_json

            write_json(partial / _DONE, {**want, "size": (path / EMBEDDINGS).stat().st_size})
            crash_point("external.embeddings-written")
        elif on_progress:
            on_progress(source.n)
        pool_write.write_pool(
            path, ids=source.ids, texts=source.texts, n_unique=len(set(source.texts)), dim=source.dim,
            model=model_info(source, model), input=input_info(source), settings=settings, normalized=normalize,
            read_in_blocks=True, known=known,
        )
        return ExternalBuild(path, source.n, written, skipped=False, resumed=resumed, repaired=repaired, backup=start.backup)


def _embeddings_done(path: Path, partial: Path, want: dict[str, Any]) -> bool:
    """Whether an interrupted run of the same build already wrote the whole embeddings file."""
    from fmal.pool.check import npy_header

    try:
        done = json.loads((partial / _DONE).read_text(encoding="utf-8"))
        shape, dtype, expected = npy_header(path / EMBEDDINGS)
    except (OSError, ValueError, EOFError):
        return False
    size = (path / EMBEDDINGS).stat().st_size
    return done == {**want, "size": size} and shape == (want["n"], want["dim"]) and str(dtype) == want["dtype"] and size == expected
