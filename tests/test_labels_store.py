"""The pool's labels.db: migration of legacy pools, strict legacy reading, views rendered from the
database, undo deleting only the pool's own files, and the write lock's bounded wait."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import clustered, vector_pool
from fmal import api
from fmal.exceptions import CorruptPoolError, InvalidInputError, PoolBusyError
from fmal.session import DB, Session, has_history

N = 120


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """A 120-row pool in 3 clusters (ids r0..r119) with no labels: the index dir."""
    X, _ = clustered(n=N, d=16, k=3, seed=1)
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "p", X)
    return index_dir


def _labels_file(path: Path, labels: dict[str, str]) -> Path:
    pd.DataFrame({"id": list(labels), "label": list(labels.values())}).to_csv(path, index=False)
    return path


def _legacy(d: Path, outside: Path) -> dict:
    """Write the session.json / labels.csv an older fmal left: a seed round (picks in rounds/), a
    query round whose picks went to the user's own file (and its probe), a relabel."""
    (d / "rounds").mkdir()
    (d / "probes").mkdir()
    seed_out = d / "rounds" / "round-001-seed-kmeans.csv"
    pd.DataFrame({"id": ["r1", "r2", "r3"], "text": ["text 1", "text 2", "text 3"], "score": [0.5, 0.25, None]}).to_csv(seed_out, index=False)
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.write_text("id,text\nr4,text 4\n")
    (d / "probes" / "round-002.json").write_text("{}")
    session = {
        "rounds": [
            {"round": 1, "created": "2024-01-01T00:00:00+00:00", "kind": "seed", "strategy": "kmeans", "key": "k1",
             "budget": 3, "random_state": 0, "n_labeled": 0, "params": {}, "ids": ["r1", "r2", "r3"],
             "columns": {"score": [0.5, 0.25, None]}, "output": str(seed_out), "info": {"clusters": 3}},
            {"round": 2, "created": "2024-01-02T00:00:00+00:00", "kind": "query", "strategy": "margin", "key": "k2",
             "budget": 2, "random_state": 0, "n_labeled": 3, "params": {}, "ids": ["r4", "r5"],
             "columns": {"predicted_label": ["a", "b"], "predicted_proba": [0.6, 0.7]}, "output": str(outside),
             "info": {"n_labels": 3, "stop_advice": "keep labeling"}},
        ],
        "relabels": [{"id": "r1", "old": "b", "new": "a", "source": "fix.csv", "time": "2024-01-03T00:00:00+00:00"}],
    }
    (d / "session.json").write_text(json.dumps(session))
    (d / "labels.csv").write_text("id,label,source\nr1,a,fix.csv\nr2,b,first.csv\nr3,c,first.csv\n")
    return session


