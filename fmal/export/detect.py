"""Which tool wrote a file: the import format read from the content, for ``fmal import-labels``
without ``--format``, and for the hint when a file read with the wrong ``--format`` holds no answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.export.base import ID_KEY, LABEL_KEY, read_records

_PRODIGY = ("answer", "_task_hash", "_input_hash", "_annotator_id", "_session_id", "options", "accept")
_ARGILLA = ("responses", "suggestions", "fields", "annotation", f"{LABEL_KEY}.responses", "vectors")
_LS_FLAT = ("annotation_id", "annotator", "lead_time", ID_KEY)


def format_of_record(rec: dict[str, Any]) -> str | None:
    """The format one JSON record looks like, None when it could be any."""
    if "annotations" in rec or isinstance(rec.get("data"), dict):
        return "label-studio"
    if any(k in rec for k in _PRODIGY):
        return "prodigy"
    if any(k in rec for k in _ARGILLA):
        return "argilla"
    if any(k in rec for k in _LS_FLAT):
        return "label-studio"  # JSON_MIN
    if "id" in rec and LABEL_KEY in rec:
        return "jsonl"
    return None


def detect(path: str | Path) -> str:
    """The import format of ``path`` from its content (a LabelsError when no format fits)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet"):
        from fmal.io import read_table

        try:
            frame, _, _ = read_table(path)
        except InvalidInputError as exc:
            raise LabelsError(str(exc)) from None
        return "label-studio" if ID_KEY in frame.columns else "csv"
    records = read_records(path, "annotation tool")
    for _, rec in records[:50]:
        fmt = format_of_record(rec)
        if fmt is not None:
            return fmt
    if not records:
        raise LabelsError(f"{path}: no records; pass --format to say which tool wrote it")
    keys = sorted({k for _, r in records[:50] for k in r})[:8]
    raise LabelsError(f"{path}: cannot tell which tool wrote it (fields: {', '.join(keys) or 'none'}); pass --format "
                      "(csv, jsonl, label-studio, prodigy, argilla)")


def guess(path: str | Path) -> str | None:
    """``detect`` that returns None instead of failing."""
    try:
        return detect(path)
    except LabelsError:
        return None
