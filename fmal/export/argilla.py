"""Argilla: records to log into a dataset, answers from exported records.

Out: a JSON list of records in the shape of Argilla 2.x ``Record.to_dict()``: ``{"id", "fields":
{"text"}, "metadata": {...}, "suggestions": {"label": {"value", "score", "agent"}}, "responses":
{}}``; the dataset needs a text field ``text`` and a label question ``label``
(``rg.Record.from_dict`` rebuilds each record, or log the dicts with a mapping).

In (JSON list or JSONL):
  * 2.x ``Record.to_dict()`` / ``records.to_json``: ``responses.label`` = [{"value", "user_id",
    "status"?}]; responses whose status is ``draft`` or ``discarded`` are skipped;
  * 2.x ``records.to_list(flatten=True)``: ``label.responses`` = [values];
  * 1.x text-classification records: ``annotation`` with ``status`` ``Validated``.
The id is the record ``id`` (fmal sets it to its own id), else ``metadata.fmal_id``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fmal.export import register
from fmal.export.base import AGENT, ID_KEY, LABEL_KEY, Answers, Format, meta_of, read_records, rows, suggestion, text_label, write_json, write_jsonl


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


def _id_of(rec: dict[str, Any]) -> str | None:
    meta = rec.get("metadata") if isinstance(rec.get("metadata"), dict) else {}
    return text_label(meta.get(ID_KEY)) or text_label(rec.get("id")) or text_label(rec.get("external_id"))


def _responses(rec: dict[str, Any]) -> list[tuple[Any, str | None, str]] | None:
    """[(value, status, who)] of the label question, None when the record has no known layout."""
    resp = rec.get("responses")
    if isinstance(resp, dict):  # 2.x nested
        qs = resp.get(LABEL_KEY)
        if qs is None and len(resp) == 1:
            qs = next(iter(resp.values()))
        return [(r.get("value"), r.get("status"), str(r.get("user_id", "?"))) for r in qs or [] if isinstance(r, dict)]
    flat = f"{LABEL_KEY}.responses"
    if flat in rec:  # 2.x flattened
        vals = rec.get(flat) or []
        users = rec.get(f"{flat}.users") or ["?"] * len(vals)
        status = rec.get(f"{flat}.status") or [None] * len(vals)
        return [(v, s, str(u)) for v, u, s in zip(vals, users, status)]
    if "annotation" in rec:  # 1.x
        st = rec.get("status")
        return [] if rec.get("annotation") is None else [(rec["annotation"], "submitted" if st in (None, "Validated") else str(st).lower(), "?")]
    return None


def _read(path: Path) -> Answers:
    recs = read_records(path, "Argilla")
    res = Answers(n_records=len(recs))
    for where, rec in recs:
        rid = _id_of(rec)
        if rid is None:
            res.skipped.append((where, f"no record id nor metadata.{ID_KEY}; was the record exported by fmal?"))
            continue
        answers = _responses(rec)
        if answers is None:
            res.skipped.append((where, "neither 'responses' (Argilla 2.x) nor 'annotation' (1.x): not an Argilla record export"))
            continue
        if not answers:
            res.skipped.append((where, "no response yet"))
        for value, status, who in answers:
            at = f"{where} (user {who})"
            if status not in (None, "submitted"):
                res.skipped.append((at, f"response status {status!r}"))
            else:
                res.take(rid, value, at, chosen="labels chosen", empty="empty response")
    return res


register(Format("argilla", (".json", ".jsonl"), _write, _read, "Argilla 2.x records with suggestions; reads exported records"))
