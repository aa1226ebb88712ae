"""More inputs: a JSON array of objects, and a Hugging Face datasets folder (save_to_disk), for
texts and for embeddings."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal.exceptions import InvalidInputError

from conftest import DEMO_CSV


def test_json_array_of_objects(tmp_path, tiny_model_dir, cli, cli_error):
    df = pd.read_csv(DEMO_CSV, dtype=str).head(50)
    (tmp_path / "arr.json").write_text(json.dumps(df[["id", "text"]].to_dict(orient="records"), indent=2))
    res = fmal.embed(tmp_path / "arr.json", "arr", index_dir=tmp_path / "ix", model=tiny_model_dir)
    assert res.n_rows == 50 and fmal.open_pool("arr", tmp_path / "ix").ids.tolist() == df["id"].tolist()
    (tmp_path / "bad.json").write_text('[{"text": "a"}, 3]')
    cli_error(cli("embed", tmp_path / "bad.json", "--pool", "b", "--index-dir", tmp_path / "ix", "--model", tiny_model_dir),
              "bad.json: item 2: expected a JSON object, got int")


def test_datasets_folder_texts_and_embeddings(tmp_path, tiny_model_dir):
    datasets = pytest.importorskip("datasets")
    df = pd.read_csv(DEMO_CSV, dtype=str).head(120)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(120, 8)).astype(np.float32)
    ds = datasets.Dataset.from_dict({"id": df["id"].tolist(), "text": df["text"].tolist(), "label": df["label"].tolist(),
                                     "emb": emb.tolist()})
    ds.save_to_disk(str(tmp_path / "ds"), max_shard_size="10KB")  # several Arrow shards
    assert len(list((tmp_path / "ds").glob("*.arrow"))) > 1
    ix = tmp_path / "ix"
    res = fmal.embed(tmp_path / "ds", "hf", index_dir=ix, model=tiny_model_dir)
    p = fmal.open_pool("hf", ix)
    assert res.n_rows == 120 and p.ids.tolist() == df["id"].tolist() and p.texts[3] == df["text"][3]
    ext = fmal.embed(None, "hfv", index_dir=ix, embeddings=tmp_path / "ds", embedding_col="emb")
    q = fmal.open_pool("hfv", ix)
    assert ext.n_rows == 120 and q.ids.tolist() == df["id"].tolist() and q.texts[3] == df["text"][3]
    assert np.allclose(np.asarray(q.embeddings), emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=1e-6)
    sim = fmal.simulate(tmp_path / "ds", pool="hf", index_dir=ix, model=tiny_model_dir, strategies="random", seeds=1,
                        initial=10, step=10, max_labels=20)
    assert sim.info["n_rows"] == 120
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InvalidInputError, match=r"DatasetDict with splits .*train.*; give one split's folder"):
        fmal.embed(tmp_path / "dd", "dd", index_dir=ix, model=tiny_model_dir)
