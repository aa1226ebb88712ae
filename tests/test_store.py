"""fmal.pool: the pool folder, resumable chunked embedding, duplicate texts, and every way a pool
folder can be missing or corrupt. Uses a fast deterministic encoder (vectors from a text hash)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmal.engines.shards import ShardResult
from fmal.pool import BuildSettings, build_pool, build_pool_from_shards, check_existing, open_pool, pool_path
from fmal._version import __version__
from fmal.exceptions import (
    CorruptPoolError,
    InvalidInputError,
    LabelsError,
    ModelMismatchError,
    PoolExistsError,
    PoolNotFoundError,
)
from fmal.io import load_texts

POOL_FILES = ("embeddings.npy", "rows.parquet", "index.faiss", "manifest.json")


class HashEncoder:
    """Deterministic unit vectors from each text's hash; records every text it is asked to embed."""

    def __init__(self, dim: int = 8, name: str = "hash", fail_after_chunks: int | None = None) -> None:
        self.dim, self.name, self.fingerprint = dim, name, f"{name}:{dim}"
        self.seen: list[str] = []
        self.calls = 0
        self.fail_after_chunks = fail_after_chunks

    def encode(self, texts, *, batch_size=64, normalize=True):
        if self.fail_after_chunks is not None and self.calls >= self.fail_after_chunks:
            raise KeyboardInterrupt
        self.calls += 1
        self.seen += list(texts)
        out = [np.random.default_rng(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16)).normal(size=self.dim) for t in texts]
        X = np.asarray(out, dtype=np.float32)
        return X / np.linalg.norm(X, axis=1, keepdims=True)


def _table(tmp_path: Path, texts: list[str], name: str = "in.csv"):
    p = tmp_path / name
    pd.DataFrame({"id": [f"r{i}" for i in range(len(texts))], "text": texts}).to_csv(p, index=False)
    return load_texts(p)


TEXTS = [f"sentence number {i % 23}" for i in range(40)]  # 23 distinct texts, 40 rows


@pytest.fixture
def built(tmp_path):
    table = _table(tmp_path, TEXTS)
    enc = HashEncoder()
    res = build_pool(table, enc, tmp_path / "pools" / "p", BuildSettings(chunk_size=5))
    return table, enc, res, tmp_path / "pools" / "p"


def test_pool_folder_holds_manifest_rows_embeddings_index(built):
    table, _, res, path = built
    assert (res.n_rows, res.n_unique, res.n_embedded, res.skipped) == (40, 23, 23, False)
    assert sorted(p.name for p in path.iterdir() if p.name != ".lock") == sorted(POOL_FILES)  # .partial is gone; .lock: the write lock
    m = json.loads((path / "manifest.json").read_text())
    assert m["n_rows"] == 40 and m["n_unique_texts"] == 23 and m["dim"] == 8
    assert m["normalized"] is True and m["dtype"] == "float32" and m["fmal_version"] == __version__
    assert m["model"]["name"] == "hash" and m["model"]["fingerprint"] == "hash:8"
    assert m["input"]["fingerprint"] == table.fingerprint and m["input"]["text_col"] == "text"
    assert m["index"]["type"] == "flat" and m["index"]["ntotal"] == 40
    pool = open_pool(path)
    assert pool.ids.tolist() == table.ids and pool.texts.tolist() == TEXTS
    X = np.asarray(pool.embeddings)
    assert X.dtype == np.float32 and X.shape == (40, 8)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    assert pool.index.ntotal == 40


def test_identical_texts_are_embedded_once_yet_every_row_has_its_vector(built):
    _, enc, _, path = built
    assert sorted(enc.seen) == sorted(set(TEXTS))  # each distinct text exactly once
    X = np.asarray(open_pool(path).embeddings)
    ref = HashEncoder().encode(TEXTS)
    np.testing.assert_array_equal(X, ref)  # rows 0 and 23 share a text, and a vector


