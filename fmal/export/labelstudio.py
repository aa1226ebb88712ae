"""Label Studio: tasks in its JSON import format, answers from its JSON (or JSON_MIN) export.

Out: ``[{"data": {"text", "fmal_id", ...metadata}, "predictions": [...]}]``, where the prediction
is the probe's suggestion as a ``choices`` result of the control ``label`` on the object ``text``
(score: its probability). :func:`label_config` gives a matching labeling config.

In: each task's non-cancelled ``annotations``; the ``choices`` result of the control ``label`` (or
the only ``choices`` result, or the control named by ``control``) is the answer, and the
annotation's ``completed_by`` its annotator. A JSON_MIN export (flat records) and a CSV export are
read too: the answer is the field ``label`` (or ``control``, or the one field that is neither a
task field fmal wrote nor one Label Studio adds); several choices (``{"choices": [...]}``) are
skipped with the reason in a single-label pool, never stored as a label, and are one answer in a
multi-label pool (whose export writes ``NAME.config.xml`` with ``choice="multiple"`` beside the
tasks). The id comes from ``data.fmal_id`` (JSON_MIN,
CSV: ``fmal_id``), never from Label Studio's own task ``id``.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from fmal._validation import show
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.io import read_table
from fmal.export import register
from fmal._atomic import write_text
from fmal.multilabel import split
from fmal.export.base import (AGENT, ID_KEY, IMAGE_KEY, LABEL_KEY, Answer, Answers, Format, expect, id_at, is_image, label_at,
                              meta_of, read_records, rows, suggestion, write_json)

TEXT_KEY = "text"


def label_config(classes: list[str], image: bool = False, multiple: bool = False) -> str:
    """A Label Studio labeling config for single-choice text classification over ``classes``
    (``image``: of the image ``$image``, its path shown above it; ``multiple``: multi-label,
    several choices per task)."""
    choices = "\n".join(f'    <Choice value="{escape(c, quote=True)}"/>' for c in classes)
    style = "multiple" if multiple else "single"
    obj = (f'  <Header value="${TEXT_KEY}"/>\n  <Image name="{IMAGE_KEY}" value="${IMAGE_KEY}"/>\n' if image
           else f'  <Text name="{TEXT_KEY}" value="${TEXT_KEY}"/>\n')
    return (
        "<View>\n"
        f"{obj}"
        f'  <Choices name="{LABEL_KEY}" toName="{IMAGE_KEY if image else TEXT_KEY}" choice="{style}" showInLine="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def choice_result(label: str, control: str = LABEL_KEY, to_name: str = TEXT_KEY) -> dict[str, Any]:
    return {"from_name": control, "to_name": to_name, "type": "choices", "value": {"choices": [label]}}


def tasks(frame: pd.DataFrame, control: str = LABEL_KEY, to_name: str | None = None,
          choices: list[str] | None = None) -> list[dict[str, Any]]:
    """The tasks frame as Label Studio tasks (with predictions where there is a suggestion, as a
    result of ``control`` on ``to_name``, default ``text``, or ``image`` for an image pool; with
    ``choices``, only suggestions among them)."""
    out = []
    image = is_image(frame)
    multi = bool(frame.attrs.get("multi_label"))  # multi-label pool: a suggestion "a|b" is the choices [a, b]
    to_name = to_name or (IMAGE_KEY if image else TEXT_KEY)
    for rec in rows(frame):
        task: dict[str, Any] = {"data": {TEXT_KEY: rec["text"], ID_KEY: str(rec["id"]), **meta_of(rec)}}
        if image:
            task["data"][IMAGE_KEY] = rec[IMAGE_KEY]
        lab, p = suggestion(rec)
        picked = split(lab) if multi and lab is not None else [lab]
        if lab is not None and (choices is None or all(c in choices for c in picked)):
            result = choice_result(lab, control, to_name)
            result["value"]["choices"] = picked
            pred: dict[str, Any] = {"model_version": AGENT, "result": [result]}
            if p is not None:
                pred["score"] = p
            task["predictions"] = [pred]
        out.append(task)
    return out


def config_path(path: Path) -> Path:
    """Where the labeling config of an image or multi-label pool goes: ``NAME.config.xml`` beside the tasks."""
    return path.with_name(path.name.rsplit(".", 1)[0] + ".config.xml")


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    write_json(path, tasks(frame))
    multi = bool(frame.attrs.get("multi_label"))
    if is_image(frame) or multi:  # the config must show the image / allow several choices: written beside the tasks
        write_text(config_path(path), label_config(classes, image=is_image(frame), multiple=multi))


_LS = "as Label Studio exports it"


def _choice_of(results: Any, path: Path, where: str, field: str, control: str | None = None) -> tuple[str | None, str | None]:
    """(label, problem) of an annotation's result list (``field`` names it in errors); several
    choices: (the list of them, problem)."""
    results = expect(results, list, path, where, field, f"an annotation's result is a list of results {_LS}") or []
    for k, r in enumerate(results):
        expect(r, dict, path, where, f"{field}[{k}]", f"each result is an object {_LS}")
    choices = [(k, r) for k, r in enumerate(results) if r is not None and r.get("type") == "choices"]
    if control is not None:
        mine = [(k, r) for k, r in choices if r.get("from_name") == control]
        if not mine:
            return None, f"annotation has no choices result of the control {control!r}"
    else:
        mine = [(k, r) for k, r in choices if r.get("from_name") == LABEL_KEY] or choices
    if not mine:
        return None, "annotation has no choices result"
    if len(mine) > 1:
        return None, f"annotation has {len(mine)} choices results; fmal reads one single-choice control named {LABEL_KEY!r}"
    k, r = mine[0]
    value = expect(r.get("value"), dict, path, where, f"{field}[{k}].value", f'a choices result\'s value is {{"choices": [...]}} {_LS}') or {}
    vals = expect(value.get("choices"), list, path, where, f"{field}[{k}].value.choices", f"the choices are a list of options {_LS}") or []
    if len(vals) > 1:  # several choices: the list comes back with the problem (a multi-label pool keeps it)
        return vals, f"annotation chose {len(vals)} options; fmal needs exactly one"  # type: ignore[return-value]
    if len(vals) != 1:
        return None, f"annotation chose {len(vals)} options; fmal needs exactly one"
    lab = label_at(vals[0], path, where, f"{field}[{k}].value.choices[0]")
    return (lab, None) if lab is not None else (None, "annotation chose an empty option")


#: fields of a flat (JSON_MIN / CSV) export that are not the answer: Label Studio's own, and the task
#: fields fmal writes (``data``: text, fmal_id and the round's per-pick columns)
_FLAT_NOT_ANSWER = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "drafts",
                    "predictions", "annotations", "meta", "total_annotations", "cancelled_annotations", "total_predictions",
                    "completed_by", "inner_id", "project", "file_upload", TEXT_KEY, IMAGE_KEY, ID_KEY, "round", "strategy",
                    "score", "cluster", "predicted_label", "predicted_proba", "given_label", "label_quality", "audit_rank",
                    "suggested"}


def _flat_control(records: list[tuple[str, dict[str, Any]]], path: Path, control: str | None) -> str | None:
    """The field of a flat export that holds the answer: ``control``, else ``label``, else the one
    field outside the known ones (None: no record holds an answer)."""
    if control is not None:
        return control
    keys = {k for _, r in records for k in r}
    if LABEL_KEY in keys:
        return LABEL_KEY
    other = sorted(k for k in keys - _FLAT_NOT_ANSWER if not k.startswith("_"))
    if len(other) > 1:
        raise LabelsError(f"{path}: fields {', '.join(map(repr, other))} could each be the answer; "
                          "name the labeling control with --control NAME")
    return other[0] if other else None


def _flat_value(value: Any, path: Path, where: str, field: str) -> Any:
    """A flat export's answer: a choice, or ``{"choices": [...]}`` (several: skipped by take)."""
    if isinstance(value, str) and value.lstrip().startswith("{"):  # CSV: the JSON of a multiple-choice answer
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict) and "choices" in value:
        return expect(value["choices"], list, path, where, f"{field}.choices", f"the choices are a list of options {_LS}")
    return value


