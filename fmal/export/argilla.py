"""Argilla: records to log into a dataset, answers from exported records.

Out, ``.json``: a JSON list of records in the shape of Argilla 2.x ``Record.to_dict()`` (what
``Dataset.records.to_json`` writes and ``Dataset.records.from_json`` reads): ``{"id", "fields":
{"text"}, "metadata": {"fmal_id", ...}, "suggestions": {"label": {"value", "score", "agent"}},
"responses": {}, "vectors": {"embedding": [...]}}``.
Out, ``.jsonl``: one flat record a line, as ``Dataset.records.log`` takes dicts: ``{"id", "text",
"label" (the suggestion), "suggestion_score", "suggestion_agent", "fmal_id", ..., "embedding"}``;
log them with ``mapping={"suggestion_score": "label.suggestion.score", "suggestion_agent":
"label.suggestion.agent"}``.
Beside either, ``NAME.settings.json`` (``rg.Settings.from_json``): a text field ``text``, a label
question ``label`` listing every class, the ``fmal_id`` metadata, and with vectors the vector field
``embedding`` of the pool's dimension. Vectors are written when asked (``--with-vectors``).
A multi-label pool's question is a ``MultiLabelQuestion`` (``multi_label_selection``) and its
suggestions and answers are lists of classes.

In (JSON list or JSONL):
  * 2.x ``Record.to_dict()`` / ``records.to_json``: ``responses.label`` = [{"value", "user_id",
    "status"?}]; responses whose status is ``draft`` or ``discarded`` are skipped;
  * 2.x ``records.to_list(flatten=True)``: ``label.responses`` = [values];
  * 1.x FeedbackDataset records: ``responses`` = [{"values": {"label": {"value"}}, "status", "user_id"}];
  * 1.x text-classification records: ``annotation`` with ``status`` ``Validated``.
The id is the record ``id`` (fmal sets it to its own id), else ``metadata.fmal_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fmal.export import register
from fmal.multilabel import split
from fmal._validation import show
from fmal.export.base import (AGENT, ID_KEY, IMAGE_KEY, LABEL_KEY, Answers, Format, expect, id_at, is_image, meta_of, read_records,
                              rows, suggestion, write_json, write_jsonl)


#: the vector field that carries the pool's embeddings
VECTOR_KEY = "embedding"
#: how to log the flat .jsonl records: the suggestion's score and agent
LOG_MAPPING = {"suggestion_score": f"{LABEL_KEY}.suggestion.score", "suggestion_agent": f"{LABEL_KEY}.suggestion.agent"}


def _vectors(frame: pd.DataFrame) -> list[list[float]] | None:
    v = frame.attrs.get("vectors")
    return None if v is None else [[round(float(x), 6) for x in row] for row in v]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The tasks frame as Argilla 2.x record dicts (with a suggestion where there is one, and the
    embeddings as the vector ``embedding`` when the frame carries them in ``attrs["vectors"]``)."""
    out = []
    vectors = _vectors(frame)
    image = is_image(frame)
    for n, rec in enumerate(rows(frame)):
        lab, p = suggestion(rec)
        value = split(lab) if lab is not None and frame.attrs.get("multi_label") else lab  # MultiLabelQuestion: a list
        sugg = {LABEL_KEY: {"value": value, "score": p, "agent": AGENT}} if lab is not None else {}
        fields, meta = _fields(rec, image)
        out.append({"id": str(rec["id"]), "fields": fields,
                    "metadata": {ID_KEY: str(rec["id"]), **meta, **meta_of(rec)},
                    "suggestions": sugg, "responses": {}, "vectors": {VECTOR_KEY: vectors[n]} if vectors else {}})
    return out


def flat_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The tasks frame as flat dicts for ``Dataset.records.log(records, mapping=LOG_MAPPING)``."""
    out = []
    vectors = _vectors(frame)
    image = is_image(frame)
    for n, rec in enumerate(rows(frame)):
        lab, p = suggestion(rec)
        fields, meta = _fields(rec, image)
        flat: dict[str, Any] = {"id": str(rec["id"]), **fields, **meta}
        if lab is not None:
            value = split(lab) if frame.attrs.get("multi_label") else lab
            flat.update({LABEL_KEY: value, "suggestion_score": p, "suggestion_agent": AGENT})
        flat.update({ID_KEY: str(rec["id"]), **{k: v for k, v in meta_of(rec).items() if k not in flat}})
        if vectors:
            flat[VECTOR_KEY] = vectors[n]
        out.append(flat)
    return out


def _fields(rec: dict[str, Any], image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fields, extra metadata) of a record: the text, or an image pool's image (a URL, or a file
    path the client reads into a data URI when logging) with its path as metadata ``path``."""
    if image:
        return {IMAGE_KEY: rec[IMAGE_KEY]}, {"path": rec["text"]}
    return {"text": rec["text"]}, {}


def settings(classes: list[str], dim: int | None = None, image: bool = False, multi_label: bool = False) -> dict[str, Any]:
    """The dataset settings fmal's records need, as ``rg.Settings.to_json`` writes them (``image``:
    an image field ``image`` instead of the text field; ``multi_label``: a MultiLabelQuestion)."""
    kind = "multi_label_selection" if multi_label else "label_selection"
    extra = {"options_order": "natural"} if multi_label else {}
    def base(name: str) -> dict[str, Any]:
        return {"id": None, "inserted_at": None, "updated_at": None, "name": name, "title": name, "dataset_id": None}

    return {
        "guidelines": None,
        "questions": [{**base(LABEL_KEY), "settings": {"type": kind, "options": [{"text": c, "value": c} for c in classes],
                                                        "visible_options": None, **extra},
                       "description": None, "required": True, "type": kind}],
        "fields": [{**base(IMAGE_KEY), "settings": {"type": "image"}, "required": True, "description": None, "type": "image"}
                   if image else
                   {**base("text"), "settings": {"type": "text", "use_markdown": False}, "required": True, "description": None,
                    "type": "text"}],
        "vectors": [{**base(VECTOR_KEY), "dimensions": int(dim)}] if dim else [],
        "metadata": [{**base(ID_KEY), "settings": {"visible_for_annotators": True, "type": "terms", "values": None},
                      "visible_for_annotators": True}],
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "mapping": None,
    }


