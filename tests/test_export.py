"""fmal export / import-labels: every format both ways, conflicts, idempotent re-import.

The tool-side files are written from each tool's documented formats: Label Studio's task format
(import with ``predictions``; JSON and JSON_MIN exports), Prodigy's ``db-out`` JSONL (``answer``
accept/reject/ignore, ``_input_hash``/``_task_hash``, choice ``options``/``accept``) and Argilla 1.x
text-classification records; Argilla 2.x records are made by the real ``argilla`` client
(``Record.from_dict``, ``Response``, the ``to_json`` / ``to_list(flatten=True)`` writers; no server).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import clustered, vector_pool
from typer.testing import CliRunner

from fmal import api
from fmal.cli import app
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.session import Session

CLASSES = np.array(["ham", "eggs", "spam"])


@pytest.fixture(scope="module")
def _loop_template(tmp_path_factory: pytest.TempPathFactory):
    """A 90-row pool in 3 clusters; round 1 (seed) labeled from the gold labels; round 2 (query) open."""
    d = tmp_path_factory.mktemp("loop")
    X, y = clustered(n=90, d=16, k=3, seed=1)
    index_dir = d / "indexes"
    vector_pool(index_dir, "p", X)
    gold = {f"r{i}": str(CLASSES[c]) for i, c in enumerate(y)}
    s1 = api.seed("p", 9, "kmeans", index_dir=index_dir)
    labels = d / "labels.csv"
    pd.DataFrame({"id": s1.ids, "label": [gold[i] for i in s1.ids]}).to_csv(labels, index=False)
    s2 = api.query("p", labels, 6, "margin", index_dir=index_dir)
    return index_dir, gold, s1, s2


@pytest.fixture
def loop(tmp_path: Path, _loop_template):
    """A fresh copy of the template pool: (index_dir, gold labels, seed round, query round)."""
    src, gold, s1, s2 = _loop_template
    shutil.copytree(src, tmp_path / "indexes")
    return tmp_path / "indexes", gold, s1, s2


def _files(index_dir: Path) -> dict[str, object]:
    """What a person made, as stored: the labels view and the database's labels, relabels, rounds
    (``answers``, the log of every answer given, grows with each import: checked on its own)."""
    d = index_dir / "p"
    s = Session(d)
    return {"labels.csv": (d / "labels.csv").read_bytes() if (d / "labels.csv").exists() else None,
            "labels": s.labels, "relabels": s.relabels, "rounds": s.rounds}


def _import(path, fmt, index_dir, policy="error"):
    return api.import_labels(path, "p", fmt, on_conflict=policy, index_dir=index_dir)


# ----------------------------------------------------------------------------- out


def test_export_label_studio_tasks_carry_predictions(loop):
    index_dir, gold, _, s2 = loop
    res = api.export("p", 2, "label-studio", index_dir=index_dir)
    assert res.output.name == "round-002-label-studio.json" and res.n_tasks == 6 and res.n_suggestions == 6
    tasks = json.loads(res.output.read_text())
    picks = s2.picks.set_index("id")
    assert [t["data"]["fmal_id"] for t in tasks] == s2.ids
    for t in tasks:
        row = picks.loc[t["data"]["fmal_id"]]
        assert t["data"]["text"] == row["text"]
        (pred,) = t["predictions"]
        assert pred["model_version"] == "fmal-probe"
        assert pred["score"] == pytest.approx(row["predicted_proba"], abs=1e-4)
        (r,) = pred["result"]
        assert r == {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [row["predicted_label"]]}}
    assert set(res.classes) <= set(CLASSES)


def test_export_prodigy_preselects_the_suggestion(loop):
    index_dir, _, _, s2 = loop
    res = api.export("p", 2, "prodigy", index_dir=index_dir)
    lines = [json.loads(x) for x in res.output.read_text().splitlines()]
    picks = s2.picks.set_index("id")
    for t in lines:
        row = picks.loc[t["fmal_id"]]
        assert t["text"] == row["text"] and t["accept"] == [row["predicted_label"]]
        assert {o["id"] for o in t["options"]} >= {row["predicted_label"]}
        assert all(o["id"] == o["text"] for o in t["options"])
        assert t["meta"]["score"] == pytest.approx(row["predicted_proba"], abs=1e-4)
        assert t["meta"]["fmal_id"] == t["fmal_id"]


def test_export_argilla_records_carry_suggestions(loop):
    index_dir, _, _, s2 = loop
    res = api.export("p", 2, "argilla", index_dir=index_dir)
    recs = json.loads(res.output.read_text())
    picks = s2.picks.set_index("id")
    for r in recs:
        row = picks.loc[r["id"]]
        assert r["fields"] == {"text": row["text"]} and r["metadata"]["fmal_id"] == r["id"]
        sug = r["suggestions"]["label"]
        assert sug["value"] == row["predicted_label"] and sug["agent"] == "fmal-probe"
        assert sug["score"] == pytest.approx(row["predicted_proba"], abs=1e-4)
        assert r["responses"] == {}


@pytest.mark.parametrize("fmt,suffix", [("csv", ".csv"), ("jsonl", ".jsonl")])
def test_export_tables_have_an_empty_label_column(loop, fmt, suffix):
    index_dir, _, _, s2 = loop
    res = api.export("p", None, fmt, index_dir=index_dir)  # None: the last round
    assert res.round == 2 and res.output.suffix == suffix
    frame = pd.read_csv(res.output, dtype=str, keep_default_na=False) if fmt == "csv" else pd.read_json(res.output, lines=True, dtype=False)
    assert list(frame.columns[:3]) == ["id", "text", "label"] and (frame["label"] == "").all()
    assert frame["id"].tolist() == s2.ids and {"predicted_label", "predicted_proba", "round"} <= set(frame.columns)


def test_export_seed_round_has_no_suggestions(loop):
    index_dir, _, s1, _ = loop
    for fmt in ("label-studio", "prodigy", "argilla"):
        res = api.export("p", 1, fmt, index_dir=index_dir)
        assert res.n_tasks == 9 and res.n_suggestions == 0
    tasks = json.loads((index_dir / "p" / "exports" / "round-001-label-studio.json").read_text())
    assert all("predictions" not in t for t in tasks)


def test_export_errors_name_the_rule(loop, tmp_path):
    index_dir, *_ = loop
    with pytest.raises(InvalidInputError, match=r"^round must be one of the pool's rounds \(1, 2\), got 7") as err:
        api.export("p", 7, "csv", index_dir=index_dir)  # the library names its parameter; the CLI its flag
    assert err.value.param == "round"
    with pytest.raises(InvalidInputError, match=r"unknown format 'excel': must be one of \[csv, jsonl, label-studio, prodigy, argilla\]"):
        api.export("p", 1, "excel", index_dir=index_dir)
    with pytest.raises(InvalidInputError, match=r"a label-studio file must end in \.json"):
        api.export("p", 1, "label-studio", index_dir=index_dir, output=tmp_path / "x.csv")


# ----------------------------------------------------------------------------- in: each tool's documented export


def _ls_annotation(label, ann_id, cancelled=False):
    return {"id": ann_id, "completed_by": 1, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": "2024-03-09T22:16:08.728353Z", "updated_at": "2024-03-09T22:16:08.728378Z",
            "lead_time": 4.288, "result_count": 0, "task": ann_id, "project": 3,
            "result": [] if cancelled else [{"value": {"choices": [label]}, "id": f"res{ann_id}", "from_name": "label",
                                            "to_name": "text", "type": "choices", "origin": "manual"}]}


def test_import_label_studio_json_export(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    tasks = json.loads(api.export("p", 2, "label-studio", index_dir=index_dir).output.read_text())
    ids = s2.ids
    exported = []
    for n, t in enumerate(tasks, start=1):
        rid = t["data"]["fmal_id"]
        anns = [] if rid == ids[5] else [_ls_annotation(gold[rid], 100 + n, cancelled=rid == ids[4])]
        exported.append({"id": n, "data": t["data"], "annotations": anns, "predictions": t["predictions"],
                         "meta": {}, "created_at": "2024-03-09T21:52:49.513742Z", "updated_at": "2024-03-09T22:16:08.746926Z",
                         "inner_id": n, "total_annotations": len(anns), "cancelled_annotations": int(rid == ids[4]),
                         "project": 3, "file_upload": None})
    f = tmp_path / "project-3-at-2024.json"
    f.write_text(json.dumps(exported))
    r = _import(f, "label-studio", index_dir)
    assert r.n_records == 6 and r.added == 4 and r.changed == 0 and not r.unknown
    assert sorted(w for _, w in r.skipped) == ["not annotated", "skipped by the annotator"]
    labels = Session(index_dir / "p").labels
    assert all(labels[i] == gold[i] for i in ids[:4]) and ids[4] not in labels and ids[5] not in labels


def test_import_label_studio_json_min_export(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    recs = [{"text": "t", "fmal_id": i, "id": n, "label": gold[i], "annotator": 1, "annotation_id": n,
             "created_at": "2024-03-09T22:16:08Z", "updated_at": "2024-03-09T22:16:08Z", "lead_time": 2.5}
            for n, i in enumerate(s2.ids[:3], start=1)]
    f = tmp_path / "min.json"
    f.write_text(json.dumps(recs))
    r = _import(f, "label-studio", index_dir)
    assert r.added == 3 and all(Session(index_dir / "p").labels[i] == gold[i] for i in s2.ids[:3])


def test_import_prodigy_db_out(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    tasks = [json.loads(x) for x in api.export("p", 2, "prodigy", index_dir=index_dir).output.read_text().splitlines()]
    answers = ["accept", "accept", "accept", "reject", "ignore"]
    out = []
    for n, (t, ans) in enumerate(zip(tasks, answers)):
        t = dict(t, _input_hash=1000 + n, _task_hash=2000 + n, _view_id="choice", _session_id="fmal-ann", _annotator_id="fmal-ann",
                 _timestamp=1700000000 + n, answer=ans, config={"choice_style": "single"})
        if ans == "accept":
            t["accept"] = [gold[t["fmal_id"]]]
        out.append(t)
    # a binary textcat.teach-style task, as Prodigy saves it: label + accept
    sixth = s2.ids[5]
    out.append({"text": "x", "label": gold[sixth], "meta": {"fmal_id": sixth, "score": 0.5}, "_input_hash": 9, "_task_hash": 10,
                "_view_id": "classification", "answer": "accept", "_timestamp": 1700000009})
    f = tmp_path / "db-out.jsonl"
    f.write_text("".join(json.dumps(t) + "\n" for t in out))
    r = _import(f, "prodigy", index_dir)
    assert r.n_records == 6 and r.added == 4
    assert sorted(w for _, w in r.skipped) == ["answer 'ignore'", "answer 'reject'"]
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in s2.ids[:3] + [sixth]} == {i: gold[i] for i in s2.ids[:3] + [sixth]}
    assert s2.ids[3] not in labels and s2.ids[4] not in labels


def _argilla_records(recs: list[dict], answers: dict[str, tuple[str, str | None]]):
    """fmal's exported dicts rebuilt by the real Argilla client (``rg.Record.from_dict``), with
    ``answers`` {id: (value, status)} added as ``rg.Response`` objects, as an annotator's would be."""
    import uuid

    rg = pytest.importorskip("argilla")
    out = []
    for d in recs:
        rec = rg.Record.from_dict(d)
        if d["id"] in answers:
            value, status = answers[d["id"]]
            kw = {"status": status} if status else {}
            rec.responses.add(rg.Response("label", value, user_id=uuid.UUID(int=7), **kw))
        out.append(rec)
    return out


