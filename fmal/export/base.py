"""What every annotation-tool format shares: the tasks going out, the answers coming back.

Going out, a format writes a *tasks frame*: one row per text to label, with the columns ``id`` and
``text``, optionally ``predicted_label`` and ``predicted_proba`` (the probe's suggestion, written as
the tool's pre-annotation), and any other columns (round, strategy, score, ...) as metadata.

Coming back, a format reads the tool's export into :class:`Answers`: every answer it found, in file
order, each with where it came from, and every record it skipped with the reason.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fmal._atomic import write_text
from fmal._validation import _kind, check_id, check_label
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import _decode, _read_bytes, load_json, parse_jsonl

#: metadata key that carries fmal's row id through every tool
ID_KEY = "fmal_id"
#: name of the single-choice question / control in every tool
LABEL_KEY = "label"
#: who made the pre-annotations
AGENT = "fmal-probe"
#: the task field of an image pool's image (a file path or URL: fmal.images.image_sources)
IMAGE_KEY = "image"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Answer:
    """One label given to one id, and where in the file it was found (``"record 3"``, ``"line 7"``)."""

    id: str
    label: str
    where: str
    annotator: str | None = None  # who answered, when the tool says (Label Studio user, Argilla user_id, Prodigy session)


@dataclass
class Answers:
    """What a tool's export holds: answers in file order, and skipped records with the reason."""

    answers: list[Answer] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (where, why)
    n_records: int = 0
    #: multi-label hook: answers naming several classes, skipped in a single-label pool and kept here
    #: for a multi-label one (:meth:`multi_label`): (its entry in skipped, len(answers) when read, answer)
    several: list[tuple[int, int, Answer]] = field(default_factory=list)

    def skip_several(self, rid: str, values: list[Any], where: str, why: str, *, path: Path, field: str,
                     annotator: str | None = None) -> None:
        """Skip an answer that chose several classes (``why``), keeping it, canonical, for a multi-label pool."""
        from fmal.multilabel import canonical

        self.skipped.append((where, why))
        try:
            lab = canonical(values, f"{path}: {where}", field)
        except LabelsError:  # not a list of class names: stays skipped
            return
        if lab is not None:
            self.several.append((len(self.skipped) - 1, len(self.answers), Answer(rid, lab, where, annotator)))

    def multi_label(self) -> Answers:
        """These answers as a multi-label pool reads them: several-class answers in file order, every
        answer in canonical form (sorted classes joined by ``|``)."""
        from fmal.multilabel import canonical

        moved = {k for k, _, _ in self.several}
        out: list[Answer] = []
        extra = sorted(self.several, key=lambda t: t[1])
        j = 0
        for i, a in enumerate([*self.answers, None]):
            while j < len(extra) and extra[j][1] == i:
                out.append(extra[j][2])
                j += 1
            if a is not None:
                out.append(Answer(a.id, canonical(a.label, a.where) or a.label, a.where, a.annotator))
        return Answers(out, [s for k, s in enumerate(self.skipped) if k not in moved], self.n_records)

    def take(self, rid: str, value: Any, where: str, *, path: Path, field: str, chosen: str, empty: str,
             annotator: str | None = None) -> None:
        """Record ``value`` (the file's ``field``) as ``rid``'s label, or skip it: several values
        chosen (``chosen`` names them: "labels", "choices"), or a blank one (``empty`` says why).
        A value that is not a label (an object, a fraction, a too long string) is a LabelsError."""
        if isinstance(value, list):
            if len(value) > 1:
                self.skip_several(rid, value, where, f"{len(value)} {chosen}; fmal needs exactly one", path=path, field=field,
                                  annotator=annotator)
                return
            if len(value) != 1:
                self.skipped.append((where, f"{len(value)} {chosen}; fmal needs exactly one"))
                return
            value, field = value[0], f"{field}[0]"
        lab = label_at(value, path, where, field)
        if lab is None:
            self.skipped.append((where, empty))
        else:
            self.answers.append(Answer(rid, lab, where, annotator))


@dataclass(frozen=True)
class Format:
    """An annotation-tool format: how to write tasks for it and how to read its export back."""

    name: str
    suffixes: tuple[str, ...]  # file name endings it writes; the first is the default
    write: Callable[[pd.DataFrame, Path, list[str]], None]
    read: Callable[[Path], Answers]
    description: str


def clean(value: Any) -> Any:
    """A JSON-ready value: NaN/None -> None, numpy scalars -> Python scalars."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The tasks frame as records of JSON-ready values."""
    return [{k: clean(v) for k, v in rec.items()} for rec in frame.to_dict(orient="records")]


def meta_of(rec: dict[str, Any]) -> dict[str, Any]:
    """The columns of a task that are neither id, text nor the suggestion."""
    return {k: v for k, v in rec.items() if k not in {"id", "text", IMAGE_KEY, "predicted_label", "predicted_proba"}}


def is_image(frame: pd.DataFrame) -> bool:
    """Whether the tasks frame holds an image pool's picks (column ``image``: what the tool loads)."""
    return frame.attrs.get("modality") == "image" and IMAGE_KEY in frame.columns


def suggestion(rec: dict[str, Any]) -> tuple[str | None, float | None]:
    lab = rec.get("predicted_label")
    if lab is None or (isinstance(lab, str) and not lab.strip()):
        return None, None
    p = rec.get("predicted_proba")
    return str(lab), (None if p is None else round(float(p), 4))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_records(path: Path, what: str) -> list[tuple[str, dict[str, Any]]]:
    """Records of a JSON array file or a JSONL file, each with its place (``record N`` / ``line N``)."""
    path = Path(path)
    try:
        text = _decode(path, _read_bytes(path))
    except InvalidInputError as exc:  # from io: re-raise as a labels problem
        raise LabelsError(str(exc)) from None
    stripped = text.lstrip()
    if not stripped:
        raise LabelsError(f"{path}: the file is empty; give the {what} export (a JSON list or JSONL records)")
    if stripped.startswith("["):
        data = load_json(text, str(path), error=LabelsError, hint=f"; give the {what} export as it was saved")
        assert isinstance(data, list)  # the text starts with '['
        out = []
        for i, rec in enumerate(data, start=1):
            if not isinstance(rec, dict):
                raise LabelsError(f"{path}: record {i}: expected a JSON object, got {type(rec).__name__}; is this the {what} export?")
            out.append((f"record {i}", rec))
        return out
    recs = parse_jsonl(path, text, error=LabelsError, hint=f"; is this the {what} export?")
    return [(f"line {lineno}", rec) for lineno, rec in recs]


def label_at(value: Any, path: Path, where: str, field: str) -> str | None:
    """The label in ``field`` of the record at ``where``: a stripped string, None when blank; a
    LabelsError naming the file, record and field when it is not a label (see check_label)."""
    return check_label(value, f"{path}: {where}", field)


def id_at(value: Any, path: Path, where: str, field: str) -> str | None:
    """The row id in ``field`` of the record at ``where`` (a string or an integer), None when blank."""
    return check_id(value, f"{path}: {where}", field, error=LabelsError)


def expect(value: Any, kind: type | tuple[type, ...], path: Path, where: str, field: str, what: str) -> Any:
    """``value`` when it is ``kind`` (None passes: a missing field); else a LabelsError naming the
    file, record and field and saying what the tool writes there (``what``)."""
    if value is None or isinstance(value, kind):
        return value
    raise LabelsError(f"{path}: {where}: {field!r} is {_kind(value)}; {what}")