def _read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        frame, _, _ = read_table(path)
    except InvalidInputError as exc:
        raise LabelsError(str(exc)) from None
    if ID_KEY not in frame.columns:
        cols = ", ".join(map(str, frame.columns)) or "(none)"
        raise LabelsError(f"{path}: no column {ID_KEY!r} (columns: {cols}); fmal matches a Label Studio CSV export on "
                          f"{ID_KEY} (Label Studio's 'id' is its own task id): export tasks fmal wrote")
    recs = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return [(f"row {i}", {k: (None if isinstance(v, str) and not v.strip() else v) for k, v in r.items()})
            for i, r in enumerate(recs, start=1)]


def _who(ann: dict[str, Any]) -> str | None:
    """An annotation's annotator: ``completed_by`` (a user id, or an object with ``email``/``id``)."""
    by = ann.get("completed_by")
    if isinstance(by, dict):
        by = by.get("email") or by.get("id")
    return None if by is None or isinstance(by, (dict, list)) else str(by)


def read(path: Path, control: str | None = None) -> Answers:
    """Answers of a Label Studio export (JSON, JSON_MIN or CSV); ``control``: the name of the
    choices control to read (default: ``label``, else the only one)."""
    path = Path(path)
    records = _read_csv(path) if path.suffix.lower() in (".csv", ".tsv") else read_records(path, "Label Studio")
    return answers_of(records, path, control)


def answers_of(records: list[tuple[str, dict[str, Any]]], path: Path, control: str | None = None,
               users: dict[str, str] | None = None) -> Answers:
    """Answers of Label Studio task records (``path`` names their source in messages; ``users``
    maps ``completed_by`` user ids to names)."""
    res = Answers(n_records=len(records))
    flat = [(w, t) for w, t in records if "annotations" not in t and "data" not in t]
    field = _flat_control(flat, path, control) if flat else None
    for where, task in records:
        if "annotations" not in task and "data" not in task:  # JSON_MIN / CSV: flat records
            rid = id_at(task.get(ID_KEY), path, where, ID_KEY)
            lab = None if field is None else _flat_value(task.get(field), path, where, field)
            if rid is None:
                res.skipped.append((where, f"no {ID_KEY!r}; was the task exported by fmal?"))
            else:
                res.take(rid, lab, where, path=path, field=field or LABEL_KEY, chosen="choices for a single-label question",
                         empty="not annotated", annotator=_who({"completed_by": task.get("annotator")}))
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
            lab, problem = _choice_of(ann.get("result"), path, where, f"annotations[{j}].result", control)
            ann_id = ann.get("id", j + 1)
            at = f"{where} (task {show(task_id)}, annotation {show(ann_id)})"
            if problem and isinstance(lab, list):
                who = _who(ann)
                res.skip_several(rid, lab, at, problem, path=path, field=f"annotations[{j}].result",
                                 annotator=(users or {}).get(who, who) if who else None)
            elif problem:
                res.skipped.append((at, problem))
            else:
                who = _who(ann)
                res.answers.append(Answer(rid, lab, at, (users or {}).get(who, who) if who else None))  # type: ignore[arg-type]
    return res


def _read(path: Path) -> Answers:
    return read(path)


register(Format("label-studio", (".json",), _write, _read, "Label Studio tasks with predictions; reads its JSON export"))