def test_export_argilla_records_load_in_the_argilla_client(loop):
    """Conformance with the real client (no server): every exported dict is a valid 2.x record."""
    rg = pytest.importorskip("argilla")
    index_dir, _, _, s2 = loop
    recs = json.loads(api.export("p", 2, "argilla", index_dir=index_dir).output.read_text())
    picks = s2.picks.set_index("id")
    for d in recs:
        rec = rg.Record.from_dict(d)
        assert rec.id == d["id"] and rec.fields["text"] == picks.loc[d["id"], "text"]
        assert rec.metadata["fmal_id"] == d["id"]
        sug = rec.suggestions["label"]
        assert sug.value == picks.loc[d["id"], "predicted_label"] and sug.agent == "fmal-probe"
        assert sug.score == pytest.approx(picks.loc[d["id"], "predicted_proba"], abs=1e-4)
        back = rec.to_dict()  # what records.to_json writes: fmal's dict comes back unchanged
        assert {k: back[k] for k in ("id", "fields", "metadata", "suggestions")} == {k: d[k] for k in ("id", "fields", "metadata", "suggestions")}


def test_import_argilla_records_written_by_the_client(loop, tmp_path):
    """records.to_json (nested ``Record.to_dict()``) as the real client writes it."""
    from argilla.records._io import JsonIO  # what Dataset.records.to_json calls

    index_dir, gold, _, s2 = loop
    recs = json.loads(api.export("p", 2, "argilla", index_dir=index_dir).output.read_text())
    answered = {d["id"]: (gold[d["id"]], None) for d in recs[:3]}
    f = JsonIO.to_json(_argilla_records(recs, answered), tmp_path / "records.json")
    r = _import(f, "argilla", index_dir)
    assert r.n_records == len(recs) and r.added == 3
    assert [w for _, w in r.skipped] == ["no response yet"] * (len(recs) - 3)
    labels = Session(index_dir / "p").labels
    assert {i: labels[i] for i in answered} == {i: gold[i] for i in answered}


