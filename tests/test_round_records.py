"""Rounds as typed records (fmal.session.Round) print and store exactly what the dict records did:
``fmal status --json`` / ``export --json`` / ``query --undo --json`` and the rows of labels.db for a
pool with three rounds, against a golden file captured before the records were typed."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pandas as pd
from conftest import clustered, vector_pool

from fmal.session import Label, Round, Session

GOLDEN = Path(__file__).parent / "golden" / "round_records.json"


def _norm(text: str, root: Path) -> str:
    """Stable across runs: the temporary folder and the round times replaced."""
    text = text.replace(str(root), "<ROOT>")
    return re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<TIME>", text)


def _db_rows(db: Path) -> dict[str, list[list[object]]]:
    with sqlite3.connect(db) as conn:
        return {t: [list(r) for r in conn.execute(sql)] for t, sql in [
            ("rounds", "SELECT round, kind, strategy, key, created, output, record, info, columns FROM rounds ORDER BY round"),
            ("picks", "SELECT round, pos, id, text, vals FROM picks ORDER BY round, pos"),
            ("files", "SELECT path, round, kind, owned, state FROM files ORDER BY path")]}


def _run(cli, tmp_path: Path) -> dict[str, object]:
    X, y = clustered(n=120, d=8, k=3, spread=0.3, seed=4)
    ix = tmp_path / "indexes"
    vector_pool(ix, "g", X)
    gold = {f"r{i}": f"c{v}" for i, v in enumerate(y)}
    common = ["--pool", "g", "--index-dir", ix]
    out: dict[str, object] = {}

    def doc(name: str, *args: object) -> None:
        res = cli(*args, *common, "--json")
        assert res.exit_code == 0, res.output
        out[name] = _norm(res.stdout, tmp_path)

    doc("seed", "seed", "--budget", 9)
    seed_ids = json.loads(out["seed"])["result"]["ids"]
    lab = tmp_path / "l1.csv"
    pd.DataFrame({"id": seed_ids, "label": [gold[i] for i in seed_ids]}).to_csv(lab, index=False)
    doc("query1", "query", "--labels", lab, "--budget", 6)
    q_ids = json.loads(out["query1"])["result"]["ids"]
    lab2 = tmp_path / "l2.csv"
    pd.DataFrame({"id": q_ids, "label": [gold[i] for i in q_ids]}).to_csv(lab2, index=False)
    doc("query2", "query", "--labels", lab2, "--budget", 6)
    doc("status", "status")
    doc("export", "export", "--format", "csv")
    out["db"] = json.loads(_norm(json.dumps(_db_rows(ix / "g" / "labels.db")), tmp_path))
    out["views"] = {p.name: p.read_text() for p in sorted((ix / "g" / "rounds").iterdir())}
    out["views"]["labels.csv"] = (ix / "g" / "labels.csv").read_text()
    doc("undo", "query", "--undo")
    doc("status_after_undo", "status")
    return out


def test_json_and_stored_rounds_unchanged(cli, tmp_path):
    got = _run(cli, tmp_path)
    if os.environ.get("FMAL_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(GOLDEN.read_text())


def test_round_record_round_trips_and_reads_as_the_old_dicts(tmp_path):
    s = Session(tmp_path)
    rec = s.add_round({"kind": "seed", "strategy": "kmeans", "key": "k1", "budget": 2, "n_labeled": 0,
                       "diagnostics": {"chosen": "margin"}, "ids": ["a", "b"], "columns": {"score": [0.5, 0.25]}})
    again = Session(tmp_path).rounds[0]
    assert isinstance(again, Round) and again == rec and again.extra == {"budget": 2, "diagnostics": {"chosen": "margin"}, "n_labeled": 0}
    assert Round.from_json(again.to_json()) == again  # a field added by a later fmal round-trips through extra
    assert (again.round, again.n_picks, again.n_labeled, again.pick_texts()) == (1, 2, 0, [None, None])
    assert again["round"] == 1 and again["budget"] == 2 and again.get("nope", 7) == 7 and "diagnostics" in again
    assert dict(again.items()) == again.to_json() and list(again) == list(again.to_json())
    assert s.round_view(again).name == "round-001-seed-kmeans.csv"
    assert s.undo_last_round() == rec and Session(tmp_path).rounds == []


def test_label_records(tmp_path):
    s = Session(tmp_path)
    s.add_labels({"a": "x"}, source="f.csv")
    s.add_labels({"a": "y", "b": "x"}, source="g.csv")
    recs = Session(tmp_path).label_records()
    assert [(r.id, r.label, r.source) for r in recs] == [("a", "y", "g.csv"), ("b", "x", "g.csv")]
    assert recs[0].answer == 2 and Label.from_row(("a", "y", "g.csv", 2)) == recs[0]
    assert recs[0].to_json() == {"id": "a", "label": "y", "source": "g.csv", "answer": 2}
