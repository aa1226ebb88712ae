"""Reading pools and label files from CSV, TSV, JSONL, Parquet or plain text, and writing
selections. Every reader validates and raises InvalidInputError naming file, row and column."""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fmal._atomic import atomic_path
from fmal._validation import check_id, check_label, check_text, cut, show
from fmal.exceptions import InvalidInputError, LabelsError
from fmal._lazy import lazy_module

pd = lazy_module("pandas")  # imported on first use: fmal status and info read no table (0.3 s)

READ_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
    ".arrow": "arrow",
}
WRITE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".parquet": "parquet"}


@dataclass(frozen=True)
class TextTable:
    """Texts read from one input file or folder of shards, with their ids and any other columns."""

    path: Path
    format: str
    ids: list[str]
    texts: list[str]
    text_col: str
    id_col: str | None
    fingerprint: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.ids)


def detect_format(path: Path, allowed: dict[str, str] = READ_FORMATS) -> str:
    fmt = allowed.get(path.suffix.lower())
    if fmt is None:
        raise InvalidInputError(
            f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(set(allowed)))}"
        )
    return fmt


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InvalidInputError(f"{path}: is a folder, expected a file")


def _read_bytes(path: Path) -> bytes:
    _check_file(path)
    return path.read_bytes()


def _digest(data: bytes) -> str:
    """The fingerprint of one file's bytes (what pools record as their input's identity)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """:func:`read_table`'s fingerprint of a file (sha256 of its bytes), read in blocks, not parsed:
    the Ray engine fingerprints its shards on the driver and parses them on workers."""
    path = Path(path)
    detect_format(path)
    _check_file(path)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return "sha256:" + h.hexdigest()


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInputError(
            f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not valid UTF-8; "
            "re-save the file as UTF-8"
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def load_json(text: str, where: str, *, error: type[InvalidInputError] = InvalidInputError, hint: str = "") -> object:
    """``json.loads`` with every failure as one line naming ``where``: bad JSON, and JSON nested
    deeper than Python can read (a RecursionError otherwise)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}){hint}") from None
    except RecursionError:
        raise error(f"{where}: JSON nested too deeply to read{hint}") from None


def columns_of(frame: pd.DataFrame, limit: int = 12) -> str:
    """A frame's column names for a one-line message (cut: a bad file's header may be a whole line)."""
    cols = [show(str(c), 40).strip("'") for c in list(frame.columns)[:limit]]
    more = f", ... ({len(frame.columns)} in all)" if len(frame.columns) > limit else ""
    return (", ".join(cols) + more) or "(none)"


def parse_jsonl(
    path: Path, text: str, *, error: type[InvalidInputError] = InvalidInputError, hint: str = ""
) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL text; ``error`` naming the line
    when a line is not JSON or not an object (``hint`` is appended to that message)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rec = load_json(line, f"{path}: line {lineno}", error=error, hint="; write one JSON object a line")
        if not isinstance(rec, dict):
            raise error(f"{path}: line {lineno}: expected a JSON object, got {type(rec).__name__}{hint}")
        out.append((lineno, rec))
    return out


def parse_json_array(path: Path, text: str) -> list[dict]:
    """The objects of a JSON array (a ``.json`` file holding ``[{...}, {...}]``)."""
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}); write an array of objects") from None
    for i, rec in enumerate(items, start=1):
        if not isinstance(rec, dict):
            raise InvalidInputError(f"{path}: item {i}: expected a JSON object, got {type(rec).__name__}; write an array of objects")
    return items


def _read_arrow(path: Path) -> pd.DataFrame:
    """The scalar columns of an Arrow IPC file or stream (a Hugging Face ``datasets`` shard),
    memory-mapped: list, struct and binary columns (embeddings, images) are never converted."""
    import pyarrow as pa

    try:
        try:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(f"{path}: not a readable Arrow file ({exc})") from None
    scalar = [f.name for f in table.schema if not pa.types.is_nested(f.type) and not pa.types.is_binary(f.type)
              and not pa.types.is_large_binary(f.type)]
    return table.select(scalar).to_pandas()


