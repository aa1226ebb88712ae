"""fmal query / fmal status / fmal query --undo through the API and the CLI, on a pool whose
embeddings are chosen by the test (clustered unit vectors: a known answer)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import clustered, vector_pool

import fmal
from fmal import api
from fmal.exceptions import LabelsError


@pytest.fixture
def pool(tmp_path):
    X, y = clustered(n=300, d=16, k=3, spread=0.3, seed=0)
    d = tmp_path / "indexes"
    vector_pool(d, "vp", X)
    gold = {f"r{i}": f"c{v}" for i, v in enumerate(y)}
    return d, gold


def _labels(tmp_path, gold, ids, name="labels.csv"):
    f = tmp_path / name
    pd.DataFrame({"id": ids, "label": [gold[i] for i in ids]}).to_csv(f, index=False)
    return f


def test_rounds_store_probes_give_a_stop_signal_and_show_in_status(tmp_path, pool):
    d, gold = pool
    first = [f"r{i}" for i in range(15)]
    q1 = api.query("vp", _labels(tmp_path, gold, first), 10, "auto", index_dir=d)
    probe_file = d / "vp" / "probes" / "round-001.json"
    assert probe_file.exists() and json.loads(probe_file.read_text())["type"] == "fmal.LinearProbe"
    assert "stop_kappa" not in q1.info and "keep labeling" in q1.info["stop_advice"]
    q2 = api.query("vp", _labels(tmp_path, gold, first + q1.ids, "l2.csv"), 10, "cluster-margin", index_dir=d)
    assert q2.info["stop_compared_with_round"] == 1 and 0.0 <= q2.info["stop_agreement"] <= 1.0
    assert isinstance(q2.info["stop_advice"], str) and (d / "vp" / "probes" / "round-002.json").exists()
    st = fmal.status("vp", index_dir=d)
    assert list(st.rounds["round"]) == [1, 2] and st.rounds["labels_then"].tolist() == [15, 25]
    assert "c0:" in st.rounds["per_class"].iloc[1] and not np.isnan(st.rounds["kappa_prev"].iloc[1])

    u = api.undo("vp", index_dir=d)
    assert u.round == 2 and not (d / "vp" / "probes" / "round-002.json").exists()
    assert list(fmal.status("vp", index_dir=d).rounds["round"]) == [1]
    rerun = api.query("vp", None, 10, "cluster-margin", index_dir=d)  # same labels: same picks again
    assert rerun.round == 2 and rerun.ids == q2.ids


def test_knn_candidates_through_the_api(tmp_path, pool):
    d, gold = pool
    q = api.query("vp", _labels(tmp_path, gold, [f"r{i}" for i in range(20)]), 5, "margin", index_dir=d, candidates="knn:5")
    assert 5 <= q.info["candidates_scored"] <= 100 and len(set(q.ids)) == 5


def test_label_errors(tmp_path, pool):
    d, _gold = pool
    one = tmp_path / "one.csv"
    pd.DataFrame({"id": ["r0", "r1"], "label": ["a", "a"]}).to_csv(one, index=False)
    with pytest.raises(LabelsError, match="single class"):
        api.query("vp", one, 5, index_dir=d)
    unknown = tmp_path / "unknown.csv"
    pd.DataFrame({"id": ["nope", "r1"], "label": ["a", "b"]}).to_csv(unknown, index=False)
    with pytest.raises(LabelsError, match="'nope'"):
        api.query("vp", unknown, 5, index_dir=d)


def test_a_class_with_one_example_works(tmp_path, pool):
    d, gold = pool
    ids = [f"r{i}" for i in range(25)]
    f = tmp_path / "l.csv"
    pd.DataFrame({"id": ids, "label": [gold[i] for i in ids[:-1]] + ["rare"]}).to_csv(f, index=False)
    q = api.query("vp", f, 5, "badge", index_dir=d)
    assert q.info["class_counts"]["rare"] == 1 and len(q.ids) == 5


def test_cli_query_status_undo(tmp_path, pool, cli, cli_error):
    d, gold = pool
    f = _labels(tmp_path, gold, [f"r{i}" for i in range(20)])
    r = cli("query", "--pool", "vp", "--labels", f, "--budget", 5, "--strategy", "badge", "--index-dir", d)
    assert r.exit_code == 0, r.output
    assert "recommendation:" in r.stdout and "round 1" in r.stdout
    r = cli("query", "--pool", "vp", "--budget", 5, "--strategy", "margin", "--index-dir", d)
    assert r.exit_code == 0 and "no new labels since round 1" in r.stdout
    r = cli("status", "--pool", "vp", "--index-dir", d)
    assert r.exit_code == 0 and "per_class" in r.stdout and "kappa_prev" in r.stdout
    assert "last query round: no new labels since round 1" in r.stdout
    r = cli("query", "--pool", "vp", "--undo", "--index-dir", d)
    assert r.exit_code == 0 and "undid round 2" in r.stdout
    cli_error(cli("query", "--pool", "vp", "--index-dir", d), "--budget")
    cli_error(cli("query", "--pool", "vp", "--budget", 5, "--candidates", "knn:0", "--index-dir", d), "candidates")
