"""fmal report: the numbers on a constructed case."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import clustered, vector_pool
from typer.testing import CliRunner

from fmal import api
from fmal.cli import app
from fmal.report import class_balance, rounds_balance
from fmal.session import Round, Session

CLASSES = np.array(["a", "b", "c"])


@pytest.fixture
def skewed(tmp_path: Path):
    """300 rows in 3 equal, well separated clusters (100 each; class = cluster); labels: 40 a, 40 b,
    4 c. Round 1 picked 20 a + 2 c, round 2 picked 20 a + 40 b + 2 c (all labeled)."""
    rng = np.random.default_rng(0)
    X, _ = clustered(n=300, d=16, k=3, spread=0.05, seed=0)
    y = np.repeat(np.arange(3), 100)
    centers = rng.normal(size=(3, 16))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    X = centers[y] + 0.05 * rng.normal(size=(300, 16))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    index_dir = tmp_path / "indexes"
    vector_pool(index_dir, "p", X)
    ids = np.array([f"r{i}" for i in range(300)])
    a, b, c = ids[:100], ids[100:200], ids[200:300]
    s = Session(index_dir / "p")
    r1 = list(a[:20]) + list(c[:2])
    r2 = list(a[20:40]) + list(b[:40]) + list(c[2:4])
    s.add_round({"kind": "seed", "strategy": "kmeans", "key": "k1", "ids": r1, "columns": {}})
    s.add_round({"kind": "query", "strategy": "margin", "key": "k2", "ids": r2, "columns": {}})
    gold = dict(zip(ids, CLASSES[y]))
    s.add_labels({i: str(gold[i]) for i in r1 + r2}, source="test")
    return index_dir


def test_report_numbers(skewed, tmp_path):
    rep = api.report("p", index_dir=skewed, output=tmp_path / "r.md", n_clusters=6)
    b = rep.balance.set_index("class")
    assert rep.n_pool == 300 and rep.n_labeled == 84
    assert b["labeled"].to_dict() == {"a": 40, "b": 40, "c": 4}
    assert b["predicted"].to_dict() == {"a": 100, "b": 100, "c": 100}  # the clusters are separable
    assert b.loc["c", "labeled_share"] == pytest.approx(4 / 84, abs=1e-4)
    assert b.loc["c", "predicted_share"] == pytest.approx(1 / 3, abs=1e-4)
    assert b["warning"].to_dict() == {"a": False, "b": False, "c": True}
    assert len(rep.warnings) == 1 and "class 'c' is 4.8% of the labels but 33.3% of the pool's predictions" in rep.warnings[0]
    assert rep.n_clusters == 6 and set(rep.clusters.columns) >= {"cluster", "size", "top_predicted", "example"}
    assert rep.clusters["size"].sum() <= 300 - 84 and all(e.startswith("text ") for e in rep.clusters["example"])
    r = rep.rounds.set_index("round")
    assert r.loc[1, ["picks", "labeled", "a", "b", "c"]].tolist() == [22, 22, 20, 0, 2]
    assert r.loc[2, ["picks", "labeled", "a", "b", "c"]].tolist() == [62, 62, 20, 40, 2]
    assert r.loc[1, "cum_share_c"] == pytest.approx(2 / 22, abs=1e-4)
    assert r.loc[2, "cum_share_b"] == pytest.approx(40 / 84, abs=1e-4)
    md = (tmp_path / "r.md").read_text()
    assert "WARNING: class 'c'" in md and "| c | 4 | 0.0476 | 100 | 0.3333 | 0.143 | True |" in md and "![class balance](r.png)" in md
    assert rep.n_outside_rounds == 0 and "not counted here" not in md
    png = (tmp_path / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_unlabeled_cluster_is_found(skewed, tmp_path):
    # drop the labels of class c: with 3 clusters (one per class), cluster c is the one with no label
    s = Session(skewed / "p")
    labels = {i: l for i, l in s.labels.items() if l != "c"}
    for f in (skewed / "p").glob("labels.*"):  # start the pool's history over: same rounds, fewer labels
        f.unlink()
    fresh = Session(skewed / "p")
    for r in s.rounds:
        fresh.add_round({"kind": r["kind"], "strategy": r["strategy"], "key": r["key"], "ids": r["ids"], "columns": {}})
    fresh.add_labels(labels, source="test")
    rep = api.report("p", index_dir=skewed, output=tmp_path / "r.md", n_clusters=3)
    assert len(rep.clusters) == 1 and rep.n_outside_rounds == 0
    row = rep.clusters.iloc[0]
    assert row["size"] == 100 and row["share_of_pool"] == pytest.approx(1 / 3, abs=1e-3)


def test_labels_outside_rounds_are_counted(skewed, tmp_path):
    Session(skewed / "p").add_labels({"r250": "c", "r251": "c"}, source="direct")
    rep = api.report("p", index_dir=skewed, output=tmp_path / "r.md", n_clusters=3)
    assert rep.n_outside_rounds == 2 and rep.balance.set_index("class").loc["c", "labeled"] == 6
    assert "2 label(s) are of rows no round picked" in (tmp_path / "r.md").read_text()


def test_class_balance_and_rounds_units():
    frame, warns = class_balance(["x"] * 9 + ["y"], np.array(["x"] * 50 + ["y"] * 50), rare_ratio=0.5)
    f = frame.set_index("class")
    assert f.loc["y", "ratio"] == pytest.approx(0.2) and f.loc["y", "warning"] and not f.loc["x", "warning"]
    assert len(warns) == 1
    _, none = class_balance(["x"] * 5 + ["y"] * 5, np.array(["x"] * 50 + ["y"] * 50))
    assert none == []
    rb = rounds_balance([Round(1, "seed", "s", ["1", "2", "3"])], {"1": "x", "2": "y"}, ["x", "y"])
    assert rb.iloc[0][["picks", "labeled", "x", "y", "cum_share_x"]].tolist() == [3, 2, 1, 1, 0.5]


def test_cli_report(skewed, tmp_path):
    res = CliRunner().invoke(app, ["report", "--pool", "p", "--index-dir", str(skewed), "-o", str(tmp_path / "x.md"), "--clusters", "4"])
    assert res.exit_code == 0, res.output
    assert "84 of 300 rows labeled" in res.output and "WARNING: class 'c'" in res.output and (tmp_path / "x.png").exists()


def test_report_without_matplotlib_writes_the_markdown(skewed, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    rep = api.report("p", index_dir=skewed, output=tmp_path / "r.md", n_clusters=4)
    assert rep.paths == {"markdown": tmp_path / "r.md"} and not (tmp_path / "r.png").exists()
    assert "![class balance]" not in (tmp_path / "r.md").read_text()
    assert "pip install 'fmal[plots]'" in caplog.text
    res = CliRunner().invoke(app, ["report", "--pool", "p", "--index-dir", str(skewed), "-o", str(tmp_path / "x.md")])
    assert res.exit_code == 0, res.output
    assert f"wrote {tmp_path / 'x.md'}\n" in res.output
