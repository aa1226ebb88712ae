"""fmal.index: saving and loading FAISS indexes with checks, and exact k-NN on a pool's index."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from conftest import clustered

import fmal
from fmal import index as fmal_index
from fmal.exceptions import CorruptPoolError


def _flat(X: np.ndarray) -> faiss.Index:
    idx = faiss.IndexFlatIP(X.shape[1])
    idx.add(X)
    return idx


def test_save_load_and_knn(tmp_path):
    X, _ = clustered(n=120, d=16, k=4)
    path = tmp_path / "index.faiss"
    fmal_index.save_index(_flat(X), path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.faiss"]  # atomic: no temp file left
    idx = fmal_index.load_index(path, n=120, dim=16)
    sims, ids = fmal_index.knn(idx, X[:10], 5, batch=3)  # several batches
    assert ids.shape == (10, 5) and ids.dtype == np.int64
    assert (ids[:, 0] == np.arange(10)).all()  # unit vectors: each row is its own nearest neighbour
    np.testing.assert_allclose(sims[:, 0], 1.0, rtol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    _, all_ids = fmal_index.knn(idx, X[:2], 500)  # k is capped at the index size
    assert all_ids.shape == (2, 120)


@pytest.mark.parametrize("what, needle", [
    ("missing", "index file missing"),
    ("truncated", "index file is unreadable"),
    ("garbage", "index file is unreadable"),
    ("rows", "index holds 120 vectors of dim 16, the pool 99 of dim 16"),
    ("dim", "index holds 120 vectors of dim 16, the pool 120 of dim 8"),
])
def test_load_index_checks(tmp_path, what, needle):
    X, _ = clustered(n=120, d=16, k=4)
    path = tmp_path / "index.faiss"
    fmal_index.save_index(_flat(X), path)
    n, dim = {"rows": (99, 16), "dim": (120, 8)}.get(what, (120, 16))
    if what == "missing":
        path.unlink()
    elif what == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif what == "garbage":
        path.write_bytes(b"\x00" * 64)
    with pytest.raises(CorruptPoolError) as exc:
        fmal_index.load_index(path, n=n, dim=dim)
    assert needle in str(exc.value) and str(path) in str(exc.value) and "--repair" in str(exc.value)


def test_pool_index_is_exact_inner_product(tiny_pool):
    index_dir, name, _ = tiny_pool
    pool = fmal.open_pool(name, index_dir)
    X = np.asarray(pool.embeddings)
    assert pool.manifest.index.type == "flat" and pool.manifest.index.metric == "inner_product"
    sims, ids = fmal_index.knn(pool.index, X[:20], 5)
    brute = X[:20] @ X.T
    np.testing.assert_allclose(sims, -np.sort(-brute, axis=1)[:, :5], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(brute, ids, 1), sims, rtol=1e-4, atol=1e-5)