def read_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, str, str]:
    """Read a file into a DataFrame of strings (no NaN guessing: 'NA' stays a text).

    Returns (frame, format, sha256 of the bytes). Plain text gives one column, ``text``.
    Missing JSON values and Parquet nulls become None.
    """
    path = Path(path)
    _check_file(path)  # a folder or a missing file says so, whatever its name
    fmt = detect_format(path)
    if fmt == "arrow":  # memory-mapped, fingerprinted in blocks: never read whole
        return _read_arrow(path), fmt, file_digest(path)
    data = _read_bytes(path)
    digest = _digest(data)
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(io.BytesIO(data))
        except Exception as exc:  # pyarrow raises many types for a bad file
            raise InvalidInputError(f"{path}: not a readable Parquet file ({cut(str(exc))})") from None
        return frame, fmt, digest
    text = _decode(path, data)
    if fmt == "txt":
        lines = text.splitlines()
        return pd.DataFrame({"text": lines}, dtype=object), fmt, digest
    if fmt == "jsonl":
        if path.suffix.lower() == ".json" and text.lstrip().startswith("["):
            return pd.DataFrame.from_records(parse_json_array(path, text)), fmt, digest
        records = [rec for _, rec in parse_jsonl(path, text)]
        return pd.DataFrame.from_records(records), fmt, digest
    sep = "," if fmt == "csv" else "\t"
    if not text.strip():
        return pd.DataFrame(), fmt, digest
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, na_filter=False)
    except pd.errors.ParserError as exc:
        raise InvalidInputError(f"{path}: cannot parse as {fmt.upper()} ({cut(str(exc))})") from None
    return frame, fmt, digest


def _column(path: Path, frame: pd.DataFrame, col: str, option: str) -> pd.Series:
    if col not in frame.columns:
        raise InvalidInputError(f"{path}: no column {col!r} (columns: {columns_of(frame)}); pass {option}")
    return frame[col]


def generate_ids(texts: list[str]) -> list[str]:
    """Stable ids from content: the first 12 hex digits of sha1(text), '-2', '-3'... for repeats.

    Stable under reordering and appending, unlike row numbers.
    """
    seen: Counter[str] = Counter()
    out = []
    for t in texts:
        h = hashlib.sha1(t.encode("utf-8")).hexdigest()[:12]
        seen[h] += 1
        out.append(h if seen[h] == 1 else f"{h}-{seen[h]}")
    return out


