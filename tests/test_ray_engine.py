"""The Ray engine (a local Ray) reads the input on its workers, builds the same pool as the local
engine, resumes per shard when killed, and reports bad rows as the local engine does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal.pool import build as pool_build
from fmal.pool import write as pool_write
from fmal.pool.files import MANIFEST, PARTIAL
from fmal.encoders import load_encoder
from fmal.exceptions import InvalidInputError
from fmal.io import list_shards

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def _shards(folder, small_csv, *, blank_row: int | None = None):
    """The 200 rows of ``small_csv`` as three shards of mixed formats; a blank text at row
    ``blank_row`` of the second shard if asked."""
    folder.mkdir()
    df = pd.read_csv(small_csv, dtype=str)
    df.iloc[:80].to_csv(folder / "part-0.csv", index=False)
    second = df.iloc[80:150].copy()
    if blank_row is not None:
        second.iloc[blank_row - 1, second.columns.get_loc("text")] = "  "
    second.to_parquet(folder / "part-1.parquet", index=False)
    df.iloc[150:].to_json(folder / "part-2.jsonl", orient="records", lines=True)
    return df


def _assert_same_pool(a_path, b_path) -> None:
    a, b = fmal.open_pool(a_path), fmal.open_pool(b_path)
    assert list(a.ids) == list(b.ids)
    assert list(a.texts) == list(b.texts)
    cos = (np.asarray(a.embeddings) * np.asarray(b.embeddings)).sum(axis=1)
    assert cos.min() >= 0.999
    for key in ("n_rows", "n_unique_texts", "dim", "dtype"):
        assert getattr(a.manifest, key) == getattr(b.manifest, key), key
    assert a.manifest.input == b.manifest.input


def test_ray_reads_a_folder_of_mixed_shards_like_the_local_engine(ray_local, tiny_model_dir, small_csv, tmp_path):
    shards = tmp_path / "shards"
    df = _shards(shards, small_csv)
    # no id column: ids are generated over all shards in order (repeats get -2), as the local engine does
    nodup = tmp_path / "noids"
    nodup.mkdir()
    for f in shards.iterdir():
        frame = pd.read_parquet(f) if f.suffix == ".parquet" else (
            pd.read_json(f, lines=True, dtype=False) if f.suffix == ".jsonl" else pd.read_csv(f, dtype=str))
        frame = frame.drop(columns=["id"])
        if f.name == "part-2.jsonl":
            frame.iloc[0, frame.columns.get_loc("text")] = df["text"].iloc[0]  # a text repeated across shards
        {".csv": lambda p, fr=frame: fr.to_csv(p, index=False), ".parquet": lambda p, fr=frame: fr.to_parquet(p, index=False),
         ".jsonl": lambda p, fr=frame: fr.to_json(p, orient="records", lines=True)}[f.suffix](nodup / f.name)
    for src, name in ((shards, "ids"), (nodup, "gen")):
        local = fmal.embed(src, f"local-{name}", index_dir=tmp_path, model=tiny_model_dir, chunk_size=40)
        viaray = fmal.embed(src, f"ray-{name}", index_dir=tmp_path, model=tiny_model_dir, chunk_size=40, engine="ray")
        assert viaray.n_shards == 3 and viaray.n_rows == 200 and not viaray.skipped
        _assert_same_pool(local.pool_path, viaray.pool_path)
        # either engine sees the other's pool as built from this input: nothing to do
        assert fmal.embed(src, f"ray-{name}", index_dir=tmp_path, model=tiny_model_dir, engine="local").skipped
        assert fmal.embed(src, f"local-{name}", index_dir=tmp_path, model=tiny_model_dir, engine="ray").skipped
    gen = fmal.open_pool("ray-gen", tmp_path)
    assert gen.manifest.input.ids_generated and gen.ids[150].startswith(gen.ids[0] + "-")
    assert fmal.open_pool("ray-ids", tmp_path).manifest.input.format == "folder of 3 csv/jsonl/parquet files"
    sel = fmal.seed("ray-ids", 5, "kmeans", index_dir=tmp_path)
    assert len(sel.ids) == 5 and set(sel.ids) <= set(df["id"])
    # a Ray-built pool is repaired in this process (no Ray run), its round kept
    (tmp_path / "ray-ids" / "index.faiss").unlink()
    res = fmal.embed(shards, "ray-ids", index_dir=tmp_path, model=tiny_model_dir, engine="ray", repair=True)
    assert res.repaired == ("index.faiss",) and res.engine == "local"
    assert fmal.seed("ray-ids", 4, "kmeans", index_dir=tmp_path).round == 2


def test_ray_resumes_per_shard(ray_local, tiny_model_dir, small_csv, tmp_path, monkeypatch):
    from fmal.engines.ray_engine import RayEngine

    shards = tmp_path / "shards"
    _shards(shards, small_csv)
    clean = fmal.embed(shards, "clean", index_dir=tmp_path, model=tiny_model_dir)  # the same pool as a clean Ray build
    kwargs = {"model": str(tiny_model_dir), "backend": "torch"}
    encoder = load_encoder(**kwargs)
    source = list_shards(shards)
    path = tmp_path / "resumed"

    class Killed(Exception):
        pass

    saved: list[str] = []
    save = pool_write.save_shard

    def save_then_die(partial, res):
        save(partial, res)
        saved.append(res.key)
        raise Killed  # the driver dies right after the first shard is saved

    monkeypatch.setattr(pool_write, "save_shard", save_then_die)
    with pytest.raises(Killed):
        pool_build.build_pool_from_shards(source, encoder, path, engine=RayEngine(kwargs, workers=1))
    monkeypatch.setattr(pool_write, "save_shard", save)
    assert not (path / MANIFEST).exists() and len(saved) == 1

    redone: list[str] = []
    monkeypatch.setattr(pool_write, "save_shard", lambda partial, res: (redone.append(res.key), save(partial, res)))
    res = pool_build.build_pool_from_shards(source, encoder, path, engine=RayEngine(kwargs, workers=1))
    assert res.n_chunks_reused == 1 and saved[0] not in redone and len(redone) == 2
    assert not (path / PARTIAL).exists()
    _assert_same_pool(clean.pool_path, path)


def test_ray_bad_row_in_a_shard_is_the_local_engines_one_line_error(ray_local, tiny_model_dir, small_csv, tmp_path, cli):
    shards = tmp_path / "shards"
    _shards(shards, small_csv, blank_row=3)
    with pytest.raises(InvalidInputError) as local:
        fmal.embed(shards, "local", index_dir=tmp_path, model=tiny_model_dir)
    assert "part-1.parquet: row 3: empty or missing text" in str(local.value)
    r = cli("embed", shards, "--pool", "r", "--index-dir", tmp_path, "--model", tiny_model_dir, "--engine", "ray", "--workers", "1")
    assert r.exit_code not in (0, None) and "Traceback" not in r.output
    # stdout: nothing of fmal's; Ray may say there that it stopped the actors still busy on other shards
    assert all("(raylet)" in line for line in r.stdout.splitlines()), r.stdout
    # after the progress bar (other shards may have been embedded and saved): the local engine's error, on one line
    assert r.stderr.strip().splitlines()[-1] == f"error: {local.value}"
    assert {p.name for p in (tmp_path / "r").iterdir()} <= {PARTIAL, ".lock"}  # nothing written but resumable partials


def test_ray_duplicate_ids_across_shards_are_the_local_engines_error(ray_local, tiny_model_dir, tmp_path):
    d = tmp_path / "shards"
    d.mkdir()
    (d / "a.csv").write_text("id,text\nx,one\ny,two\n", encoding="utf-8")
    (d / "b.jsonl").write_text('{"id": "z", "text": "three"}\n{"id": "x", "text": "four"}\n', encoding="utf-8")
    with pytest.raises(InvalidInputError) as local:
        fmal.embed(d, "local", index_dir=tmp_path, model=tiny_model_dir)
    with pytest.raises(InvalidInputError) as viaray:
        fmal.embed(d, "r", index_dir=tmp_path, model=tiny_model_dir, engine="ray", workers=1)
    assert str(viaray.value) == str(local.value) and "duplicate id 'x'" in str(local.value)


def test_cli_engine_ray_reads_a_single_file_as_one_shard(ray_local, tiny_model_dir, small_csv, tmp_path, cli):
    r = cli("embed", small_csv, "--pool", "r", "--index-dir", tmp_path, "--model", tiny_model_dir, "--engine", "ray",
            "--workers", "1", "--precision", "float16")
    assert r.exit_code == 0, r.output
    assert "read by Ray: 1 shard(s) of 200 rows" in r.stdout
    local = fmal.embed(small_csv, "local", index_dir=tmp_path, model=tiny_model_dir, precision="float16")
    _assert_same_pool(local.pool_path, tmp_path / "r")
    assert fmal.open_pool("r", tmp_path).stored_embeddings.dtype == np.float16
    r = cli("embed", small_csv, "--pool", "r", "--index-dir", tmp_path, "--model", tiny_model_dir, "--engine", "ray")
    assert r.exit_code == 0 and "nothing to do" in r.stdout, r.output
