"""Prodigy: choice tasks in JSONL, answers from ``prodigy db-out`` JSONL.

Out: ``{"text", "options": [{"id", "text"}...], "accept": [suggested], "meta": {"score", ...},
"fmal_id"}`` a line: the ``choice`` interface (as in ``textcat.manual`` with several labels) shows
the options with the probe's suggestion preselected and its probability in the meta panel. A
multi-label pool's tasks carry ``"config": {"choice_style": "multiple"}`` and accept every
suggested class.

In: every line's ``answer``: ``accept`` with exactly one option in ``accept`` (choice tasks) or with
a ``label`` (binary ``textcat.teach``-style tasks) is a label; ``reject`` and ``ignore`` are
reported as skipped, since a rejected label does not say which class is right. Several accepted
options are one answer in a multi-label pool (skipped with the reason in a single-label one). The id comes from
``fmal_id`` (or ``meta.fmal_id``, then ``meta.id``), which Prodigy keeps in its saved tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fmal._validation import show
from fmal.export import register
from fmal.exceptions import LabelsError
from fmal.multilabel import split
from fmal.export.base import (ID_KEY, IMAGE_KEY, Answer, Answers, Format, expect, id_at, is_image, label_at, meta_of, read_records,
                              rows, suggestion, write_jsonl)


def tasks(frame: pd.DataFrame, classes: list[str]) -> list[dict[str, Any]]:
    """The tasks frame as Prodigy choice tasks (an image pool's with ``image``: Prodigy shows it
    above the options; it must be a URL or data URI the browser can load)."""
    out = []
    image = is_image(frame)
    multi = bool(frame.attrs.get("multi_label"))  # multi-label pool: several options may be accepted
    for rec in rows(frame):
        lab, p = suggestion(rec)
        picked = (split(lab) if multi else [lab]) if lab is not None else []
        options = list(classes) + [c for c in picked if c not in classes]
        meta: dict[str, Any] = {ID_KEY: str(rec["id"]), **meta_of(rec)}
        task: dict[str, Any] = {"text": rec["text"], "options": [{"id": c, "text": c} for c in options]}
        if image:
            task[IMAGE_KEY] = rec[IMAGE_KEY]
        if multi:
            task["config"] = {"choice_style": "multiple"}
        if lab is not None:
            task["accept"] = picked
            meta["suggested"] = lab
            if p is not None:
                meta["score"] = p
        task["meta"] = meta
        task[ID_KEY] = str(rec["id"])
        out.append(task)
    return out


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    write_jsonl(path, tasks(frame, classes))


def _id_of(rec: dict[str, Any], path: Path, where: str) -> str | None:
    meta = expect(rec.get("meta"), dict, path, where, "meta", "Prodigy's meta is an object") or {}
    for value, field in ((rec.get(ID_KEY), ID_KEY), (meta.get(ID_KEY), f"meta.{ID_KEY}"), (meta.get("id"), "meta.id")):
        rid = id_at(value, path, where, field)
        if rid is not None:
            return rid
    return None


def _option_id(option: Any, path: Path, where: str, field: str) -> str | None:
    """An entry of ``accept``: an option id (a string or an integer), or an option object
    ``{"id": ..., "text": ...}`` (its id); anything else is a LabelsError."""
    if isinstance(option, dict):
        if "id" not in option:
            raise LabelsError(f"{path}: {where}: {field!r} is an object without 'id'; Prodigy's accept lists option ids")
        return label_at(option["id"], path, where, f"{field}.id")
    return label_at(option, path, where, field)


def _annotator(rec: dict[str, Any]) -> str | None:
    """Who answered: Prodigy's ``_annotator_id`` (``dataset-session``), else ``_session_id``."""
    for key in ("_annotator_id", "_session_id"):
        if isinstance(rec.get(key), (str, int)) and str(rec[key]).strip():
            return str(rec[key]).strip()
    return None


def _read(path: Path) -> Answers:
    records = read_records(path, "Prodigy db-out")
    res = Answers(n_records=len(records))
    for where, rec in records:
        rid = _id_of(rec, path, where)
        if rid is None:
            res.skipped.append((where, f"no {ID_KEY!r} (nor meta.{ID_KEY} or meta.id); was the task exported by fmal?"))
            continue
        answer = expect(rec.get("answer"), str, path, where, "answer", "Prodigy answers are 'accept', 'reject' or 'ignore'")
        if answer is None:
            res.skipped.append((where, "no answer (not annotated)"))
            continue
        if answer in ("ignore", "reject"):
            res.skipped.append((where, f"answer {answer!r}"))
            continue
        if answer != "accept":
            res.skipped.append((where, f"unknown answer {show(answer)} (Prodigy answers are accept, reject, ignore)"))
            continue
        accept = expect(rec.get("accept"), list, path, where, "accept", "Prodigy's accept is a list of the chosen option ids")
        if accept is not None and (rec.get("options") or accept):
            picked = [_option_id(o, path, where, f"accept[{k}]") for k, o in enumerate(accept)]
            chosen = [o for o in picked if o is not None]
            if len(chosen) > 1:  # a multiple-choice answer: kept for a multi-label pool
                res.skip_several(rid, chosen, where, f"accepted with {len(chosen)} options chosen; fmal needs exactly one",
                                 path=path, field="accept", annotator=_annotator(rec))
                continue
            if len(chosen) != 1:
                res.skipped.append((where, f"accepted with {len(chosen)} options chosen; fmal needs exactly one"))
                continue
            res.answers.append(Answer(rid, chosen[0], where, _annotator(rec)))
        elif (lab := label_at(rec.get("label"), path, where, "label")) is not None:
            res.answers.append(Answer(rid, lab, where, _annotator(rec)))
        else:
            res.skipped.append((where, "accepted, but with neither an 'accept' option nor a 'label'"))
    return res


register(Format("prodigy", (".jsonl",), _write, _read, "Prodigy choice tasks; reads db-out JSONL"))