def test_rerun_of_a_finished_pool_is_a_no_op(built):
    table, _, _, path = built
    before = {f: (path / f).read_bytes() for f in POOL_FILES}
    enc = HashEncoder()
    res = build_pool(table, enc, path, BuildSettings(chunk_size=5))
    assert res.skipped and res.n_embedded == 0 and enc.calls == 0
    assert before == {f: (path / f).read_bytes() for f in POOL_FILES}


def test_other_input_or_model_is_refused_unless_overwrite(built, tmp_path):
    table, _, _, path = built
    other = _table(tmp_path, TEXTS[:10], "other.csv")
    with pytest.raises(PoolExistsError, match="built from other input.*--overwrite"):
        build_pool(other, HashEncoder(), path)
    with pytest.raises(ModelMismatchError, match=r"built with model 'hash'.*not 'hash2'.*--overwrite"):
        build_pool(table, HashEncoder(name="hash2"), path)
    (path / "session.json").write_text("{}")
    res = build_pool(other, HashEncoder(name="hash2"), path, BuildSettings(overwrite=True))
    assert res.n_rows == 10 and not (path / "session.json").exists()
    assert open_pool(path).manifest.model.name == "hash2"


def test_interrupted_build_resumes_byte_identical(tmp_path):
    table = _table(tmp_path, TEXTS)
    ref = tmp_path / "ref"
    build_pool(table, HashEncoder(), ref, BuildSettings(chunk_size=5))
    path = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        build_pool(table, HashEncoder(fail_after_chunks=2), path, BuildSettings(chunk_size=5))
    assert not (path / "manifest.json").exists()
    assert sorted(p.name for p in (path / ".partial").iterdir()) == ["chunk-000000.npy", "chunk-000001.npy", "progress.json"]
    with pytest.raises(PoolNotFoundError, match="interrupted: rerun it"):
        open_pool(path)
    enc = HashEncoder()
    res = build_pool(table, enc, path, BuildSettings(chunk_size=5))
    assert res.n_chunks_reused == 2 and res.n_embedded == 23 - 10 and len(enc.seen) == 13
    for f in POOL_FILES:
        assert (path / f).read_bytes() == (ref / f).read_bytes(), f
    assert not (path / ".partial").exists()
    assert not list(path.glob(".*.tmp"))


def test_temp_files_of_a_run_killed_while_assembling_are_removed(tmp_path):
    table = _table(tmp_path, TEXTS)
    path = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        build_pool(table, HashEncoder(fail_after_chunks=2), path, BuildSettings(chunk_size=5))
    stale = [path / ".embeddings.npy.k1ll3d.tmp", path / ".index.faiss.k1ll3d.tmp"]  # what SIGKILL mid-write leaves
    for f in stale:
        f.write_bytes(b"half")
    (path / "notes.txt").write_text("mine")  # a user's file is left alone
    build_pool(table, HashEncoder(), path, BuildSettings(chunk_size=5))
    assert not any(f.exists() for f in stale) and (path / "notes.txt").exists()


def test_unfinished_work_for_other_settings_is_discarded(tmp_path):
    table = _table(tmp_path, TEXTS)
    path = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        build_pool(table, HashEncoder(fail_after_chunks=2), path, BuildSettings(chunk_size=5))
    res = build_pool(table, HashEncoder(), path, BuildSettings(chunk_size=7))  # another chunk size: start over
    assert res.n_chunks_reused == 0 and res.n_embedded == 23


def test_a_corrupt_chunk_is_embedded_again(tmp_path):
    table = _table(tmp_path, TEXTS)
    path = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        build_pool(table, HashEncoder(fail_after_chunks=2), path, BuildSettings(chunk_size=5))
    (path / ".partial" / "chunk-000001.npy").write_bytes(b"\x93NUMPY garbage")
    res = build_pool(table, HashEncoder(), path, BuildSettings(chunk_size=5))
    assert res.n_chunks_reused == 1
    np.testing.assert_array_equal(np.asarray(open_pool(path).embeddings), HashEncoder().encode(TEXTS))


# ----------------------------------------------------------------------------- opening