def settings_path(path: Path) -> Path:
    """Where the settings of the records at ``path`` go: ``NAME.settings.json`` beside them."""
    return path.with_name(path.name.rsplit(".", 1)[0] + ".settings.json")


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    if path.suffix.lower() == ".jsonl":
        write_jsonl(path, flat_records(frame))
    else:
        write_json(path, records(frame))
    v = frame.attrs.get("vectors")
    write_json(settings_path(path), settings(classes, None if v is None else int(v.shape[1]), is_image(frame),
                                                   bool(frame.attrs.get("multi_label"))))


def _id_of(rec: dict[str, Any], path: Path, where: str) -> str | None:
    meta = expect(rec.get("metadata"), dict, path, where, "metadata", "Argilla's metadata is an object") or {}
    for value, field in ((meta.get(ID_KEY), f"metadata.{ID_KEY}"), (rec.get("id"), "id"), (rec.get("external_id"), "external_id")):
        rid = id_at(value, path, where, field)
        if rid is not None:
            return rid
    return None


def _status(value: Any, path: Path, where: str, field: str) -> str | None:
    return expect(value, str, path, where, field, "a response status is a string (submitted, draft, discarded)")


def _responses(rec: dict[str, Any], path: Path, where: str) -> list[tuple[Any, str, str | None, str]] | None:
    """[(value, field, status, who)] of the label question, None when the record has no known layout."""
    resp = rec.get("responses")
    if isinstance(resp, dict):  # 2.x nested
        key = LABEL_KEY if LABEL_KEY in resp or len(resp) != 1 else next(iter(resp))
        qs = expect(resp.get(key), list, path, where, f"responses.{key}", "Argilla 2.x lists a question's responses") or []
        out = []
        for k, r in enumerate(qs):
            field = f"responses.{key}[{k}]"
            expect(r, dict, path, where, field, "each response is an object with a 'value'")
            if r is not None:
                out.append((r.get("value"), f"{field}.value", _status(r.get("status"), path, where, f"{field}.status"), show(r.get("user_id", "?"))))
        return out
    if isinstance(resp, list):  # 1.x FeedbackDataset
        out = []
        for k, r in enumerate(resp):
            field = f"responses[{k}]"
            expect(r, dict, path, where, field, "each Argilla 1.x response is an object with 'values'")
            values = expect((r or {}).get("values"), dict, path, where, f"{field}.values", "Argilla 1.x response values are an object keyed by question") or {}
            answer = expect(values.get(LABEL_KEY), dict, path, where, f"{field}.values.{LABEL_KEY}", 'an Argilla 1.x answer is {"value": ...}') or {}
            out.append((answer.get("value"), f"{field}.values.{LABEL_KEY}.value",
                        _status((r or {}).get("status"), path, where, f"{field}.status"), show((r or {}).get("user_id", "?"))))
        return out
    if resp is not None:
        expect(resp, dict, path, where, "responses", "Argilla 2.x responses are an object keyed by question")
    flat = f"{LABEL_KEY}.responses"
    if flat in rec:  # 2.x flattened
        vals = expect(rec.get(flat), list, path, where, flat, "a flattened record lists the responses' values") or []
        users = expect(rec.get(f"{flat}.users"), list, path, where, f"{flat}.users", "a flattened record lists the users") or []
        status = expect(rec.get(f"{flat}.status"), list, path, where, f"{flat}.status", "a flattened record lists the statuses") or []
        return [(v, f"{flat}[{k}]", _status(status[k] if k < len(status) else None, path, where, f"{flat}.status[{k}]"),
                 show(users[k]) if k < len(users) else "?") for k, v in enumerate(vals)]
    if "annotation" in rec:  # 1.x
        st = rec.get("status")
        if rec.get("annotation") is None:
            return []
        return [(rec["annotation"], "annotation", "submitted" if st in (None, "Validated") else show(st).strip("'").lower(), "?")]
    return None


def _read(path: Path) -> Answers:
    recs = read_records(path, "Argilla")
    res = Answers(n_records=len(recs))
    for where, rec in recs:
        rid = _id_of(rec, path, where)
        if rid is None:
            res.skipped.append((where, f"no record id nor metadata.{ID_KEY}; was the record exported by fmal?"))
            continue
        answers = _responses(rec, path, where)
        if answers is None:
            res.skipped.append((where, "neither 'responses' (Argilla 2.x) nor 'annotation' (1.x): not an Argilla record export"))
            continue
        if not answers:
            res.skipped.append((where, "no response yet"))
        for value, field, status, who in answers:
            at = f"{where} (user {who})"
            if status not in (None, "submitted"):
                res.skipped.append((at, f"response status {show(status)}"))
            else:
                res.take(rid, value, at, path=path, field=field, chosen="labels chosen", empty="empty response",
                         annotator=None if who == "?" else who.strip("'"))
    return res


register(Format("argilla", (".json", ".jsonl"), _write, _read, "Argilla 2.x records with suggestions; reads exported records"))
