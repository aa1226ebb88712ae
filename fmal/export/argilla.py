"""Argilla: records to log into a dataset, answers from exported records.

Out: a JSON list of records in the shape of Argilla 2.x ``Record.to_dict()``: ``{"id", "fields":
{"text"}, "metadata": {...}, "suggestions": {"label": {"value", "score", "agent"}}, "responses":
{}}``; the dataset needs a text field ``text`` and a label question ``label``
(``rg.Record.from_dict`` rebuilds each record, or log the dicts with a mapping).

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
from fmal._validation import show
from fmal.export.base import AGENT, ID_KEY, LABEL_KEY, Answers, Format, expect, id_at, meta_of, read_records, rows, suggestion, write_json, write_jsonl


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The tasks frame as Argilla 2.x record dicts (with a suggestion where there is one)."""
    out = []
    for rec in rows(frame):
        lab, p = suggestion(rec)
        sugg = {LABEL_KEY: {"value": lab, "score": p, "agent": AGENT}} if lab is not None else {}
        out.append({"id": str(rec["id"]), "fields": {"text": rec["text"]},
                    "metadata": {ID_KEY: str(rec["id"]), **meta_of(rec)},
                    "suggestions": sugg, "responses": {}, "vectors": {}})
    return out


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    recs = records(frame)
    write_jsonl(path, recs) if path.suffix.lower() == ".jsonl" else write_json(path, recs)


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
                res.skipped.append((at, f"response status {status!r}"))
            else:
                res.take(rid, value, at, path=path, field=field, chosen="labels chosen", empty="empty response")
    return res


register(Format("argilla", (".json", ".jsonl"), _write, _read, "Argilla 2.x records with suggestions; reads exported records"))
