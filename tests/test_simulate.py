"""fmal simulate: known answers on constructed data, determinism, output schema, errors, CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import fmal
from fmal.cli import app
from fmal.exceptions import InvalidInputError, LabelsError, PoolExhaustedError
from fmal.simulate import FILES, aulc, labels_to_reach, mean_ci, parse_strategies, plot_curves, simulate_embeddings, write_outputs

try:
    from conftest import clustered
except ImportError:  # tests collected as a package
    from tests.conftest import clustered


def _split(n: int = 500, k: int = 8, seed: int = 0):
    X, y = clustered(n=n, d=16, k=k, spread=0.05, seed=seed)
    cut = int(0.7 * n)
    return X[:cut], y[:cut], X[cut:], y[cut:]


@pytest.fixture(scope="module")
def clusters_result():
    X, y, Xt, yt = _split()
    return simulate_embeddings(X, y, Xt, yt, strategies="random,typiclust+margin", seeds=4, initial=8, step=8, max_labels=24)


def test_typical_picks_beat_random_on_separated_clusters(clusters_result):
    """8 well separated clusters (= classes), 8 labels: typical rows of 8 k-means clusters cover nearly
    every class, 8 random rows almost never cover all (8!/8^8 < 0.3%), so typiclust must win at the
    smallest budget and on AULC."""
    r = clusters_result
    f = r.to_frame().set_index(["strategy", "n_labels"])
    assert f.loc[("typiclust+margin", 8), "accuracy"] > f.loc[("random", 8), "accuracy"] + 0.1
    seen = r.curves[r.curves.step == 0].groupby("strategy")["classes_seen"].mean()
    assert seen["typiclust+margin"] > seen["random"]
    summ = {s.strategy: s for s in r.summaries}["typiclust+margin"]
    assert summ.diff_vs_baseline > 0 and summ.diff_lo > 0
    assert "beats random" in summ.verdict and "beats random" in r.verdict
    assert r.full_accuracy == 1.0


def test_no_strategy_beats_random_verdict():
    """Labels independent of the embeddings: nothing can beat random, and the verdict says so."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    y = rng.integers(0, 2, size=300)
    r = simulate_embeddings(X[:200], y[:200], X[200:], y[200:], strategies="kmeans+entropy", seeds=3, initial=10,
                            step=10, max_labels=30)
    assert [s.name for s in r.strategies] == ["random", "kmeans+entropy"]  # the baseline is added
    assert r.verdict == "no strategy beats random on this data"
    assert r.advice.startswith("Label a random sample")


def test_same_seeds_same_results_other_seed_differs(clusters_result):
    X, y, Xt, yt = _split()
    again = simulate_embeddings(X, y, Xt, yt, strategies="random,typiclust+margin", seeds=4, initial=8, step=8, max_labels=24)
    pd.testing.assert_frame_equal(again.curves, clusters_result.curves)
    assert again.to_dict()["strategies"] == clusters_result.to_dict()["strategies"]
    other = simulate_embeddings(X, y, Xt, yt, strategies="random", seeds=4, initial=8, step=8, max_labels=24, random_state=7)
    assert not np.array_equal(other.curves["accuracy"].to_numpy(),
                              clusters_result.curves.query("strategy == 'random'")["accuracy"].to_numpy())


def test_output_files_schema(clusters_result, tmp_path):
    files = write_outputs(clusters_result, tmp_path / "out")
    assert set(files) == set(FILES) and all(p.exists() for p in files.values())
    d = json.loads(files["json"].read_text())
    assert {"verdict", "baseline", "seeds", "budgets", "classes", "full_data", "strategies", "info"} <= set(d)
    assert d["budgets"] == [8, 16, 24] and d["seeds"] == [0, 1, 2, 3]
    for s in d["strategies"]:
        assert {"name", "seed_strategy", "query_strategy", "curve", "aulc_accuracy", "aulc_macro_f1",
                "labels_to_reach", "vs_baseline"} <= set(s)
        assert [c["n_labels"] for c in s["curve"]] == d["budgets"]
        for c in s["curve"]:
            assert {"mean", "lo", "hi", "per_seed"} <= set(c["accuracy"]) and len(c["accuracy"]["per_seed"]) == 4
            assert c["accuracy"]["lo"] <= c["accuracy"]["mean"] <= c["accuracy"]["hi"]
        assert set(s["labels_to_reach"]) == {"90%", "95%"}
        assert len(s["vs_baseline"]["accuracy_diff_points_per_step"]) == 3
    curves = pd.read_csv(files["curves"])
    assert list(curves.columns) == ["strategy", "seed", "step", "n_labels", "accuracy", "macro_f1", "classes_seen", "random_share"]
    assert len(curves) == 2 * 4 * 3
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = files["markdown"].read_text()
    assert clusters_result.verdict in md and "| typiclust+margin |" in md
    frame = clusters_result.to_frame()
    assert list(frame.columns[:2]) == ["strategy", "n_labels"] and len(frame) == 2 * 3