def test_pool_path_from_name_or_folder(tmp_path):
    assert pool_path("demo") == Path("indexes") / "demo"
    assert pool_path("demo", tmp_path) == tmp_path / "demo"
    assert pool_path(tmp_path / "x" / "demo") == tmp_path / "x" / "demo"
    assert pool_path("./demo") == Path("demo")  # a folder in the working directory, even before it exists
    for bad in ("a b", ".hidden", "", "x" * 200):
        with pytest.raises(InvalidInputError, match="pool name must be"):
            pool_path(bad, tmp_path)


def test_missing_pool(tmp_path):
    with pytest.raises(PoolNotFoundError, match=r"no pool there; build it with: fmal embed INPUT --pool nope"):
        open_pool("nope", tmp_path)


def test_rows_of_names_unknown_ids(built):
    pool = open_pool(built[3])
    assert pool.rows_of(["r3", "r0"]).tolist() == [3, 0]
    with pytest.raises(LabelsError, match=r"lab.csv: 2 id\(s\) are not in pool 'p' \('zz', 'yy'\)"):
        pool.rows_of(["r1", "zz", "yy"], source="lab.csv")


def _corrupt(path: Path, what: str) -> None:
    m = json.loads((path / "manifest.json").read_text())
    if what == "manifest-json":
        (path / "manifest.json").write_text('{"format": "fmal-pool", ')
    elif what == "manifest-other":
        (path / "manifest.json").write_text('["not", "a", "manifest"]')
    elif what == "manifest-n_rows":
        m["n_rows"] = "forty"
        (path / "manifest.json").write_text(json.dumps(m))
    elif what == "manifest-model":
        del m["model"]
        (path / "manifest.json").write_text(json.dumps(m))
    elif what == "rows-missing":
        (path / "rows.parquet").unlink()
    elif what == "rows-count":
        pd.DataFrame({"id": ["a"], "text": ["b"]}).to_parquet(path / "rows.parquet")
    elif what == "emb-shape":
        np.save(path / "embeddings.npy", np.zeros((10, 8), np.float32))
    elif what == "emb-dtype":
        np.save(path / "embeddings.npy", np.zeros((40, 8), np.float64))
    elif what == "emb-truncated":
        b = (path / "embeddings.npy").read_bytes()
        (path / "embeddings.npy").write_bytes(b[: len(b) // 2])
    elif what == "emb-missing":
        (path / "embeddings.npy").unlink()
    elif what == "index-missing":
        (path / "index.faiss").unlink()
    elif what == "index-truncated":
        b = (path / "index.faiss").read_bytes()
        (path / "index.faiss").write_bytes(b[: len(b) // 2])
    elif what == "index-other":
        build_pool(_table(path.parent, TEXTS[:5], "five.csv"), HashEncoder(), path.parent / "five")
        (path / "index.faiss").write_bytes((path.parent / "five" / "index.faiss").read_bytes())


@pytest.mark.parametrize(
    "what, needle",
    [
        ("manifest-json", "manifest.json: not valid JSON"),
        ("manifest-other", "manifest.json: not an fmal pool manifest"),
        ("manifest-n_rows", "manifest.json"),
        ("manifest-model", "manifest.json"),
        ("rows-missing", "rows.parquet: missing"),
        ("rows-count", "rows.parquet: 1 rows, expected 40"),
        ("emb-shape", "embeddings.npy: shape (10, 8) float32, expected (40, 8) float32"),
        ("emb-dtype", "embeddings.npy: shape (40, 8) float64, expected (40, 8) float32"),
        ("emb-truncated", "embeddings.npy: 704 bytes, its header needs 1408 (truncated)"),
        ("emb-missing", "embeddings.npy: missing"),
        ("index-missing", "index.faiss: missing"),
        ("index-truncated", "index.faiss: 662 bytes, the manifest recorded"),
        ("index-other", "index.faiss: holds 5 vectors of dim 8, expected 40 of dim 8"),
    ],
)
def test_corrupt_pool_is_a_clear_error(built, what, needle):
    path = built[3]
    _corrupt(path, what)
    with pytest.raises(CorruptPoolError) as exc:
        pool = open_pool(path)
        pool.texts, pool.embeddings, pool.index  # noqa: B018  (load every part)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    assert "--repair (labels and rounds are kept)" in str(exc.value) and "--overwrite" not in str(exc.value)


def test_check_existing_matches_a_shard_list_of_the_same_input(tmp_path):
    """The Ray engine checks a finished pool against its listed (unparsed) input: an unset id
    column matches a pool that used 'id' or generated ids, an other id column does not."""
    from fmal.io import list_shards

    src = tmp_path / "in.csv"
    src.write_text("id,uid,text\n1,a,one\n2,b,two\n", encoding="utf-8")
    for id_col in ("id", "uid"):
        path = tmp_path / id_col
        build_pool(load_texts(src, id_col=id_col), HashEncoder(), path)
        assert check_existing(path, list_shards(src, id_col=id_col), "hash", None) is not None
    assert check_existing(tmp_path / "id", list_shards(src), "hash", None) is not None
    with pytest.raises(PoolExistsError):
        check_existing(tmp_path / "uid", list_shards(src), "hash", None)
    with pytest.raises(PoolExistsError):
        check_existing(tmp_path / "id", list_shards(src, id_col="uid"), "hash", None)


class _ShardsHere:
    """A ShardEngine in this process (what the Ray engine does, without Ray): read, embed, yield."""

    def __init__(self, encoder: HashEncoder) -> None:
        self.encoder, self.read = encoder, []

    def run_shards(self, tasks, *, text_col, id_col, chunk_size):
        from fmal.io import read_shard

        for t in tasks:
            s = read_shard(t.file, text_col=text_col, id_col=id_col)
            self.read.append(t.file.name)
            yield ShardResult(t.key, s.texts, s.ids, self.encoder.encode(s.texts), len(s.texts))


def test_build_pool_from_shards_writes_the_local_engines_pool_and_reuses_finished_shards(tmp_path):
    from fmal.io import list_shards

    d = tmp_path / "shards"
    d.mkdir()
    (d / "a.csv").write_text("text\none\ntwo\none\n", encoding="utf-8")
    (d / "b.jsonl").write_text('{"text": "two"}\n{"text": "three"}\n', encoding="utf-8")
    (d / "c.txt").write_text("one\n", encoding="utf-8")
    local = build_pool(load_texts(d), HashEncoder(), tmp_path / "local")
    path = tmp_path / "shard"
    engine = _ShardsHere(HashEncoder())

    def die_after_one(rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_pool_from_shards(list_shards(d), HashEncoder(), path, engine=engine, on_progress=die_after_one)
    res = build_pool_from_shards(list_shards(d), HashEncoder(), path, engine=engine)
    assert engine.read == ["a.csv", "b.jsonl", "c.txt"] and res.n_chunks_reused == 1
    assert (res.n_rows, res.n_unique) == (local.n_rows, local.n_unique) == (6, 3)
    a, b = open_pool(local.path), open_pool(path)
    assert list(a.ids) == list(b.ids) and a.ids[2].endswith("-2") and a.ids[5].endswith("-3")
    np.testing.assert_array_equal(np.asarray(a.embeddings), np.asarray(b.embeddings))
    assert a.manifest.input == b.manifest.input and a.manifest.n_unique_texts == b.manifest.n_unique_texts
    assert build_pool_from_shards(list_shards(d), HashEncoder(), path, engine=engine).skipped


def test_a_new_build_writes_the_keys_the_previous_code_wrote(built):
    """Same manifest layout as before fmal.pool (tests/test_manifest.py holds one verbatim)."""
    from test_manifest import DEMO

    m = json.loads((built[3] / "manifest.json").read_text())
    assert set(m) == set(DEMO)
    for section in ("model", "input", "embedding", "files", "file_checks"):
        added = {"device"} if section == "model" else set()  # model.device: new with --device (fmal.encoders)
        assert set(m[section]) == set(DEMO[section]) | added, section
    assert set(m["index"]) == set(DEMO["index"])
    assert m["model"]["onnx_file"] is None and m["model"]["threads"] is None  # written as null, as before
