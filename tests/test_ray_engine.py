"""The Ray engine (a local Ray) builds the same pool as the local engine, and resumes when killed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal import store
from fmal.encoders import load_encoder
from fmal.io import load_texts

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def test_ray_engine_matches_local_engine_and_resumes(ray_local, tiny_model_dir, small_csv, tmp_path):
    from fmal.engines.ray_engine import RayEngine

    local = fmal.embed(small_csv, "local", index_dir=tmp_path, model=tiny_model_dir, chunk_size=40)
    table = load_texts(small_csv)
    kwargs = {"model": str(tiny_model_dir), "backend": "torch"}
    encoder = load_encoder(**kwargs)
    path = tmp_path / "viaray"

    class Killed(Exception):
        pass

    def kill_after_two(done: int) -> None:
        if done >= 80:
            raise Killed

    with pytest.raises(Killed):  # the driver dies after two chunks are saved
        store.build_pool(table, encoder, path, chunk_size=40, engine=RayEngine(kwargs, workers=2), on_progress=kill_after_two)
    assert not (path / store.MANIFEST).exists()
    res = store.build_pool(table, encoder, path, chunk_size=40, engine=RayEngine(kwargs, workers=2))
    assert res.n_chunks_reused >= 2 and res.n_embedded < res.n_unique

    a, b = fmal.open_pool(local.pool_path), fmal.open_pool(path)
    assert list(a.ids) == list(b.ids)
    cos = (np.asarray(a.embeddings) * np.asarray(b.embeddings)).sum(axis=1)
    assert cos.min() >= 0.999


def test_cli_engine_ray_builds_a_pool_seed_can_use_from_a_folder_of_shards(ray_local, tiny_model_dir, small_csv, tmp_path):
    from typer.testing import CliRunner

    from fmal.cli import app

    shards = tmp_path / "shards"
    shards.mkdir()
    df = pd.read_csv(small_csv, dtype=str)
    df.iloc[:80].to_csv(shards / "part-0.csv", index=False)
    df.iloc[80:150].to_parquet(shards / "part-1.parquet", index=False)
    df.iloc[150:].to_json(shards / "part-2.jsonl", orient="records", lines=True)
    r = CliRunner().invoke(app, ["embed", str(shards), "--pool", "r", "--index-dir", str(tmp_path),
                                 "--model", str(tiny_model_dir), "--engine", "ray", "--workers", "1"])
    assert r.exit_code == 0, r.output
    sel = fmal.seed("r", 5, "kmeans", index_dir=tmp_path)
    assert len(sel.ids) == 5
    assert pd.read_parquet(tmp_path / "r" / "rows.parquet")["id"].tolist() == df["id"].tolist()
    assert fmal.open_pool("r", tmp_path).manifest["input"]["format"] == "folder of 3 csv/jsonl/parquet files"