def test_statistics_helpers():
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and lo == pytest.approx(2 - 4.302653 / np.sqrt(3), rel=1e-5) and hi == pytest.approx(4 - lo)
    assert np.isnan(mean_ci([1.0])[1])
    assert aulc([10, 20, 30], [0.5, 0.7, 0.7]) == pytest.approx(0.65)
    assert labels_to_reach([10, 20, 30], [0.5, 0.8, 0.9], 0.8) == 20
    assert labels_to_reach([10, 20], [0.5, 0.6], 0.8) is None


def test_strategy_names():
    specs = parse_strategies("random, typiclust+margin,random+random")
    assert [(s.name, s.seed_strategy, s.query_strategy) for s in specs] == [("random", "random", "random"), ("typiclust+margin", "typiclust", "margin")]
    with pytest.raises(InvalidInputError, match=r"'margin' is only a query strategy.*typiclust\+margin"):
        parse_strategies("margin")
    with pytest.raises(InvalidInputError, match=r"'nope' is not a seed strategy.*one of \[.*typiclust"):
        parse_strategies("nope+margin")


def test_errors_on_pre_computed_embeddings():
    X, y, Xt, yt = _split()
    with pytest.raises(LabelsError, match="single class"):
        simulate_embeddings(X, np.zeros(len(y)), Xt, np.zeros(len(yt)), seeds=1, initial=5, step=5, max_labels=10)
    keep = y != 3
    with pytest.raises(LabelsError, match=r"test rows have 1 class\(es\) that no pool \(train\) row has \('3'\)"):
        simulate_embeddings(X[keep], y[keep], Xt, yt, seeds=1, initial=5, step=5, max_labels=10)
    with pytest.raises(PoolExhaustedError, match=r"max must be no larger than the 350 labeled pool \(train\) rows, got 400"):
        simulate_embeddings(X, y, Xt, yt, seeds=1, initial=20, step=20, max_labels=400)
    with pytest.raises(InvalidInputError, match="max must be at least initial"):
        simulate_embeddings(X, y, Xt, yt, seeds=1, initial=20, step=20, max_labels=10)


def test_errors_on_files(tmp_path, small_csv):
    df = pd.read_csv(small_csv, dtype=str)
    one = tmp_path / "one.csv"
    df.assign(label="HUM").to_csv(one, index=False)
    with pytest.raises(LabelsError, match=r"column 'label' has a single class \('HUM'\)"):
        fmal.simulate(one, index_dir=tmp_path / "ix")
    with pytest.raises(InvalidInputError, match=r"no column 'gold'.*--label-col"):
        fmal.simulate(small_csv, label_col="gold", index_dir=tmp_path / "ix")
    with pytest.raises(InvalidInputError, match="either --test-col or --test-size"):
        fmal.simulate(small_csv, test_col="split", test_size=0.3, index_dir=tmp_path / "ix")
    with pytest.raises(InvalidInputError, match=r"give output only \(out is its old name\)"):
        fmal.simulate(small_csv, output=tmp_path / "a", out=tmp_path / "b")


