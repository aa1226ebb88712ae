"""fmal.session: rounds and labels kept in the pool's labels.db; no label is ever lost."""

from __future__ import annotations

import sqlite3

import pytest

from fmal.exceptions import CorruptPoolError
from fmal.session import Session, params_key


def test_labels_merge_write_and_reload(tmp_path):
    s = Session(tmp_path)
    assert s.labels == {} and s.rounds == [] and s.queued() == set()
    m = s.add_labels({"007": "NA", "b": "x"}, source="f1.csv")  # ids and labels stay strings: no NaN, no int
    assert (m.added, m.changed, m.unchanged) == (2, 0, 0)
    again = Session(tmp_path)
    assert again.labels == {"007": "NA", "b": "x"}
    before = (tmp_path / "labels.csv").read_bytes()
    m = again.add_labels({"b": "x"}, source="f1.csv")
    assert (m.added, m.changed, m.unchanged) == (0, 0, 1)
    assert before == (tmp_path / "labels.csv").read_bytes() == b"id,label\n007,NA\nb,x\n"  # the view, unchanged
    assert Session(tmp_path).labels == {"007": "NA", "b": "x"} and not (tmp_path / "session.json").exists()
    assert Session(tmp_path).answers()["outcome"].tolist() == ["added", "added", "unchanged"]  # every answer given


def test_a_changed_label_keeps_the_old_answer(tmp_path):
    s = Session(tmp_path)
    s.add_labels({"a": "x", "b": "y"}, source="f1.csv")
    m = s.add_labels({"a": "z", "c": "w"}, source="f2.csv")
    assert (m.added, m.changed) == (1, 1)
    s = Session(tmp_path)
    assert s.labels == {"a": "z", "b": "y", "c": "w"}
    assert [(r["id"], r["old"], r["new"], r["source"]) for r in s.relabels] == [("a", "x", "z", "f2.csv")]
    with sqlite3.connect(tmp_path / "labels.db") as db:  # the truth is the database
        assert db.execute("SELECT id, old, new FROM relabels").fetchall() == [("a", "x", "z")]
        assert db.execute("SELECT outcome FROM answers WHERE id = 'a' ORDER BY seq").fetchall() == [("added",), ("replaced",)]


def test_rounds_queue_and_rerun_detection(tmp_path):
    s = Session(tmp_path)
    r1 = s.add_round({"kind": "seed", "strategy": "random", "key": "k1", "ids": ["a", "b", "c"]})
    assert r1["round"] == 1 and "created" in r1
    assert s.queued() == {"a", "b", "c"}
    s.add_labels({"a": "x"}, source="l.csv")
    assert s.queued() == {"b", "c"}
    assert s.last_round_like("k1")["round"] == 1 and s.last_round_like("k2") is None
    s.add_round({"kind": "query", "strategy": "margin", "key": "k2", "ids": ["d"]})
    assert s.last_round_like("k1") is None  # only the most recent round is a rerun
    assert Session(tmp_path).queued() == {"b", "c", "d"}
    assert s.undo_last_round()["round"] == 2
    assert [r["round"] for r in Session(tmp_path).rounds] == [1]


def test_params_key_is_stable():
    assert params_key({"a": 1, "b": [1, 2]}) == params_key({"b": [1, 2], "a": 1})
    assert params_key({"a": 1}) != params_key({"a": 2})
    assert len(params_key({})) == 16


def test_corrupt_session_files(tmp_path):
    (tmp_path / "session.json").write_text('{"rounds": [')
    with pytest.raises(CorruptPoolError, match=r"session.json: not valid JSON"):
        Session(tmp_path)
    (tmp_path / "session.json").unlink()
    (tmp_path / "labels.csv").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(CorruptPoolError, match=r"labels.csv: unreadable"):
        Session(tmp_path)


def test_a_transaction_commits_whole_or_not_at_all(tmp_path):
    s = Session(tmp_path)
    with pytest.raises(RuntimeError):
        with s.transaction():
            m = s.add_labels({"a": "x"}, source="l.csv")
            assert m.added == 1 and s.labels == {"a": "x"}
            assert Session(tmp_path).labels == {}  # not committed yet: other readers see the old state
            s.add_round({"kind": "query", "strategy": "margin", "key": "k", "ids": ["b"]})
            raise RuntimeError("the command failed after merging")
    assert Session(tmp_path).labels == {} and Session(tmp_path).rounds == [] and s.labels == {}
    with s.transaction():
        s.add_labels({"a": "x"}, source="l.csv")
        s.add_round({"kind": "query", "strategy": "margin", "key": "k", "ids": ["b"]})
    again = Session(tmp_path)
    assert again.labels == {"a": "x"} and again.queued() == {"b"}
    s.add_labels({"a": "y"}, source="l2.csv")
    again = Session(tmp_path)
    assert again.labels == {"a": "y"} and [(r["old"], r["new"]) for r in again.relabels] == [("x", "y")]