def test_legacy_pool_is_read_as_is_then_migrated_whole_on_the_first_write(pool, tmp_path, caplog):
    d = pool / "p"
    outside = tmp_path / "work" / "rounds" / "mine.csv"  # a user's file in a folder named rounds
    legacy = _legacy(d, outside)
    # readers read the legacy files and write nothing
    s = Session(d)
    assert s.labels == {"r1": "a", "r2": "b", "r3": "c"} and [r["round"] for r in s.rounds] == [1, 2]
    st = api.status("p", index_dir=pool)
    assert st.n_labels == 3 and st.rounds["round"].tolist() == [1, 2] and st.advice == "keep labeling"
    assert not (d / DB).exists() and has_history(d)

    with caplog.at_level(logging.WARNING, logger="fmal.session"):
        r = api.import_labels(_labels_file(tmp_path / "more.csv", {"r4": "a", "r2": "c"}), "p", on_conflict="replace", index_dir=pool)
    assert (r.added, r.changed) == (1, 1)
    msg = [m for m in caplog.messages if "migrated" in m]
    assert len(msg) == 1 and "migrated 3 label(s), 1 relabel(s) and 2 round(s)" in msg[0]
    assert not (d / "session.json").exists() and (d / "session.json.migrated").exists()  # kept as a backup
    assert (d / "labels.csv.migrated").read_text().startswith("id,label,source\n")

    s = Session(d)
    assert s.labels == {"r1": "a", "r2": "c", "r3": "c", "r4": "a"}
    assert [(x["id"], x["old"], x["new"]) for x in s.relabels] == [("r1", "b", "a"), ("r2", "b", "c")]
    for got, old in zip(s.rounds, legacy["rounds"]):
        for k in ("round", "created", "kind", "strategy", "key", "budget", "n_labeled", "params", "ids", "info"):
            assert got[k] == old[k], k
        assert {c: [None if isinstance(v, float) and np.isnan(v) else v for v in vals] for c, vals in got["columns"].items()} == old["columns"]
    assert s.rounds[0]["texts"] == ["text 1", "text 2", "text 3"]  # filled from the pool's rows
    with sqlite3.connect(d / DB) as db:
        assert dict(db.execute("SELECT id, source FROM labels")) == {"r1": "fix.csv", "r2": "csv:more.csv", "r3": "first.csv", "r4": "csv:more.csv"}
        answers = db.execute("SELECT id, value, round, outcome FROM answers ORDER BY seq").fetchall()
        assert answers[-2:] == [("r4", "a", 2, "added"), ("r2", "c", 1, "replaced")]  # the round each answered
        files = dict(db.execute("SELECT path, owned FROM files"))
    assert files["rounds/round-001-seed-kmeans.csv"] == 1 and files["probes/round-002.json"] == 1
    assert files[str(outside.resolve())] == 0  # the user's file: recorded, never the pool's
    assert (d / "labels.csv").read_text() == "id,label\nr1,a\nr2,c\nr3,c\nr4,a\n"  # the view

    # undo of the migrated query round: the pool's probe and view go, the user's file (in a 'rounds' folder) stays
    u = api.undo("p", index_dir=pool)
    assert u.round == 2 and sorted(u.removed_files) == [(d / "probes" / "round-002.json").resolve(),
                                                        (d / "rounds" / "round-002-query-margin.csv").resolve()]
    assert outside.exists() and not (d / "probes" / "round-002.json").exists()
    assert Session(d).labels["r4"] == "a"  # labels are kept


@pytest.mark.parametrize("name, content, needle", [
    ("session.json", "[1, 2]", "a JSON list, expected an object"),
    ("session.json", '{"rounds": [{"round": 1, "kind": "seed", "strategy": "x"}]}', "round 1 has no list of ids"),
    ("session.json", '{"rounds": [', "not valid JSON"),
    ("session.json", '{"relabels": [{"id": "a"}]}', "relabel 1 needs text"),
    ("labels.csv", "id,label,annotator\nr1,a,bob\n", "columns ['id', 'label', 'annotator']"),
    ("labels.csv", "id,label\nr1,a\nr2", "the last row is cut short"),
    ("labels.csv", "id,label\nr1,a\nr2\n", "line 3 has 1 field(s)"),
    ("labels.csv", "id,label\nr1,a\nr1,b\n", "id 'r1' appears twice"),
])
def test_damaged_legacy_files_are_one_line_errors(pool, tmp_path, cli, cli_error, name, content, needle):
    d = pool / "p"
    (d / name).write_text(content)
    with pytest.raises(CorruptPoolError, match=name):
        Session(d)
    lab = _labels_file(tmp_path / "l.csv", {"r1": "a"})
    cli_error(cli("import-labels", lab, "--pool", "p", "--index-dir", pool), name, needle)
    cli_error(cli("status", "--pool", "p", "--index-dir", pool), name, needle)
    assert not (d / DB).exists() and (d / name).read_text() == content  # nothing migrated, nothing rewritten