def test_cli_end_to_end_reuses_pool(tiny_pool, tiny_model_dir, tmp_path):
    index_dir, name, src = tiny_pool
    out = tmp_path / "sim"
    args = ["simulate", str(src), "--label-col", "label", "--test-col", "split", "--strategy", "random",
            "-s", "kmeans+margin", "--seeds", "2", "--initial", "10", "--step", "10", "--max", "30", "--pool", name,
            "--index-dir", str(index_dir), "--model", str(tiny_model_dir), "--output", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "deprecated" not in res.stderr
    assert "verdict:" in res.output and str(out / "simulation.json") in res.output
    d = json.loads((out / "simulation.json").read_text())
    assert d["info"]["embedded_now"] == 0  # the pool was reused, not re-embedded
    manifest = json.loads((index_dir / name / "manifest.json").read_text())
    assert d["info"]["backend"] == manifest["model"]["backend"] and d["info"]["backend"]  # which encoder made the numbers
    assert d["info"]["model_fingerprint"] == manifest["model"]["fingerprint"]
    assert d["info"]["n_test"] == int((pd.read_csv(src).split == "test").sum())
    assert (out / "learning_curves.png").exists()
    assert [s["name"] for s in d["strategies"]] == ["random", "kmeans+margin"]  # --strategy repeated
    assert [(s["seed_strategy"], s["query_strategy"]) for s in d["strategies"]] == [("random", "random"), ("kmeans", "margin")]


def test_cli_old_option_names_still_work(tiny_pool, tiny_model_dir, tmp_path):
    """--out and --strategies (the old spellings) run, hidden from --help, with a one-line note each."""
    index_dir, name, src = tiny_pool
    out = tmp_path / "old"
    res = CliRunner().invoke(app, ["simulate", str(src), "--test-col", "split", "--strategies", "random,kmeans+margin",
                                   "--seeds", "1", "--initial", "10", "--step", "10", "--max", "20", "--pool", name,
                                   "--index-dir", str(index_dir), "--model", str(tiny_model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if "deprecated" in line]
    assert notes == ["note: --out is deprecated; use --output", "note: --strategies is deprecated; use --strategy"]
    assert [s["name"] for s in json.loads((out / "simulation.json").read_text())["strategies"]] == ["random", "kmeans+margin"]
    both = CliRunner().invoke(app, ["simulate", str(src), "--output", str(out), "--out", str(out)])
    assert both.exit_code == 2 and "give --output only (--out is its old name)" in both.stderr
    help_text = CliRunner().invoke(app, ["simulate", "--help"]).output
    assert "--output" in help_text and "--strategy" in help_text
    assert "--out " not in help_text and "--strategies" not in help_text


def test_cli_test_split_with_class_absent_from_pool(tiny_pool, tiny_model_dir, tmp_path):
    index_dir, _, src = tiny_pool
    df = pd.read_csv(src, dtype=str)
    df.loc[df.label == "ABBR", "split"] = "test"  # every ABBR row held out
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    res = CliRunner().invoke(app, ["simulate", str(bad), "--test-col", "split", "--index-dir", str(index_dir),
                                   "--model", str(tiny_model_dir), "--seeds", "1", "--initial", "5", "--max", "10"])
    assert res.exit_code == 2
    assert "no pool (train) row has ('ABBR')" in res.output


def test_api_stratified_test_size_split(tiny_pool, tiny_model_dir, tmp_path):
    index_dir, name, src = tiny_pool
    r = fmal.simulate(src, test_size=0.3, pool=name, index_dir=index_dir, model=tiny_model_dir, strategies="random",
                      seeds=2, initial=10, step=10, max_labels=20, output=tmp_path / "o")
    assert r.info["n_test"] == 60 and r.info["n_train"] == 140 and r.info["split"]["stratified"]
    assert r.info["class_counts_test"]["HUM"] == pytest.approx(0.3 * 46, abs=1)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted(FILES.values())


def test_outputs_without_matplotlib(clusters_result, tmp_path, monkeypatch, caplog):
    """The PNG is the only file that needs matplotlib (the plots extra): the rest is written, and the
    warning and plot_curves' error say what to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    files = write_outputs(clusters_result, tmp_path)
    assert sorted(files) == ["curves", "json", "markdown"] and not (tmp_path / FILES["png"]).exists()
    assert "pip install 'fmal[plots]'" in caplog.text
    with pytest.raises(InvalidInputError, match=r"PNG plots need matplotlib: pip install 'fmal\[plots\]'"):
        plot_curves(clusters_result, tmp_path / "x.png")
