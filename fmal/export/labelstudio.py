"""Label Studio: tasks in its JSON import format, answers from its JSON (or JSON_MIN) export.

Out: ``[{"data": {"text", "fmal_id", ...metadata}, "predictions": [...]}]``, where the prediction
is the probe's suggestion as a ``choices`` result of the control ``label`` on the object ``text``
(score: its probability). :func:`label_config` gives a matching labeling config.

In: each task's non-cancelled ``annotations``; the ``choices`` result of the control ``label`` (or
the only ``choices`` result) is the answer. A JSON_MIN export (flat records with a ``label`` key)
is read too. The id comes from ``data.fmal_id`` (JSON_MIN: ``fmal_id``).
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from fmal._validation import show
from fmal.export import register
from fmal.export.base import AGENT, ID_KEY, LABEL_KEY, Answer, Answers, Format, expect, id_at, label_at, meta_of, read_records, rows, suggestion, write_json

TEXT_KEY = "text"


def label_config(classes: list[str]) -> str:
    """A Label Studio labeling config for single-choice text classification over ``classes``."""
    choices = "\n".join(f'    <Choice value="{escape(c, quote=True)}"/>' for c in classes)
    return (
        "<View>\n"
        f'  <Text name="{TEXT_KEY}" value="${TEXT_KEY}"/>\n'
        f'  <Choices name="{LABEL_KEY}" toName="{TEXT_KEY}" choice="single" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def choice_result(label: str) -> dict[str, Any]:
    return {"from_name": LABEL_KEY, "to_name": TEXT_KEY, "type": "choices", "value": {"choices": [label]}}


def tasks(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The tasks frame as Label Studio tasks (with predictions where there is a suggestion)."""
    out = []
    for rec in rows(frame):
        task: dict[str, Any] = {"data": {TEXT_KEY: rec["text"], ID_KEY: str(rec["id"]), **meta_of(rec)}}
        lab, p = suggestion(rec)
        if lab is not None:
            pred: dict[str, Any] = {"model_version": AGENT, "result": [choice_result(lab)]}
            if p is not None:
                pred["score"] = p
            task["predictions"] = [pred]
        out.append(task)
    return out


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    write_json(path, tasks(frame))


_LS = "as Label Studio exports it"


def _choice_of(results: Any, path: Path, where: str, field: str) -> tuple[str | None, str | None]:
    """(label, problem) of an annotation's result list (``field`` names it in errors)."""
    results = expect(results, list, path, where, field, f"an annotation's result is a list of results {_LS}") or []
    for k, r in enumerate(results):
        expect(r, dict, path, where, f"{field}[{k}]", f"each result is an object {_LS}")
    choices = [(k, r) for k, r in enumerate(results) if r is not None and r.get("type") == "choices"]
    mine = [(k, r) for k, r in choices if r.get("from_name") == LABEL_KEY] or choices
    if not mine:
        return None, "annotation has no choices result"
    if len(mine) > 1:
        return None, f"annotation has {len(mine)} choices results; fmal reads one single-choice control named {LABEL_KEY!r}"
    k, r = mine[0]
    value = expect(r.get("value"), dict, path, where, f"{field}[{k}].value", f'a choices result\'s value is {{"choices": [...]}} {_LS}') or {}
    vals = expect(value.get("choices"), list, path, where, f"{field}[{k}].value.choices", f"the choices are a list of options {_LS}") or []
    if len(vals) != 1:
        return None, f"annotation chose {len(vals)} options; fmal needs exactly one"
    lab = label_at(vals[0], path, where, f"{field}[{k}].value.choices[0]")
    return (lab, None) if lab is not None else (None, "annotation chose an empty option")


def _read(path: Path) -> Answers:
    records = read_records(path, "Label Studio")
    res = Answers(n_records=len(records))
    for where, task in records:
        if "annotations" not in task and "data" not in task:  # JSON_MIN: flat records
            rid = id_at(task.get(ID_KEY), path, where, ID_KEY)
            lab = task.get(LABEL_KEY)
            if isinstance(lab, dict) and "choices" in lab:  # JSON_MIN of a multiple-choice control
                lab = expect(lab["choices"], list, path, where, f"{LABEL_KEY}.choices", f"the choices are a list of options {_LS}")
            if rid is None:
                res.skipped.append((where, f"no {ID_KEY!r}; was the task exported by fmal?"))
            else:
                res.take(rid, lab, where, path=path, field=LABEL_KEY, chosen="choices", empty="not annotated")
            continue
        data = expect(task.get("data"), dict, path, where, "data", f"a task's data is an object of fields {_LS}") or {}
        rid = id_at(data.get(ID_KEY), path, where, f"data.{ID_KEY}")
        if rid is None:
            res.skipped.append((where, f"task has no data.{ID_KEY}; was it exported by fmal?"))
            continue
        anns = expect(task.get("annotations"), list, path, where, "annotations", f"a task's annotations are a list {_LS}") or []
        for j, ann in enumerate(anns):
            expect(ann, dict, path, where, f"annotations[{j}]", f"each annotation is an object {_LS}")
        live = [(j, a) for j, a in enumerate(anns) if a is not None and not a.get("was_cancelled")]
        if not live:
            res.skipped.append((where, "skipped by the annotator" if anns else "not annotated"))
            continue
        task_id = task.get("id", "?")
        for j, ann in live:
            lab, problem = _choice_of(ann.get("result"), path, where, f"annotations[{j}].result")
            ann_id = ann.get("id", j + 1)
            at = f"{where} (task {show(task_id)}, annotation {show(ann_id)})"
            if problem:
                res.skipped.append((at, problem))
            else:
                res.answers.append(Answer(rid, lab, at))  # type: ignore[arg-type]
    return res


register(Format("label-studio", (".json",), _write, _read, "Label Studio tasks with predictions; reads its JSON export"))