def test_import_argilla_flattened_records_from_the_client(loop, tmp_path):
    """records.to_list(flatten=True) as the real client makes it: ``label.responses`` columns, the
    metadata spread into top-level keys; a draft response is skipped."""
    from argilla.records._io import GenericIO  # what Dataset.records.to_list calls

    index_dir, gold, _, s2 = loop
    recs = json.loads(api.export("p", 2, "argilla", index_dir=index_dir).output.read_text())
    answers = {recs[0]["id"]: (gold[recs[0]["id"]], "submitted"), recs[1]["id"]: (gold[recs[1]["id"]], None),
               recs[2]["id"]: (gold[recs[2]["id"]], "draft")}
    flat = GenericIO.to_list(_argilla_records(recs, answers), flatten=True)
    assert "label.responses" in flat[0] and "fields" not in flat[0]  # really the flat layout
    f = tmp_path / "records.json"
    f.write_text(json.dumps(flat, default=str))
    r = _import(f, "argilla", index_dir)
    assert r.added == 2 and "response status 'draft'" in [w for _, w in r.skipped]
    labels = Session(index_dir / "p").labels
    assert recs[2]["id"] not in labels and labels[recs[0]["id"]] == gold[recs[0]["id"]]


def test_import_argilla_flat_and_v1_records(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    a, b, c = s2.ids[:3]
    flat = [{"id": a, "_server_id": "x", "text": "t", "label.responses": [gold[a]], "label.responses.users": ["u1"],
             "label.responses.status": ["submitted"], "label.suggestion": "ham", "label.suggestion.score": 0.5}]
    # Argilla 1.x text-classification records (no 1.x client here: the documented record shape)
    v1 = [{"text": "t", "inputs": {"text": "t"}, "id": b, "annotation": gold[b], "annotation_agent": "argilla", "status": "Validated",
           "prediction": [["ham", 0.6], ["spam", 0.4]], "metadata": {}},
          {"text": "t", "inputs": {"text": "t"}, "id": c, "annotation": gold[c], "status": "Discarded", "metadata": {}}]
    f = tmp_path / "records.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in flat + v1))
    r = _import(f, "argilla", index_dir)
    assert r.added == 2 and [w for _, w in r.skipped] == ["response status 'discarded'"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_tables_round_trip(loop, fmt):
    index_dir, gold, _, s2 = loop
    out = api.export("p", 2, fmt, index_dir=index_dir).output
    if fmt == "csv":
        frame = pd.read_csv(out, dtype=str, keep_default_na=False)
        frame.loc[:3, "label"] = [gold[i] for i in frame["id"][:4]]
        frame.to_csv(out, index=False)
    else:
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        for rec in recs[:4]:
            rec["label"] = gold[rec["id"]]
        out.write_text("".join(json.dumps(x) + "\n" for x in recs))
    r = _import(out, fmt, index_dir)
    assert r.added == 4 and [w for _, w in r.skipped] == ["no label yet", "no label yet"]


# ----------------------------------------------------------------------------- conflicts, unknown ids, idempotence


def _ls_file(tmp_path, answers: list[tuple[str, list[str]]], name="ls.json"):
    tasks = [{"id": n, "data": {"text": "t", "fmal_id": rid}, "annotations": [_ls_annotation(l, 10 * n + j) for j, l in enumerate(labs)]}
             for n, (rid, labs) in enumerate(answers, start=1)]
    f = tmp_path / name
    f.write_text(json.dumps(tasks))
    return f


def test_conflict_with_stored_label_follows_the_policy(loop, tmp_path):
    index_dir, gold, s1, _ = loop
    rid = s1.ids[0]
    wrong = str(next(c for c in CLASSES if c != gold[rid]))
    f = _ls_file(tmp_path, [(rid, [wrong])])
    before = _files(index_dir)
    with pytest.raises(LabelsError, match=rf"1 id\(s\) already have another label \('{rid}': stored '{gold[rid]}', new '{wrong}'\); pass --on-conflict"):
        _import(f, "label-studio", index_dir)
    assert _files(index_dir) == before  # nothing written
    n_answers = len(Session(index_dir / "p").answers())

    r = _import(f, "label-studio", index_dir, "keep")
    assert (r.kept, r.changed) == (1, 0) and r.conflicts[0].stored == gold[rid] and r.conflicts[0].incoming == wrong
    assert r.conflicts[0].resolution == "kept" and _files(index_dir) == before
    log = Session(index_dir / "p").answers()  # the kept answer is not lost either: it is in the log
    assert len(log) == n_answers + 1 and log.iloc[-1][["id", "value", "outcome"]].tolist() == [rid, wrong, "kept"]

    r = _import(f, "label-studio", index_dir, "replace")
    assert (r.changed, r.conflicts[0].resolution) == (1, "replaced")
    s = Session(index_dir / "p")
    assert s.labels[rid] == wrong
    assert s.relabels[-1]["id"] == rid and s.relabels[-1]["old"] == gold[rid] and s.relabels[-1]["new"] == wrong  # nothing lost
    assert len(s.labels) == 9


def test_disagreement_inside_the_file(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    rid = s2.ids[0]
    f = _ls_file(tmp_path, [(rid, ["ham", "spam"])])
    with pytest.raises(LabelsError, match=rf"1 id\(s\) have different answers in the file \('{rid}': 'ham' \(record 1 .*\), 'spam'"):
        _import(f, "label-studio", index_dir)
    assert rid not in Session(index_dir / "p").labels
    r = _import(f, "label-studio", index_dir, "keep")
    assert r.disagreements[0].chosen == "ham" and Session(index_dir / "p").labels[rid] == "ham"
    r = _import(f, "label-studio", index_dir, "replace")
    assert r.disagreements[0].chosen == "spam" and Session(index_dir / "p").labels[rid] == "spam"


def test_unknown_ids_are_reported_not_imported(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    f = _ls_file(tmp_path, [(s2.ids[0], [gold[s2.ids[0]]]), ("nope-1", ["ham"])])
    r = _import(f, "label-studio", index_dir)
    assert r.added == 1 and [a.id for a in r.unknown] == ["nope-1"] and "nope-1" not in Session(index_dir / "p").labels
    g = _ls_file(tmp_path, [("nope-1", ["ham"]), ("nope-2", ["spam"])], "g.json")
    with pytest.raises(LabelsError, match=r"none of the 2 answered ids are in pool 'p' \('nope-1', 'nope-2'\)"):
        _import(g, "label-studio", index_dir)


@pytest.mark.parametrize("policy", ["error", "keep", "replace"])
def test_reimport_changes_nothing(loop, tmp_path, policy):
    index_dir, gold, s1, s2 = loop
    answers = [(i, [gold[i]]) for i in s2.ids] + [(s1.ids[0], [gold[s1.ids[0]]])]
    if policy != "error":
        answers.append((s1.ids[1], ["ham", "spam"]))  # a disagreement inside the file
    f = _ls_file(tmp_path, answers)
    first = _import(f, "label-studio", index_dir, policy)
    assert first.added == 6
    before = _files(index_dir)
    mtime = (index_dir / "p" / "labels.csv").stat().st_mtime_ns
    again = _import(f, "label-studio", index_dir, policy)
    assert (again.added, again.changed) == (0, 0)
    assert _files(index_dir) == before
    assert (index_dir / "p" / "labels.csv").stat().st_mtime_ns == mtime  # the view is not even rewritten
    assert set(Session(index_dir / "p").answers()["outcome"].tail(len(answers))) <= {"unchanged", "kept"}


def test_bad_files_name_file_and_place(loop, tmp_path):
    index_dir, *_ = loop
    f = tmp_path / "bad.jsonl"
    f.write_text('{"answer": "accept"}\n{oops\n')
    with pytest.raises(LabelsError, match=r"bad\.jsonl: line 2: not valid JSON"):
        _import(f, "prodigy", index_dir)
    g = tmp_path / "bad.csv"
    g.write_text("id,lbl\nr1,ham\n")
    with pytest.raises(LabelsError, match=r"bad\.csv: no column 'label' \(columns: id, lbl\)"):
        _import(g, "csv", index_dir)
    with pytest.raises(InvalidInputError, match="^on_conflict must be one of error, keep, replace, majority, crowdlab, got 'maybe'"):
        _import(_ls_file(tmp_path, [("r1", ["ham"])]), "label-studio", index_dir, "maybe")


# ----------------------------------------------------------------------------- CLI


def test_cli_export_and_import(loop, tmp_path):
    index_dir, gold, _, s2 = loop
    runner = CliRunner()
    out = tmp_path / "tasks.json"
    res = runner.invoke(app, ["export", "--pool", "p", "--round", "2", "--format", "label-studio", "--output", str(out), "--index-dir", str(index_dir)])
    assert res.exit_code == 0, res.output
    assert "round 2: 6 tasks (6 with a suggested label) as label-studio" in res.output and out.exists()
    f = _ls_file(tmp_path, [(s2.ids[0], [gold[s2.ids[0]]]), ("ghost", ["ham"])])
    res = runner.invoke(app, ["import-labels", str(f), "--pool", "p", "--format", "label-studio", "--index-dir", str(index_dir)])
    assert res.exit_code == 0, res.output
    assert "labels added: 1" in res.output and "'ghost'" in res.output
    wrong = str(next(c for c in CLASSES if c != gold[s2.ids[0]]))
    g = _ls_file(tmp_path, [(s2.ids[0], [wrong])], "g.json")
    res = runner.invoke(app, ["import-labels", str(g), "--pool", "p", "--format", "label-studio", "--index-dir", str(index_dir)])
    assert res.exit_code == 2 and "already have another label" in res.output
    res = runner.invoke(app, ["import-labels", str(g), "--pool", "p", "-f", "label-studio", "--on-conflict", "replace", "--index-dir", str(index_dir)])
    assert res.exit_code == 0 and f"conflict {s2.ids[0]!r}: stored {gold[s2.ids[0]]!r}, file {wrong!r} -> replaced" in res.output


def test_errors_name_parameters_and_the_cli_shows_flags(loop, tmp_path, cli, cli_error):
    """The library's messages name parameters (``round``, ``output``, ``format``); the command
    line prints the same message with its options (``--round``), a path left as written."""
    index_dir, *_ = loop
    P = ("--pool", "p", "--index-dir", index_dir)
    cli_error(cli("export", *P, "--round", 7), "error: --round must be one of the pool's rounds (1, 2), got 7")
    out = tmp_path / "output" / "round.csv"
    line = cli_error(cli("export", *P, "--format", "label-studio", "--output", out), f"--output {out}: a label-studio file")
    assert "--output/" not in line  # a parameter's name inside a path stays
    cli_error(cli("audit", *P, "--output", tmp_path / "r.xlsx"), "--output", ": pass --format (csv, jsonl")
    with pytest.raises(InvalidInputError, match=r"^output .*r\.xlsx: pass format \(csv") as err:
        api.audit("p", index_dir=index_dir, output=tmp_path / "r.xlsx")
    assert err.value.param == ("output", "format")
    cli_error(cli("import-labels", tmp_path / "x.json", *P, "--on-conflict", "maybe"), "--on-conflict must be one of")
    cli_error(cli("export", *P, "--format", "prodigy", "--with-vectors"), "--with-vectors adds the embeddings")
