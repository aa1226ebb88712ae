"""Pools that grow: ``fmal embed NEW --pool P --append`` keeps every label and round, embeds only
new rows, extends the index (IVF keeps its quantiser), and matches a build of the whole input."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import faiss
import numpy as np
import pandas as pd
import pytest

import fmal
from fmal.exceptions import InvalidInputError, ModelMismatchError, PoolNotFoundError
from fmal.session import Session

from conftest import DEMO_CSV


def _csvs(tmp_path, n_old=100, n_all=200):
    df = pd.read_csv(DEMO_CSV, dtype=str).head(n_all)
    df.head(n_old).to_csv(tmp_path / "old.csv", index=False)
    df.to_csv(tmp_path / "all.csv", index=False)
    df.iloc[n_old:].to_csv(tmp_path / "new.csv", index=False)
    return df


def _sha(f):
    return hashlib.sha256(f.read_bytes()).hexdigest()


@pytest.mark.parametrize("index", ["flat", "ivfflat"])
def test_append_keeps_labels_and_extends_index(cli, tmp_path, tiny_model_dir, index):
    df = _csvs(tmp_path)
    ix = tmp_path / "ix"
    common = ["--pool", "p", "--index-dir", ix, "--model", tiny_model_dir, "--chunk-size", 50, "--index", index]
    assert cli("embed", tmp_path / "old.csv", *common).exit_code == 0
    sel = fmal.seed("p", 10, index_dir=ix)
    gold = df.set_index("id")["label"]
    fmal.query("p", {i: gold[i] for i in sel.ids}, budget=5, index_dir=ix)
    path = ix / "p"
    before = Session(path)
    labels, rounds, db = before.labels, [(r["round"], r["ids"]) for r in before.rounds], _sha(path / "labels.db")
    probes = sorted(p.name for p in (path / "probes").iterdir())
    if index == "ivfflat":
        idx_before = faiss.read_index(str(path / "index.faiss"))
        q_before = faiss.extract_index_ivf(idx_before).quantizer
        centroids = q_before.reconstruct_n(0, q_before.ntotal)

    res = cli("embed", tmp_path / "new.csv", *common, "--append", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["result"]
    assert out["n_appended"] == 100 and out["n_embedded"] == 100 and out["n_rows"] == 200

    after = Session(path)
    assert after.labels == labels and [(r["round"], r["ids"]) for r in after.rounds] == rounds
    assert _sha(path / "labels.db") == db and sorted(p.name for p in (path / "probes").iterdir()) == probes
    p = fmal.open_pool("p", ix)
    m = p.manifest
    assert m.n_rows == 200 and m.index.type == index and m.index.ntotal == 200
    assert m.additions[0]["n_rows_added"] == 100 and m.additions[0]["path"].endswith("new.csv")
    assert m.file_checks["embeddings.npy"]["shape"] == [200, 32]
    new_rows = np.arange(100, 200)
    _, found = p.index.search(np.ascontiguousarray(p.embeddings[new_rows]), 1)
    assert (found[:, 0] == new_rows).mean() >= 0.95  # the new rows are searchable
    if index == "ivfflat":
        idx_after = faiss.read_index(str(path / "index.faiss"))
        q_after = faiss.extract_index_ivf(idx_after).quantizer
        assert np.array_equal(q_after.reconstruct_n(0, q_after.ntotal), centroids)  # the trained quantiser is kept
        assert m.index.recall_at_10 is not None and m.additions[0]["recall_at_10"] == m.index.recall_at_10
    else:  # the same pool as one build of the whole input
        assert cli("embed", tmp_path / "all.csv", "--pool", "whole", "--index-dir", ix, "--model", tiny_model_dir,
                   "--chunk-size", 50, "--index", index).exit_code == 0
        for f in ("embeddings.npy", "rows.parquet", "index.faiss"):
            assert (path / f).read_bytes() == (ix / "whole" / f).read_bytes(), f

    q = fmal.query("p", None, budget=5, index_dir=ix)  # the next round works on the grown pool
    assert len(q.ids) == 5
    again = fmal.embed(tmp_path / "all.csv", "p", index_dir=ix, model=tiny_model_dir, append=True)
    assert again.skipped and again.n_skipped == 200  # nothing new: nothing done


def test_append_refuses_what_would_change_or_mix(tmp_path, tiny_model_dir):
    df = _csvs(tmp_path)
    ix = tmp_path / "ix"
    with pytest.raises(PoolNotFoundError, match="no pool to append to"):
        fmal.embed(tmp_path / "new.csv", "p", index_dir=ix, model=tiny_model_dir, append=True)
    fmal.embed(tmp_path / "old.csv", "p", index_dir=ix, model=tiny_model_dir)
    changed = df.head(3).assign(text=["changed"] * 3)
    with pytest.raises(InvalidInputError, match=r"row 1: id '.*' is in the pool with another text; appending never changes a row"):
        fmal.embed(changed, "p", index_dir=ix, model=tiny_model_dir, append=True)
    with pytest.raises(ModelMismatchError, match="vectors made elsewhere would not share its space"):
        fmal.embed(None, "p", index_dir=ix, embeddings=np.ones((2, 32), np.float32), ids=["x", "y"], append=True)
    with pytest.raises(InvalidInputError, match="^append adds rows to the pool as it is: leave out overwrite and repair"):
        fmal.embed(tmp_path / "new.csv", "p", index_dir=ix, model=tiny_model_dir, append=True, overwrite=True)


def test_append_honours_device(tmp_path, tiny_model_dir):
    """--device reaches the encoder of an append (it was dropped: the new texts ran on auto)."""
    _csvs(tmp_path)
    ix = tmp_path / "ix"
    fmal.embed(tmp_path / "old.csv", "p", index_dir=ix, model=tiny_model_dir)
    before = {f.name: f.read_bytes() for f in (ix / "p").iterdir() if f.is_file()}
    with pytest.raises(InvalidInputError, match="--device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        fmal.embed(tmp_path / "new.csv", "p", index_dir=ix, model=tiny_model_dir, append=True, device="gpu")
    import torch

    if not torch.cuda.is_available():  # a CUDA request that cannot be met is refused, not run on the CPU
        with pytest.raises(InvalidInputError, match="cuda"):
            fmal.embed(tmp_path / "new.csv", "p", index_dir=ix, model=tiny_model_dir, append=True, device="cuda")
    assert {f.name: f.read_bytes() for f in (ix / "p").iterdir() if f.is_file()} == before  # refused: nothing written
    assert not (ix / "p" / ".partial").exists()
    res = fmal.embed(tmp_path / "new.csv", "p", index_dir=ix, model=tiny_model_dir, append=True, device="cpu")
    assert res.n_appended > 0


def test_external_pool_grows_like_one_build(tmp_path):
    X = np.random.default_rng(3).normal(size=(900, 16)).astype(np.float32)
    ids = [f"v{i}" for i in range(900)]
    ix = tmp_path / "ix"
    fmal.embed(None, "g", index_dir=ix, embeddings=X[:600], ids=ids[:600])
    fmal.seed("g", 5, index_dir=ix)
    res = fmal.embed(None, "g", index_dir=ix, embeddings=X, ids=ids, append=True)  # the whole file again: 300 are new
    assert res.n_appended == 300 and res.n_skipped == 600
    fmal.embed(None, "one", index_dir=ix, embeddings=X, ids=ids)
    for f in ("embeddings.npy", "rows.parquet", "index.faiss"):
        assert (ix / "g" / f).read_bytes() == (ix / "one" / f).read_bytes(), f
    assert len(Session(ix / "g").rounds) == 1
    with pytest.raises(ModelMismatchError, match="no encoder"):
        fmal.embed(["a text"], "g", index_dir=ix, append=True)


@pytest.mark.parametrize("point", ["append.embeddings-staged", "append.committed"])
def test_interrupted_append_resumes(tmp_path, point):
    X = np.random.default_rng(4).normal(size=(400, 8)).astype(np.float32)
    np.save(tmp_path / "all.npy", X)
    pd.DataFrame({"id": [f"v{i}" for i in range(400)]}).to_csv(tmp_path / "ids.csv", index=False)
    ix = tmp_path / "ix"
    fmal.embed(None, "g", index_dir=ix, embeddings=X[:250], ids=[f"v{i}" for i in range(250)])
    args = [sys.executable, "-m", "fmal", "embed", "--embeddings", str(tmp_path / "all.npy"), "--ids", str(tmp_path / "ids.csv"),
            "--pool", "g", "--index-dir", str(ix), "--append"]
    env = {**os.environ, "FMAL_CRASH_AT": point, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run(args, env=env, capture_output=True).returncode < 0
    env.pop("FMAL_CRASH_AT")
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    fmal.embed(None, "one", index_dir=ix, embeddings=tmp_path / "all.npy", ids=tmp_path / "ids.csv")
    for f in ("embeddings.npy", "rows.parquet", "index.faiss"):
        assert (ix / "g" / f).read_bytes() == (ix / "one" / f).read_bytes(), f
    assert fmal.open_pool("g", ix).n == 400 and not (ix / "g" / ".partial").exists()
