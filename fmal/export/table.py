"""Plain tables: CSV and JSONL. Out: every task column plus an empty ``label`` column to fill in.
In: rows with an ``id`` and a non-empty ``label`` (other columns are ignored)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fmal.exceptions import InvalidInputError, LabelsError
from fmal.export import register
from fmal.export.base import Answer, Answers, Format, id_at, label_at
from fmal.multilabel import canonical
from fmal.io import columns_of, read_table, write_table


def _write(frame: pd.DataFrame, path: Path, classes: list[str]) -> None:
    out = frame.copy()
    if "label" in out.columns:  # e.g. an audit's current label: keep it, but under another name
        out = out.rename(columns={"label": "given_label"})
    cols = ["id", "text", "label"] + [c for c in out.columns if c not in {"id", "text"}]
    out["label"] = ""
    write_table(out[cols], path)


def _read(path: Path) -> Answers:
    try:
        frame, fmt, _ = read_table(path)
    except InvalidInputError as exc:
        raise LabelsError(str(exc)) from None
    for col in ("id", "label"):
        if col not in frame.columns:
            raise LabelsError(f"{path}: no column {col!r} (columns: {columns_of(frame)}); a labels table needs 'id' and 'label' columns")
    res = Answers(n_records=len(frame))
    unit = "line" if fmt == "jsonl" else "row"
    who = frame["annotator"].tolist() if "annotator" in frame.columns else [None] * len(frame)  # several answers a task
    for i, (rid, lab, by) in enumerate(zip(frame["id"].tolist(), frame["label"].tolist(), who), start=1):
        where = f"{unit} {i}"
        rid_s = id_at(rid, path, where, "id")
        # multi-label hook: a JSON list of classes is one answer "a|b" (a single-label pool refuses it, saying how to switch)
        lab_s = canonical(lab, f"{path}: {where}", "label") if isinstance(lab, (list, tuple)) else label_at(lab, path, where, "label")
        if rid_s is None:
            raise LabelsError(f"{path}: {where}: empty id; every labeled row needs the id of a pool row")
        if lab_s is None:
            res.skipped.append((where, "no label yet"))
            continue
        res.answers.append(Answer(rid_s, lab_s, where, None if by is None or pd.isna(by) or not str(by).strip() else str(by).strip()))
    return res


register(Format("csv", (".csv", ".tsv"), _write, _read, "a table with an empty 'label' column to fill in"))
register(Format("jsonl", (".jsonl",), _write, _read, "one JSON object a line with an empty 'label' to fill in"))