def shard_files(folder: Path) -> list[Path]:
    """The readable files of a folder of shards, sorted by name (hidden files skipped)."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in READ_FORMATS)
    if not files:
        raise InvalidInputError(
            f"{folder}: folder holds no {', '.join(sorted(set(READ_FORMATS)))} files; give a file or a folder of shards"
        )
    return files


def _texts_and_ids(path: Path, frame: pd.DataFrame, fmt: str, text_col: str, id_col: str | None) -> tuple[list[str], list[str] | None, str | None]:
    """Validated texts of one file, its ids (None when there is no id column) and the id column used."""
    if len(frame) == 0:
        raise InvalidInputError(f"{path}: no rows; give a file with at least one text")
    if fmt == "txt":
        text_col = "text"
    texts: list[str] = []
    for i, v in enumerate(_column(path, frame, text_col, "--text-col").tolist(), start=1):
        t = check_text(v, f"{path}: row {i}", text_col)
        if t is None or not t.strip():
            raise InvalidInputError(
                f"{path}: row {i}: empty or missing text in column {text_col!r}; remove the row or fill it"
            )
        texts.append(t)
    used_id_col = "id" if id_col is None and "id" in frame.columns else id_col
    if used_id_col is None:
        return texts, None, None
    ids = []
    for i, v in enumerate(_column(path, frame, used_id_col, "--id-col").tolist(), start=1):
        rid = check_id(v, f"{path}: row {i}", used_id_col)
        if rid is None:
            raise InvalidInputError(f"{path}: row {i}: empty id in column {used_id_col!r}; every row needs an id")
        ids.append(rid)
    return texts, ids, used_id_col


@dataclass(frozen=True)
class Shard:
    """One validated input file: its texts, its ids (None when it has no id column), the id column used."""

    path: Path
    format: str
    digest: str
    texts: list[str]
    ids: list[str] | None
    id_col: str | None
    frame: pd.DataFrame


def read_shard(path: str | os.PathLike[str], *, text_col: str = "text", id_col: str | None = None) -> Shard:
    """Read and validate one file of a pool's input. The one reader of both engines (the Ray
    engine runs it on its workers), so a bad row gives the same error whichever engine reads."""
    path = Path(path)
    frame, fmt, digest = read_table(path)
    texts, ids, col = _texts_and_ids(path, frame, fmt, text_col, id_col)
    return Shard(path, fmt, digest, texts, ids, col, frame)


class ShardJoiner:
    """Joins the shards of one input, added in name order, into one list of texts and ids: every
    shard has ids or none has, ids are unique across shards, missing ids are generated from the
    texts of all shards (so repeats get -2, -3 in input order)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.texts: list[str] = []
        self._ids: list[str] = []
        self._starts: list[int] = []
        self.has_ids: bool | None = None  # the first shard decides
        self.id_col: str | None = None

    def add(self, texts: list[str], ids: list[str] | None, id_col: str | None) -> None:
        """Append the next shard (texts, its ids or None, the id column used)."""
        f = self.files[len(self._starts)]
        if self.has_ids is not None and (ids is not None) != self.has_ids:
            raise InvalidInputError(
                f"{f}: {'no id column' if ids is None else 'an id column'} unlike {self.files[0].name}; give every shard ids or none"
            )
        self._starts.append(len(self.texts))
        self.texts += texts
        self.has_ids = ids is not None
        self._ids.extend(ids or [])
        self.id_col = id_col

    def _file_row(self, j: int) -> tuple[Path, int]:
        """File and 1-based row of the ``j``-th row of the joined shards."""
        k = bisect.bisect_right(self._starts, j) - 1
        return self.files[k], j - self._starts[k] + 1

    def ids(self) -> list[str]:
        """The ids of all rows: given (checked unique) or generated."""
        if not self.has_ids:
            return generate_ids(self.texts)
        first: dict[str, int] = {}
        for j, x in enumerate(self._ids):
            if x in first:
                (f0, r0), (f1, r1) = (self._file_row(r) for r in (first[x], j))
                rows = f"rows {r0} and {r1}" if f0 == f1 else f"row {r0} and {f1}: row {r1}"
                raise InvalidInputError(f"{f0}: {rows}: duplicate id {x!r} in column {self.id_col!r}; ids must be unique")
            first[x] = j
        return self._ids


