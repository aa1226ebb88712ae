"""A pool's ``manifest.json`` as a dataclass: read, checked and written here, and nowhere else.

The JSON is unchanged from the dict fmal wrote before this module: :meth:`Manifest.from_json`
then :meth:`Manifest.to_json` gives back the same document. Keys this fmal does not know stay in
each record's ``extra``; a known key absent from an older manifest stays absent (``None`` here,
not written back), and one written as ``null`` is written as ``null`` again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fmal._atomic import write_json
from fmal.exceptions import CorruptPoolError, InvalidInputError
from fmal.pool.files import FORMAT, MANIFEST

R = TypeVar("R", bound="Record")


@dataclass(frozen=True, kw_only=True)
class Record:
    """A JSON object with known keys as fields; the others, as read, in ``extra``."""

    extra: dict[str, Any] = field(default_factory=dict)
    #: known keys written even when None (as ``null``): those the JSON read had; a None field not
    #: in it is left out, as an older manifest left it out
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    _META: ClassVar[tuple[str, ...]] = ("extra", "present")

    @classmethod
    def _names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name not in cls._META]

    @classmethod
    def from_json(cls: type[R], d: dict[str, Any]) -> R:
        names = set(cls._names())
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, present=frozenset(known))

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k in self._names() if (v := getattr(self, k)) is not None or k in self.present}
        return dict(sorted({**out, **self.extra}.items()))  # key-sorted, as the file is written


@dataclass(frozen=True, kw_only=True)
class ModelRecord(Record):
    """The encoder that made the embeddings (``external``: vectors made elsewhere, from ``source``)."""

    name: str
    fingerprint: str | None = None
    backend: str | None = None
    max_seq_length: int | None = None
    threads: int | None = None
    device: str | None = None  # cpu, cuda, cuda:N (fmal.encoders.resolve_device)
    onnx_file: str | None = None
    onnx_fused: bool | None = None  # False: the ONNX export fell back to the unfused graph
    source: str | None = None
    ids_source: str | None = None


@dataclass(frozen=True, kw_only=True)
class InputRecord(Record):
    """The input the rows came from; ``id_col`` None: ids generated from the texts."""

    path: str
    format: str
    fingerprint: str | None = None
    text_col: str | None = None  # None for a pool of external embeddings without texts
    id_col: str | None = None
    ids_generated: bool | None = None
    modality: str | None = None  # "image" for an image pool (fmal.images); absent for texts
    image_root: str | None = None  # the folder an image pool's relative paths are under
    image_col: str | None = None
    n_bad_skipped: int | None = None


@dataclass(frozen=True, kw_only=True)
class IndexRecord(Record):
    """The FAISS index chosen (fmal.index.build's record): kind, factory, parameters, recall, why."""

    type: str
    ntotal: int
    metric: str | None = None
    factory: str | None = None
    reason: str | None = None
    search_params: dict[str, Any] | None = None
    recall_at_10: float | None = None
    max_memory: float | None = None
    bytes_per_vector: float | None = None
    nlist: int | None = None
    warnings: list[str] | None = None


@dataclass(frozen=True, kw_only=True)
class Manifest(Record):
    """What a pool is: counts, dtype, model, input, index, and each derived file's size, sha256, shape."""

    n_rows: int
    dim: int
    n_unique_texts: int
    model: ModelRecord
    input: InputRecord
    index: IndexRecord
    format: str = FORMAT
    format_version: int | None = None
    fmal_version: str | None = None
    dtype: str | None = None  # None: a pool from before --precision, stored as float32
    normalized: bool | None = None
    embedding: dict[str, Any] | None = None  # batch_size, chunk_size of the build
    files: dict[str, Any] | None = None
    file_checks: dict[str, Any] | None = None  # per derived file: size, sha256, shape (fmal.pool.check)
    additions: list[dict[str, Any]] | None = None  # one record per --append

    _SECTIONS: ClassVar[dict[str, type[Record]]] = {"model": ModelRecord, "input": InputRecord, "index": IndexRecord}

    @property
    def precision(self) -> str:
        """The stored embeddings' dtype (float32 when the manifest predates --precision)."""
        return self.dtype or "float32"

    @property
    def backend(self) -> str:
        """The encoder backend a pool was built with (pools from before backends existed: torch)."""
        return self.model.backend or "torch"

    @property
    def file_records(self) -> dict[str, Any]:
        """``file_checks``, or {} for a manifest from before them."""
        return self.file_checks if isinstance(self.file_checks, dict) else {}

    @classmethod
    def from_json(cls, d: dict[str, Any], file: Path = Path(MANIFEST)) -> Manifest:  # type: ignore[override]
        """The manifest in ``d`` (read from ``file``, named in errors); CorruptPoolError naming the
        first field missing or of the wrong type."""
        _check(d, file)
        names = set(cls._names())
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in cls._SECTIONS}
        sections = {k: rec.from_json(d[k]) for k, rec in cls._SECTIONS.items()}
        return cls(**known, **sections, extra=extra, present=frozenset(known))  # type: ignore[arg-type]

    @classmethod
    def _names(cls) -> list[str]:
        return [n for n in super()._names() if n not in cls._SECTIONS]

    def to_json(self) -> dict[str, Any]:
        return dict(sorted({**super().to_json(), **{k: getattr(self, k).to_json() for k in self._SECTIONS}}.items()))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (what ``--json`` prints of a result holding a manifest)."""
        return self.to_json()


def read_manifest(path: Path) -> Manifest | None:
    """The manifest of a pool folder, None when there is none, CorruptPoolError when unreadable."""
    f = path / MANIFEST
    if not f.exists():
        return None
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptPoolError(f"{f}: not valid JSON; {_hint(path)}") from None
    return Manifest.from_json(d, f)


def write_manifest_file(path: Path, m: Manifest) -> None:
    """Write ``m`` as the pool's manifest.json (atomically, key-sorted JSON)."""
    write_json(path / MANIFEST, m.to_json())


