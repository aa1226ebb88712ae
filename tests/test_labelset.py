"""Issue 15: the pool knows its label set, every tool's file is read right, several annotators.

Tool-side files follow each tool's documented export shapes (Label Studio JSON, JSON_MIN and CSV;
Prodigy db-out); Argilla records are checked with the real ``argilla`` client, offline.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import clustered, vector_pool

from fmal import api
from fmal.exceptions import InvalidInputError, LabelsError
from fmal.session import SCHEMA_VERSION, Session

CLASSES = ["ham", "eggs", "spam"]


@pytest.fixture
def pool(tmp_path: Path):
    """A 60-row pool in 3 clusters with a seed round of 9: (index_dir, gold labels, seed round)."""
    X, y = clustered(n=60, d=16, k=3, seed=4)
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "p", X)
    gold = {f"r{i}": CLASSES[c] for i, c in enumerate(y)}
    s1 = api.seed("p", 9, "kmeans", index_dir=index_dir)
    return index_dir, gold, s1


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------ the label set


def test_classes_declared_once_listed_by_every_export(pool, tmp_path):
    index_dir, _, _ = pool
    bare = api.export("p", 1, "prodigy", index_dir=index_dir)
    assert bare.classes == [] and bare.warning and "--classes" in bare.warning  # a seed round, nothing known
    assert all(json.loads(line)["options"] == [] for line in bare.output.read_text().splitlines())

    res = api.export("p", 1, "prodigy", index_dir=index_dir, classes="spam,ham,eggs")
    assert res.classes == ["spam", "ham", "eggs"] and res.declared and res.warning is None
    for line in res.output.read_text().splitlines():
        assert [o["id"] for o in json.loads(line)["options"]] == ["spam", "ham", "eggs"]
    assert Session(index_dir / "p").classes == ["spam", "ham", "eggs"]  # stored: later exports need no flag
    argi = api.export("p", 1, "argilla", index_dir=index_dir)
    settings = json.loads(argi.output.with_name(argi.output.stem + ".settings.json").read_text())
    assert [o["value"] for o in settings["questions"][0]["settings"]["options"]] == ["spam", "ham", "eggs"]


def test_seed_declares_classes_and_import_reports_labels_outside(pool, tmp_path):
    index_dir, gold, s1 = pool
    api.seed("p", 9, "kmeans", index_dir=index_dir, classes=["ham", "eggs"])  # same round reused, classes stored
    assert Session(index_dir / "p").classes == ["ham", "eggs"]
    rows = [{"id": i, "label": gold[i]} for i in s1.ids]
    f = tmp_path / "labels.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["id", "label"])
        w.writeheader()
        w.writerows(rows)
    r = api.import_labels(f, "p", index_dir=index_dir)  # csv detected
    assert r.format == "csv" and r.detected
    assert r.outside == tuple(sorted({gold[i] for i in s1.ids} - {"ham", "eggs"}))
    assert r.added == 9  # reported, not dropped


def test_schema_1_database_is_upgraded_keeping_every_answer(pool, tmp_path):
    index_dir, gold, s1 = pool
    s = Session(index_dir / "p")
    s.add_labels({i: gold[i] for i in s1.ids[:4]}, source="t", annotators={s1.ids[0]: "ann"})
    db = index_dir / "p" / "labels.db"
    with sqlite3.connect(db) as c:  # back to schema 1: no classes/sync tables, answers without 'vote'
        c.executescript("""
            DROP TABLE classes; DROP TABLE sync_tasks; DROP TABLE sync_annotations;
            CREATE TABLE a1(seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, value TEXT NOT NULL, source TEXT NOT NULL,
                annotator TEXT, time TEXT NOT NULL, round INTEGER,
                outcome TEXT NOT NULL CHECK (outcome IN ('added', 'replaced', 'kept', 'unchanged', 'migrated')));
            INSERT INTO a1 SELECT * FROM answers; DROP TABLE answers; ALTER TABLE a1 RENAME TO answers;
            UPDATE meta SET value = '1' WHERE key = 'schema_version';""")
    before = Session(index_dir / "p").answers()
    assert Session(index_dir / "p").classes == []  # a schema-1 database reads as it is
    api.declare_classes("p", "ham,eggs,spam", index_dir=index_dir)
    s = Session(index_dir / "p")
    assert s.classes == ["ham", "eggs", "spam"]
    after = s.answers()
    assert after.drop(columns=[]).equals(before) and after.loc[0, "annotator"] == "ann"
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    # the rebuilt answers table takes votes
    s.add_labels({s1.ids[5]: "ham"}, source="t", votes=[(s1.ids[5], "ham", "a"), (s1.ids[5], "spam", "b")])
    assert (Session(index_dir / "p").answers()["outcome"] == "vote").sum() == 2


def test_bad_class_lists_are_one_line_errors(pool):
    index_dir, _, _ = pool
    with pytest.raises(InvalidInputError, match="twice"):
        api.declare_classes("p", "a,b,a", index_dir=index_dir)
    with pytest.raises(InvalidInputError, match="separated by commas"):
        api.declare_classes("p", "a,,b", index_dir=index_dir)


# ------------------------------------------------------------------ Label Studio files


def test_ls_json_min_several_choices_is_not_a_label(pool, tmp_path):
    index_dir, _, s1 = pool
    a, b = s1.ids[:2]
    f = _write(tmp_path / "min.json", [{"id": 1, "text": "t", "fmal_id": a, "label": {"choices": ["DESC", "HUM"]}, "annotator": 1,
                                         "annotation_id": 5},
                                        {"id": 2, "text": "t", "fmal_id": b, "label": {"choices": ["DESC", "HUM"]}, "annotator": 1,
                                         "annotation_id": 6}])
    with pytest.raises(LabelsError, match=r"none holds a usable answer \(2 x 2 choices for a single-label question"):
        api.import_labels(f, "p", "label-studio", index_dir=index_dir)
    assert Session(index_dir / "p").labels == {}
    f2 = _write(tmp_path / "min2.json", [{"id": 1, "text": "t", "fmal_id": a, "label": {"choices": ["ham", "spam"]}},
                                          {"id": 2, "text": "t", "fmal_id": b, "label": "ham"}])
    r = api.import_labels(f2, "p", index_dir=index_dir)
    assert r.format == "label-studio" and r.added == 1 and "2 choices" in r.skipped[0][1]
    assert "{" not in "".join(Session(index_dir / "p").labels.values())


def test_ls_json_min_control_with_another_name(pool, tmp_path, cli, cli_error):
    index_dir, gold, s1 = pool
    recs = [{"id": 10 + n, "text": "t", "fmal_id": i, "round": 1, "strategy": "kmeans", "sentiment": gold[i], "annotator": 3,
             "annotation_id": 40 + n, "created_at": "2024-01-01", "updated_at": "2024-01-01", "lead_time": 2.0}
            for n, i in enumerate(s1.ids[:5])]
    r = api.import_labels(_write(tmp_path / "min.json", recs), "p", index_dir=index_dir)
    assert r.added == 5 and Session(index_dir / "p").labels == {i: gold[i] for i in s1.ids[:5]}
    for rec in recs:
        rec["topic"] = "x"
    two = _write(tmp_path / "two.json", recs)
    res = cli("import-labels", two, "--pool", "p", "--index-dir", index_dir)
    cli_error(res, "'sentiment', 'topic'", "--control NAME")
    ok = cli("import-labels", two, "--pool", "p", "--index-dir", index_dir, "--control", "sentiment")
    assert ok.exit_code == 0 and "unchanged: 5" in ok.stdout


def test_ls_full_json_with_another_control_and_annotators(pool, tmp_path):
    index_dir, gold, s1 = pool
    a = s1.ids[0]
    res = [{"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["x"]}},
           {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [gold[a]]}}]
    task = {"id": 77, "data": {"text": "t", "fmal_id": a}, "annotations": [{"id": 1, "completed_by": {"id": 2, "email": "a@x"}, "result": res}]}
    f = _write(tmp_path / "ls.json", [task])
    with pytest.raises(LabelsError, match="2 choices results"):
        api.import_labels(f, "p", index_dir=index_dir)
    r = api.import_labels(f, "p", index_dir=index_dir, control="sentiment")
    assert r.added == 1
    assert Session(index_dir / "p").answers()["annotator"].tolist() == ["a@x"]


def test_ls_csv_export_matched_on_fmal_id(pool, tmp_path):
    index_dir, gold, s1 = pool
    f = tmp_path / "project-1.csv"
    with f.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["annotation_id", "annotator", "created_at", "fmal_id", "id", "label", "lead_time", "round", "strategy", "text", "updated_at"])
        for n, i in enumerate(s1.ids[:4]):  # Label Studio's own task ids r0..r3 would be pool ids: never used
            w.writerow([n + 1, 1, "2024", i, f"r{n}", gold[i], 1.5, 1, "kmeans", "t", "2024"])
        w.writerow([9, 1, "2024", s1.ids[4], "r9", '{"choices": ["ham", "spam"]}', 1.5, 1, "kmeans", "t", "2024"])
        w.writerow(["", "", "", s1.ids[5], "r8", "", "", 1, "kmeans", "t", ""])
    r = api.import_labels(f, "p", index_dir=index_dir)
    assert r.format == "label-studio" and r.added == 4
    assert Session(index_dir / "p").labels == {i: gold[i] for i in s1.ids[:4]}
    assert sorted(w for _, w in r.skipped) == ["2 choices for a single-label question; fmal needs exactly one", "not annotated"]
    g = tmp_path / "no-fmal-id.csv"
    g.write_text("id,label,annotator\n1,ham,1\n")
    with pytest.raises(LabelsError, match="no column 'fmal_id'"):
        api.import_labels(g, "p", "label-studio", index_dir=index_dir)


def test_wrong_format_fails_and_says_which(pool, tmp_path, cli, cli_error):
    index_dir, gold, s1 = pool
    tasks = [{"id": n, "data": {"text": "t", "fmal_id": i},
              "annotations": [{"id": n, "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                    "value": {"choices": [gold[i]]}}]}]} for n, i in enumerate(s1.ids[:3])]
    f = _write(tmp_path / "ls.json", tasks)
    res = cli("import-labels", f, "--pool", "p", "--index-dir", index_dir, "--format", "prodigy")
    cli_error(res, "3 record(s) read as prodigy, none holds a usable answer", "--format label-studio")
    assert Session(index_dir / "p").labels == {}
    ok = cli("import-labels", f, "--pool", "p", "--index-dir", index_dir)
    assert ok.exit_code == 0 and "(label-studio, detected)" in ok.stdout and "added: 3" in ok.stdout
    empty = _write(tmp_path / "none.json", [{"id": 1, "data": {"text": "t", "fmal_id": s1.ids[4]}, "annotations": []}])
    cli_error(cli("import-labels", empty, "--pool", "p", "--index-dir", index_dir), "none holds a usable answer", "1 x not annotated")


def test_format_detection(tmp_path):
    from fmal.export.detect import detect

    cases = {
        "ls.json": [{"data": {"fmal_id": "a"}, "annotations": []}],
        "min.json": [{"id": 3, "fmal_id": "a", "label": "x", "annotator": 1}],
        "prodigy.jsonl": [{"text": "t", "answer": "accept", "_task_hash": 1}],
        "argilla.json": [{"id": "a", "fields": {"text": "t"}, "responses": {}}],
        "plain.jsonl": [{"id": "a", "label": "x"}],
    }
    expect = {"ls.json": "label-studio", "min.json": "label-studio", "prodigy.jsonl": "prodigy", "argilla.json": "argilla",
              "plain.jsonl": "jsonl"}
    for name, recs in cases.items():
        p = tmp_path / name
        p.write_text("\n".join(json.dumps(r) for r in recs) if name.endswith("jsonl") else json.dumps(recs))
        assert detect(p) == expect[name], name
    odd = _write(tmp_path / "odd.json", [{"foo": 1}])
    with pytest.raises(LabelsError, match="cannot tell which tool wrote it.*pass --format"):
        detect(odd)


# ------------------------------------------------------------------ Argilla, with the real client


@pytest.fixture
def offline_argilla():
    """The real argilla client with its connection check switched off (no server): a Dataset with
    fmal's settings, to run the client's own record mapping."""
    rg = pytest.importorskip("argilla")
    from unittest import mock

    from argilla._api import _client

    with mock.patch.object(_client.APIClient, "_validate_connection", lambda self: None):
        client = rg.Argilla(api_url="http://127.0.0.1:9", api_key="offline")
        rg.Argilla._set_default(client)
        yield rg


def test_argilla_records_with_vectors_and_flat_jsonl_for_log(pool, tmp_path, offline_argilla):
    rg = offline_argilla
    from argilla.records._mapping._mapper import IngestedRecordMapper

    from fmal.export.argilla import LOG_MAPPING

    index_dir, _, s1 = pool
    res = api.export("p", 1, "argilla", index_dir=index_dir, classes=CLASSES, with_vectors=True)
    settings = rg.Settings.from_json(res.output.with_name(res.output.stem + ".settings.json"))
    assert settings.questions["label"].labels == CLASSES and settings.vectors["embedding"].dimensions == 16
    ds = rg.Dataset(name="fmal", settings=settings)
    recs = json.loads(res.output.read_text())
    for d in recs:  # what Dataset.records.from_json does with each
        rec = rg.Record.from_dict(d, dataset=ds)
        assert len(rec.vectors["embedding"]) == 16 and rec.metadata["fmal_id"] == d["id"]
        rec.api_model()
    flat = api.export("p", 1, "argilla", index_dir=index_dir, output=tmp_path / "r.jsonl", with_vectors=True)
    mapper = IngestedRecordMapper(dataset=ds, user_id=None, mapping=LOG_MAPPING)
    for line in flat.output.read_text().splitlines():  # what Dataset.records.log does with each dict
        d = json.loads(line)
        rec = mapper(d)
        assert rec.id == d["id"] and rec.fields["text"] == d["text"] and len(rec.vectors["embedding"]) == 16
    with pytest.raises(InvalidInputError, match="^with_vectors adds the embeddings"):
        api.export("p", 1, "prodigy", index_dir=index_dir, with_vectors=True)


def test_argilla_suggestions_map_through_log(pool, tmp_path, offline_argilla):
    rg = offline_argilla
    from argilla.records._mapping._mapper import IngestedRecordMapper

    from fmal.export.argilla import LOG_MAPPING

    index_dir, gold, s1 = pool
    Session(index_dir / "p").add_labels({i: gold[i] for i in s1.ids}, source="t")
    api.query("p", None, 5, "margin", index_dir=index_dir)
    res = api.export("p", 2, "argilla", index_dir=index_dir, output=tmp_path / "q.jsonl", classes=CLASSES)
    settings = rg.Settings.from_json(tmp_path / "q.settings.json")
    mapper = IngestedRecordMapper(dataset=rg.Dataset(name="fmal", settings=settings), user_id=None, mapping=LOG_MAPPING)
    for line in res.output.read_text().splitlines():
        d = json.loads(line)
        sug = mapper(d).suggestions["label"]
        assert sug.value == d["label"] and sug.score == pytest.approx(d["suggestion_score"]) and sug.agent == "fmal-probe"


# ------------------------------------------------------------------ several annotators


def _crowd_file(tmp_path: Path, ids: list[str], gold: dict[str, str], *, bad_on: int = 0) -> Path:
    """Three annotators: a and b give the gold label, c a wrong one on the first ``bad_on`` ids."""
    other = {"ham": "eggs", "eggs": "spam", "spam": "ham"}
    rows = []
    for n, i in enumerate(ids):
        rows.append({"id": i, "label": gold[i], "annotator": "a"})
        rows.append({"id": i, "label": gold[i] if n % 4 else other[gold[i]], "annotator": "b"})
        rows.append({"id": i, "label": other[gold[i]] if n < bad_on else gold[i], "annotator": "c"})
    f = tmp_path / "crowd.csv"
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["id", "label", "annotator"])
        w.writeheader()
        w.writerows(rows)
    return f


def test_majority_vote_keeps_every_answer_and_reports_ties(pool, tmp_path):
    index_dir, gold, _ = pool
    ids = [f"r{i}" for i in range(12)]
    f = _crowd_file(tmp_path, ids, gold, bad_on=6)
    with pytest.raises(LabelsError, match="different answers"):
        api.import_labels(f, "p", index_dir=index_dir)  # error is still the default
    r = api.import_labels(f, "p", index_dir=index_dir, on_conflict="majority")
    labels = Session(index_dir / "p").labels
    # b is wrong on ids 0, 4, 8 and c on 0..5: on ids 0 and 4 the two wrong answers agree and win
    assert {i for i in ids if labels[i] != gold[i]} == {"r0", "r4"}
    assert r.added == 12 and not r.ties
    ans = Session(index_dir / "p").answers()
    votes = ans[ans["outcome"] == "vote"]
    assert len(votes) == 36 and set(votes["annotator"]) == {"a", "b", "c"}
    tie = tmp_path / "tie.csv"
    tie.write_text("id,label,annotator\nr20,ham,a\nr20,spam,b\nr21,ham,a\n")
    t = api.import_labels(tie, "p", index_dir=index_dir, on_conflict="majority")
    assert [d.id for d in t.ties] == ["r20"] and "r20" not in Session(index_dir / "p").labels and t.added == 1


def test_crowdlab_consensus_rates_the_annotators(pool, tmp_path, cli):
    index_dir, gold, _ = pool
    ids = [f"r{i}" for i in range(30)]
    f = _crowd_file(tmp_path, ids, gold, bad_on=15)
    r = api.import_labels(f, "p", index_dir=index_dir, on_conflict="crowdlab")
    q = r.annotator_quality
    assert set(q) == {"a", "b", "c"} and q["a"] > q["b"] and q["a"] > q["c"]
    labels = Session(index_dir / "p").labels
    assert sum(labels[i] == gold[i] for i in ids) >= 29  # the clusters back a's answers
    out = cli("import-labels", f, "--pool", "p", "--index-dir", index_dir, "--on-conflict", "crowdlab")
    assert out.exit_code == 0 and "annotator quality (CROWDLAB): a " in out.stdout


# ------------------------------------------------------------------ audit says how sure it is


def test_audit_with_few_labels_says_the_flags_are_unreliable(pool, cli):
    index_dir, gold, _ = pool
    ids = [f"r{i}" for i in range(40)]  # the case: a 40-label pool
    Session(index_dir / "p").add_labels({i: gold[i] for i in ids}, source="t")
    res = api.audit("p", index_dir=index_dir)
    assert not res.audit.reliable and "labels per class on average" in res.audit.caution
    assert res.info["reliable"] is False and res.info["smallest_class"] == min(res.audit.class_counts.values())
    out = cli("audit", "--pool", "p", "--index-dir", index_dir)
    assert out.exit_code == 0 and out.stderr.startswith("caution: flags unreliable")
    assert "to re-check among 40 audited (not reliable at this size)" in out.stdout


def test_audit_with_enough_labels_per_class_is_not_hedged():
    from fmal.audit import audit_labels

    X, y = clustered(n=300, d=8, k=3, seed=1)
    res = audit_labels(X, [f"r{i}" for i in range(300)], [CLASSES[c] for c in y])
    assert res.reliable and res.caution is None and sum(res.class_counts.values()) == 300