def input_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files of an input: the file itself, or the shards of a folder (:func:`shard_files`)."""
    path = Path(path)
    if path.is_dir():
        from fmal.external import hf_dataset_files  # a Hugging Face datasets folder (save_to_disk)

        return hf_dataset_files(path) or shard_files(path)
    return [path]


def input_identity(files: list[Path], digests: list[str], text_col: str) -> tuple[str, str, str]:
    """(fingerprint, format, text column) a pool records for an input of ``files`` with ``digests``,
    whichever engine read it. A single file (or a folder of one) is fingerprinted by its bytes."""
    fmts = sorted({detect_format(f) for f in files})
    if len(files) == 1:
        return digests[0], fmts[0], "text" if fmts[0] == "txt" else text_col
    fingerprint = "sha256:" + hashlib.sha256("\n".join(f"{f.name}\t{d}" for f, d in zip(files, digests)).encode()).hexdigest()
    return fingerprint, f"folder of {len(files)} {'/'.join(fmts)} files", text_col


@dataclass(frozen=True)
class ShardList:
    """An input listed and fingerprinted but not parsed: the Ray engine reads its shards on workers.

    ``id_col`` is the column asked for: None means ``id`` when the shards have one, else generated."""

    path: Path
    files: list[Path]
    digests: list[str]
    text_col: str
    id_col: str | None
    fingerprint: str
    format: str


def list_shards(path: str | os.PathLike[str], *, text_col: str = "text", id_col: str | None = None) -> ShardList:
    """List and fingerprint the files of an input (one file, or a folder of shards) without parsing them."""
    path = Path(path)
    files = input_files(path)
    digests = [file_digest(f) for f in files]
    fingerprint, fmt, text_col = input_identity(files, digests, text_col)
    return ShardList(path, files, digests, text_col, id_col, fingerprint, fmt)


def load_texts(
    path: str | os.PathLike[str], *, text_col: str = "text", id_col: str | None = None
) -> TextTable:
    """Read and validate the texts of a pool: one file, or a folder of shards (every CSV, TSV,
    JSONL, Parquet or text file in it, in name order, read one at a time).

    ``id_col=None`` uses a column named ``id`` when there is one (in every shard), else generates
    stable ids. Rows are numbered from 1 in their own file, counting data rows (not the header).
    """
    path = Path(path)
    files = input_files(path)
    joiner = ShardJoiner(files)
    frames, digests = [], []
    for f in files:
        shard = read_shard(f, text_col=text_col, id_col=id_col)
        joiner.add(shard.texts, shard.ids, shard.id_col)
        frames.append(shard.frame)
        digests.append(shard.digest)
    ids = joiner.ids()
    fingerprint, fmt, text_col = input_identity(files, digests, text_col)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return TextTable(path, fmt, ids, joiner.texts, text_col, joiner.id_col, fingerprint, frame)


def read_labels(
    path: str | os.PathLike[str], *, id_col: str = "id", label_col: str = "label"
) -> dict[str, str]:
    """Read an ``id,label`` file (CSV, TSV, JSONL or Parquet) into {id: label}.

    Rows whose label is blank are skipped (a picks file not yet fully annotated); an id given
    two different labels is an error.
    """
    path = Path(path)
    try:
        frame, _, _ = read_table(path)
    except InvalidInputError as exc:
        raise LabelsError(str(exc)) from None
    return labels_dict(label_rows(frame, path, id_col=id_col, label_col=label_col), path)


def label_rows(frame: pd.DataFrame, where: object, *, id_col: str = "id", label_col: str = "label") -> list[tuple[int, str, str]]:
    """(row number from 1, id, label) of each row of ``frame`` with a label (``where`` names it
    in errors: a file, or a parameter); blank labels are skipped, a blank id is an error."""
    for col, opt in ((id_col, "an 'id' column"), (label_col, "a 'label' column")):
        if col not in frame.columns:
            raise LabelsError(f"{where}: no column {col!r} (columns: {columns_of(frame)}); a labels file needs {opt}")
    out = []
    for i, (raw_id, raw_lab) in enumerate(zip(frame[id_col].tolist(), frame[label_col].tolist()), start=1):
        rid = check_id(raw_id, f"{where}: row {i}", id_col, error=LabelsError)
        if rid is None:
            raise LabelsError(f"{where}: row {i}: empty id; every labeled row needs the id of a pool row")
        if isinstance(raw_lab, (list, tuple)) or type(raw_lab).__name__ == "ndarray":  # multi-label hook: a JSON list of classes -> "a|b"
            from fmal.multilabel import canonical

            lab = canonical(raw_lab, f"{where}: row {i}", label_col)
        else:
            lab = check_label(raw_lab, f"{where}: row {i}", label_col)
        if lab is not None:
            out.append((i, rid, lab))
    return out


def labels_dict(rows: list[tuple[int, str, str]], where: object) -> dict[str, str]:
    """{id: label} of :func:`label_rows`; an id given two different labels is an error."""
    out: dict[str, str] = {}
    first: dict[str, int] = {}
    for i, rid, lab in rows:
        if rid in out and out[rid] != lab:
            raise LabelsError(
                f"{where}: rows {first[rid]} and {i}: id {show(rid)} has two labels ({show(out[rid])}, {show(lab)}); keep one"
            )
        out[rid] = lab
        first.setdefault(rid, i)
    return out


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``frame`` atomically as CSV, TSV, JSONL or Parquet, chosen by extension."""
    path = Path(path)
    fmt = detect_format(path, WRITE_FORMATS)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            frame.to_csv(tmp, index=False)
        elif fmt == "tsv":
            frame.to_csv(tmp, index=False, sep="\t")
        elif fmt == "jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in frame.to_dict(orient="records"):
                    fh.write(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n")
        else:
            frame.to_parquet(tmp, index=False)
    return path


def _json_default(obj: object) -> object:
    if hasattr(obj, "item"):
        return obj.item()  # numpy scalars
    raise TypeError(f"cannot serialise {type(obj).__name__}")