def test_views_are_rendered_from_the_database_and_repaired(pool, tmp_path):
    d = pool / "p"
    sel = api.seed("p", 6, "kmeans", index_dir=pool)
    view = sel.output
    assert view.parent == d / "rounds" and pd.read_csv(view, dtype=str)["id"].tolist() == sel.ids
    api.import_labels(_labels_file(tmp_path / "l.csv", {i: "a" for i in sel.ids[:3]}), "p", index_dir=pool)
    # a user edits or deletes the views: they are never read back, and are rendered again
    (d / "labels.csv").write_text("id,label\nr999,zzz\n")
    view.unlink()
    assert Session(d).labels == {i: "a" for i in sel.ids[:3]}
    with sqlite3.connect(d / DB) as db:  # as a writer killed after its commit leaves it
        db.execute("UPDATE meta SET value = '-1' WHERE key = 'views_generation'")
    api.export("p", index_dir=pool, output=tmp_path / "x.csv")  # export renders stale views
    assert pd.read_csv(view, dtype=str)["id"].tolist() == sel.ids
    assert pd.read_csv(d / "labels.csv", dtype=str).set_index("id")["label"].to_dict() == {i: "a" for i in sel.ids[:3]}
    # a user's --output is a copy; the pool's view is written too
    q = api.seed("p", 4, "random", index_dir=pool, output=tmp_path / "mine.csv")
    assert q.output == tmp_path / "mine.csv" and (d / "rounds" / "round-002-seed-random.csv").exists()
    assert pd.read_csv(q.output, dtype=str)["id"].tolist() == q.ids


def test_a_picks_file_being_filled_in_is_not_rewritten(pool):
    sel = api.seed("p", 5, "kmeans", index_dir=pool)
    filled = pd.read_csv(sel.output, dtype=str).assign(label="a")
    filled.to_csv(sel.output, index=False)
    again = api.seed("p", 5, "kmeans", index_dir=pool)  # a rerun reuses the round
    assert again.reused and pd.read_csv(sel.output, dtype=str)["label"].tolist() == ["a"] * 5


def test_undo_deletes_only_recorded_pool_files_inside_the_pool(pool, tmp_path):
    d = pool / "p"
    mine = tmp_path / "work" / "rounds" / "x.csv"
    sel = api.seed("p", 5, "kmeans", index_dir=pool, output=mine)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    with sqlite3.connect(d / DB) as db:  # a crafted database: an 'owned' file outside the pool
        db.execute("INSERT INTO files VALUES (?, 1, 'picks', 1, 'live')", (f"../../{outside.name}",))
        db.execute("INSERT INTO files VALUES (?, 1, 'picks', 1, 'live')", (str(outside),))
    u = api.undo("p", index_dir=pool)
    assert u.round == 1 and u.removed_files == [(d / "rounds" / "round-001-seed-kmeans.csv").resolve()]
    assert mine.exists() and outside.read_text() == "keep me"
    assert Session(d).rounds == [] and not sel.ids[0] in Session(d).queued()
    with pytest.raises(InvalidInputError, match="no rounds to undo"):
        api.undo("p", index_dir=pool)


def test_a_failed_first_write_leaves_no_database(pool, tmp_path):
    d = pool / "p"
    bad = _labels_file(tmp_path / "l.csv", {"r1": "a", "nope": "b"})
    with pytest.raises(Exception):
        api.query("p", bad, 3, index_dir=pool)
    assert not (d / DB).exists() and not has_history(d)


def test_writers_wait_for_the_lock_then_give_up_with_one_line(pool, tmp_path, monkeypatch, caplog, cli, cli_error):
    d = pool / "p"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fmal._lock import pool_lock\n"
         f"with pool_lock({str(d)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lab = _labels_file(tmp_path / "l.csv", {"r1": "a"})
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("FMAL_LOCK_TIMEOUT", "0.3")
        with caplog.at_level(logging.WARNING, logger="fmal._lock"):
            with pytest.raises(PoolBusyError, match="another fmal process kept this pool busy"):
                api.import_labels(lab, "p", index_dir=pool)
        assert any("waiting up to" in m for m in caplog.messages)
        cli_error(cli("import-labels", lab, "--pool", "p", "--index-dir", pool), "kept this pool busy", "FMAL_LOCK_TIMEOUT")
        monkeypatch.setenv("FMAL_LOCK_TIMEOUT", "soon")
        with pytest.raises(InvalidInputError, match="FMAL_LOCK_TIMEOUT='soon'"):
            api.import_labels(lab, "p", index_dir=pool)
    finally:
        holder.communicate("")
    monkeypatch.delenv("FMAL_LOCK_TIMEOUT")
    assert api.import_labels(lab, "p", index_dir=pool).added == 1  # free again
