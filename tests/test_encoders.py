"""fmal.encoders: model resolution, weight fingerprints, the tiny random BERT as an encoder, and
one test with the real bundled all-MiniLM-L6-v2 (paraphrases are each other's nearest neighbours)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal import encoders
from fmal import index as fmal_index
from fmal.exceptions import ModelLoadError


def test_resolve_model(tmp_path, tiny_model_dir):
    name, folder = encoders.resolve_model(None)
    assert name == encoders.DEFAULT_MODEL and (folder / "config.json").exists()
    assert encoders.resolve_model("bundled") == (name, folder)
    assert encoders.resolve_model(tiny_model_dir) == (str(tiny_model_dir.resolve()), tiny_model_dir.resolve())
    assert encoders.resolve_model("some-org/some-model") == ("some-org/some-model", None)
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        encoders.resolve_model(tmp_path / "weights.bin")
    with pytest.raises(ModelLoadError, match="folder not found"):
        encoders.resolve_model("./no/such/model")


def test_fingerprint_follows_the_weights(tmp_path, tiny_model_dir):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    fp = encoders.fingerprint_folder(copy)
    assert fp.startswith("sha256:") and fp == encoders.fingerprint_folder(tiny_model_dir)
    w = copy / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    assert encoders.fingerprint_folder(copy) != fp
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no weight files"):
        encoders.fingerprint_folder(empty)


def test_tiny_encoder_gives_normalised_float32(tiny_model_dir):
    enc = encoders.load_encoder(tiny_model_dir)
    assert enc.dim == 32 and enc.fingerprint == encoders.fingerprint_folder(tiny_model_dir)
    texts = ["a short text", "a somewhat longer text about bread and baking", "a short text"]
    X = enc.encode(texts, batch_size=2)
    assert X.dtype == np.float32 and X.shape == (3, 32) and X.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(X[0], X[2], atol=1e-6)  # same text, other batch: same vector up to padding noise
    np.testing.assert_allclose(enc.encode(texts[::-1], batch_size=64)[::-1], X, atol=1e-5)  # order does not matter


def test_unloadable_models_are_model_load_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelLoadError) as exc:
        encoders.load_encoder(bad)
    assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ModelLoadError, match="hub"):
        encoders.load_encoder("fmal-tests/no-such-model")  # HF_HUB_OFFLINE=1: not downloadable


PARAPHRASES = [
    ("How do I bake bread?", "What's a recipe for making bread at home?"),
    ("The stock market crashed today.", "Share prices fell sharply on Wall Street this afternoon."),
    ("My dog loves playing fetch in the park.", "The puppy enjoys chasing a ball outside."),
    ("How far is the Moon from the Earth?", "What is the distance between our planet and the Moon?"),
    ("Where can I renew my passport?", "How do I get a new passport when mine expires?"),
]


@pytest.mark.slow
def test_real_bundled_model_puts_paraphrases_next_to_each_other(tmp_path):
    texts = [t for pair in PARAPHRASES for t in pair]
    src = tmp_path / "pairs.csv"
    pd.DataFrame({"id": [f"s{i}" for i in range(len(texts))], "text": texts}).to_csv(src, index=False)
    res = fmal.embed(src, "pairs", index_dir=tmp_path)  # the bundled all-MiniLM-L6-v2
    assert res.model == encoders.DEFAULT_MODEL and res.dim == 384
    pool = fmal.open_pool("pairs", tmp_path)
    X = np.asarray(pool.embeddings)
    _, ids = fmal_index.knn(pool.index, X, 2)
    assert (ids[:, 0] == np.arange(len(texts))).all()
    partner = np.arange(len(texts)) ^ 1  # 0<->1, 2<->3, ...
    assert ids[:, 1].tolist() == partner.tolist(), [(texts[i], texts[j]) for i, j in enumerate(ids[:, 1]) if j != partner[i]]
