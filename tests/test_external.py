"""Bring your own embeddings: ``fmal embed --embeddings`` writes the pool fmal would have written
from the same vectors, and every command after it works the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fmal
from fmal.exceptions import InvalidInputError, ModelMismatchError

from conftest import vector_pool


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_100k_npy_pool_picks_like_the_normal_path(cli, tmp_path):
    n, d = 100_000, 32
    X = _unit(n, d)
    ids = [f"r{i}" for i in range(n)]
    texts = [f"text {i}" for i in range(n)]
    np.save(tmp_path / "vectors.npy", X)
    pd.DataFrame({"id": ids, "text": texts}).to_csv(tmp_path / "ids.csv", index=False)
    ix = tmp_path / "ix"
    res = cli("embed", "--embeddings", tmp_path / "vectors.npy", "--ids", tmp_path / "ids.csv", "--pool", "ext",
              "--index-dir", ix, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["result"]
    assert out["model"] == "external" and out["n_rows"] == n and out["source"].endswith("vectors.npy")
    vector_pool(ix, "ref", X, texts=texts, ids=ids)  # the same matrix through the encoder path

    ext, ref = fmal.open_pool("ext", ix), fmal.open_pool("ref", ix)
    assert ext.manifest.model.name == "external" and ext.manifest.input.fingerprint.startswith("sha256:")
    assert ext.manifest.index.type == ref.manifest.index.type == "flat"
    assert (ix / "ext" / "embeddings.npy").read_bytes() == (ix / "ref" / "embeddings.npy").read_bytes()
    assert ext.ids.tolist() == ids and ext.texts[:2].tolist() == texts[:2]

    picks = {}
    for name in ("ext", "ref"):
        s = fmal.seed(name, 20, index_dir=ix)
        labels = {i: f"c{int(i[1:]) % 3}" for i in s.ids}
        q = fmal.query(name, labels, budget=20, index_dir=ix)
        a = fmal.audit(name, index_dir=ix)
        r = fmal.report(name, index_dir=ix, n_clusters=5)
        picks[name] = (s.ids, q.ids, a.audit.table["id"].tolist(), r.balance["predicted"].tolist())
    assert picks["ext"] == picks["ref"]

    again = cli("embed", "--embeddings", tmp_path / "vectors.npy", "--ids", tmp_path / "ids.csv", "--pool", "ext", "--index-dir", ix)
    assert again.exit_code == 0 and "already built" in again.stdout


def test_parquet_arrow_folder_and_array_sources(tmp_path):
    X = _unit(300, 8, seed=1)
    ids = [f"d{i}" for i in range(300)]
    col = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel(), pa.float32()), 8)
    table = pa.table({"id": ids, "body": [f"doc {i}" for i in range(300)], "emb": col})
    pq.write_table(table, tmp_path / "v.parquet")
    shards = tmp_path / "shards"
    shards.mkdir()
    for k, s in enumerate(range(0, 300, 100)):
        with pa.OSFile(str(shards / f"part-{k}.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table.slice(s, 100))
    ix = tmp_path / "ix"
    a = fmal.embed(None, "pq", index_dir=ix, embeddings=tmp_path / "v.parquet", embedding_col="emb", text_col="body")
    b = fmal.embed(None, "arrow", index_dir=ix, embeddings=shards, embedding_col="emb", text_col="body")
    c = fmal.embed(None, "arr", index_dir=ix, embeddings=X.astype(np.float64), ids=ids, texts=[f"doc {i}" for i in range(300)])
    assert a.n_rows == b.n_rows == c.n_rows == 300
    pools = [fmal.open_pool(x, ix) for x in ("pq", "arrow", "arr")]
    for p in pools:
        assert p.ids.tolist() == ids and p.texts[5] == "doc 5"
        assert np.array_equal(np.asarray(p.embeddings), np.asarray(pools[0].embeddings))
    assert pools[1].manifest.input.format == "folder of 3 arrow files"


def test_not_normalised_on_request(tmp_path):
    X = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    fmal.embed(None, "raw", index_dir=tmp_path, embeddings=X, ids=list("abcd"), normalize=False)
    p = fmal.open_pool("raw", tmp_path)
    assert p.manifest.normalized is False and np.array_equal(np.asarray(p.embeddings), X)
    fmal.embed(None, "l2", index_dir=tmp_path, embeddings=X, ids=list("abcd"))
    assert np.allclose(np.linalg.norm(np.asarray(fmal.open_pool("l2", tmp_path).embeddings), axis=1), 1)


def _bad_sources(tmp_path):
    X = _unit(10, 4)
    nan = X.copy()
    nan[3, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    inf = X.copy()
    inf[7, 0] = np.inf
    zero = X.copy()
    zero[2] = 0
    np.save(tmp_path / "ok.npy", X)
    with open(tmp_path / "ok.npy", "rb") as f:
        data = f.read()
    (tmp_path / "cut.npy").write_bytes(data[:-20])
    ragged = pa.table({"id": ["a", "b"], "embedding": [[0.1, 0.2, 0.3], [0.1, 0.2]]})
    pq.write_table(ragged, tmp_path / "ragged.parquet")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    np.save(mixed / "a.npy", X)
    np.save(mixed / "b.npy", _unit(3, 5))
    return {
        "nan": (dict(embeddings=tmp_path / "nan.npy"), "nan.npy: row 4: NaN or infinite value"),
        "inf": (dict(embeddings=inf), "embeddings (array): row 8: NaN or infinite"),
        "zero": (dict(embeddings=zero), "row 3: all-zero embedding cannot be normalised"),
        "cut": (dict(embeddings=tmp_path / "cut.npy"), "cut short"),
        "ragged": (dict(embeddings=tmp_path / "ragged.parquet"), "ragged.parquet: row 2: embedding of 2 values, earlier rows have 3 (ragged)"),
        "dims": (dict(embeddings=mixed), "b.npy: embeddings of dim 5, "),
        "count": (dict(embeddings=X, ids=list("abc")), "ids: 3 ids for 10 embedding rows"),
        "dup": (dict(embeddings=X[:3], ids=["a", "b", "a"]), "rows 1 and 3: duplicate id 'a'"),
        "empty": (dict(embeddings=np.zeros((0, 4), np.float32)), "no rows"),
        "1d": (dict(embeddings=np.ones(4, np.float32)), "must be a 2-D array"),
        "ints": (dict(embeddings=np.ones((2, 2), np.int64)), "must be floats"),
        "suffix": (dict(embeddings=tmp_path / "x.csv"), "not found"),
    }


@pytest.mark.parametrize("case", ["nan", "inf", "zero", "cut", "ragged", "dims", "count", "dup", "empty", "1d", "ints", "suffix"])
def test_bad_embeddings_are_one_line_errors(tmp_path, case):
    kwargs, needle = _bad_sources(tmp_path)[case]
    with pytest.raises(InvalidInputError) as exc:
        fmal.embed(None, "bad", index_dir=tmp_path / "ix", **kwargs)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "ix" / "bad" / "manifest.json").exists()


def test_cli_errors_and_encoder_needed(cli, cli_error, tmp_path, small_csv):
    X = _unit(20, 4)
    X[5, 2] = np.nan
    np.save(tmp_path / "v.npy", X)
    cli_error(cli("embed", "--embeddings", tmp_path / "v.npy", "--pool", "p", "--index-dir", tmp_path / "ix"), "row 6: NaN")
    np.save(tmp_path / "v.npy", _unit(200, 4))
    pd.read_csv(small_csv, dtype=str)[["id", "text"]].to_csv(tmp_path / "ids.csv", index=False)
    ok = cli("embed", "--embeddings", tmp_path / "v.npy", "--ids", tmp_path / "ids.csv", "--pool", "p", "--index-dir", tmp_path / "ix")
    assert ok.exit_code == 0, ok.output
    # texts cannot be embedded into it: no encoder
    cli_error(cli("embed", small_csv, "--pool", "p", "--index-dir", tmp_path / "ix"), "made outside fmal", "--embeddings")
    with pytest.raises(ModelMismatchError, match="no encoder"):
        fmal.simulate(small_csv, pool="p", index_dir=tmp_path / "ix", test_col="split", strategies="random", seeds=1,
                      initial=10, step=10, max_labels=20)
    # a damaged pool names the --embeddings repair
    (tmp_path / "ix" / "p" / "index.faiss").unlink()
    err = cli_error(cli("seed", "--pool", "p", "--index-dir", tmp_path / "ix", "--budget", 3), "index.faiss")
    assert "--embeddings" in err and "--ids" in err
    rep = cli("embed", "--embeddings", tmp_path / "v.npy", "--ids", tmp_path / "ids.csv", "--pool", "p", "--index-dir",
              tmp_path / "ix", "--repair", "--json")
    assert rep.exit_code == 0, rep.output
    assert json.loads(rep.stdout)["result"]["repaired"] == ["index.faiss"]
    assert cli("seed", "--pool", "p", "--index-dir", tmp_path / "ix", "--budget", 3).exit_code == 0


def test_interrupted_ingestion_resumes(tmp_path):
    X = _unit(500, 8)
    np.save(tmp_path / "v.npy", X)
    args = [sys.executable, "-m", "fmal", "embed", "--embeddings", str(tmp_path / "v.npy"), "--pool", "p", "--index-dir", str(tmp_path / "ix")]
    env = {**os.environ, "FMAL_CRASH_AT": "external.embeddings-written", "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = subprocess.run(args, env=env, capture_output=True, text=True)
    assert killed.returncode < 0 and not (tmp_path / "ix" / "p" / "manifest.json").exists()
    env.pop("FMAL_CRASH_AT")
    done = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    res = json.loads(done.stdout)["result"]
    assert res["n_chunks_reused"] == 1 and res["n_embedded"] == 0  # the embeddings file was kept
    fmal.embed(None, "fresh", index_dir=tmp_path / "ix", embeddings=tmp_path / "v.npy")
    for f in ("embeddings.npy", "rows.parquet", "index.faiss"):
        assert (tmp_path / "ix" / "p" / f).read_bytes() == (tmp_path / "ix" / "fresh" / f).read_bytes()


def test_checksums_hashed_while_writing_match_the_files_after_ingest_and_append(tmp_path):
    # the embeddings and index of an ingestion or an append are hashed as they are written (no re-read):
    # the manifest's records must be those of the files on disk
    from fmal.pool.check import check_pool, sha256_file
    from fmal.pool.manifest import read_manifest

    X = _unit(3000, 16)
    ix = tmp_path / "ix"
    fmal.embed(None, embeddings=X[:2500], ids=[f"r{i}" for i in range(2500)], pool="p", index_dir=ix, index="ivfflat")
    fmal.embed(None, embeddings=X[2500:], ids=[f"r{i}" for i in range(2500, 3000)], pool="p", index_dir=ix, append=True)
    path = ix / "p"
    m = read_manifest(path)
    assert m.n_rows == 3000 and check_pool(path, m, checksums=True) == []
    for name, rec in m.file_records.items():
        assert rec["sha256"] == sha256_file(path / name) and rec["size"] == (path / name).stat().st_size, name


def test_blocks_are_normalised_bit_for_bit_as_numpy_would():
    # check_block computes the norms a few thousand rows at a time (no block-sized temporaries):
    # the stored vectors must stay those of X / np.linalg.norm(X, axis=1) for off-unit rows
    from fmal.external import check_block, row_norms

    X = (np.random.default_rng(3).normal(size=(9000, 24)) * 7).astype(np.float32)
    X[4] /= np.linalg.norm(X[4])  # already unit: stored as given
    assert (row_norms(X, rows=1000) == np.linalg.norm(X, axis=1)).all()
    want = X.copy()
    norms = np.linalg.norm(want, axis=1)
    off = np.abs(norms - 1.0) > 1e-6
    want[off] /= norms[off, None]
    assert check_block(X, 0, str, normalize=True).tobytes() == want.tobytes()