def _hint(path: Path) -> str:
    from fmal.pool.check import repair_hint

    return repair_hint(path)


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


def _check(m: Any, f: Path) -> None:
    """Raise CorruptPoolError unless ``m`` is an fmal pool manifest whose fields commands read are sound."""
    path = f.parent
    if not isinstance(m, dict) or m.get("format") != FORMAT or "n_rows" not in m or "dim" not in m:
        raise CorruptPoolError(f"{f}: not an fmal pool manifest; {_hint(path)}")
    bad = [k for k in ("n_rows", "dim") if isinstance(m[k], bool) or not isinstance(m[k], int) or m[k] < 1]
    bad += [k for k in ("model", "input", "index") if not isinstance(m.get(k), dict)]
    if bad:
        raise CorruptPoolError(
            f"{f}: field(s) {', '.join(bad)} missing or invalid (n_rows and dim must be positive integers); " + _hint(path)
        )
    for section, key, types, required in _FIELDS:
        part = m if section is None else m[section]
        name = key if section is None else f"{section}.{key}"
        if key not in part or part[key] is None:
            if required:
                raise CorruptPoolError(f"{f}: field {name} is missing; {_hint(path)}")
            continue
        value = part[key]
        if isinstance(value, bool) or not isinstance(value, types) or (isinstance(value, (int, float)) and not value >= 0):
            want = " or ".join("an integer >= 0" if t is int else "a number >= 0" if t is float else "an object" if t is dict else "a string" for t in types)
            raise CorruptPoolError(f"{f}: field {name} must be {want}, got {type(value).__name__}; {_hint(path)}")
    if m.get("dtype", "float32") not in ("float32", "float16"):
        raise CorruptPoolError(f"{f}: field dtype must be float32 or float16, got {str(m['dtype'])[:40]!r}; {_hint(path)}")


PRECISIONS = ("float32", "float16")


def check_precision(precision: object) -> str:
    """Return ``precision`` when it is a storable embedding dtype, else a clear InvalidInputError."""
    if precision not in PRECISIONS:
        raise InvalidInputError(f"--precision must be one of {list(PRECISIONS)}, got {precision!r}")
    return str(precision)


def check_index_kind(kind: object) -> str:
    """Return ``kind`` when it names an index fmal builds, else a clear InvalidInputError."""
    from fmal.index import INDEX_KINDS  # fmal.index imports fmal.pool.check: not at import time

    if kind not in INDEX_KINDS:
        raise InvalidInputError(f"index must be one of [{', '.join(INDEX_KINDS)}], got {kind!r}")
    return str(kind)


def _default_max_index_memory() -> int:
    from fmal.index import DEFAULT_MAX_MEMORY  # fmal.index imports fmal.pool.check: not at import time

    return DEFAULT_MAX_MEMORY


@dataclass(frozen=True)
class BuildSettings:
    """How a pool is built, checked when made: encoder batches, chunks of distinct texts saved for
    resuming, the index asked for and its memory budget (bytes), the stored dtype, and what
    ``overwrite`` does with the session (``labels``: "keep", "drop" or None when it has none)."""

    batch_size: int = 64
    chunk_size: int = 2048
    index_kind: str = "auto"
    max_index_memory: int = field(default_factory=_default_max_index_memory)
    precision: str = "float32"
    overwrite: bool = False
    labels: str | None = None

    def __post_init__(self) -> None:
        check_precision(self.precision)
        check_index_kind(self.index_kind)

    @property
    def embedding(self) -> dict[str, int]:
        """The manifest's ``embedding`` record."""
        return {"batch_size": self.batch_size, "chunk_size": self.chunk_size}
