"""Pools larger than the RAM cap: read block by block (fmal._matrix.BlockMatrix), never whole, with
the same results as a memory-mapped read."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import clustered, vector_pool

import fmal
from fmal._matrix import RAM_CAP_ENV, BlockMatrix, ram_cap
from fmal.exceptions import InvalidInputError
from fmal.seed import select


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_block_matrix_reads_like_an_array(tmp_path: Path, dtype) -> None:
    rng = np.random.default_rng(0)
    A = rng.normal(size=(1000, 8)).astype(dtype)
    np.save(tmp_path / "a.npy", A)
    B, R = BlockMatrix(tmp_path / "a.npy"), A.astype(np.float32)
    assert B.shape == (1000, 8) and B.dtype == np.float32 and len(B) == 1000
    assert np.array_equal(B[3], R[3]) and np.array_equal(B[-1], R[-1])
    assert np.array_equal(B[10:20], R[10:20]) and np.array_equal(B[990:2000], R[990:]) and B[5:5].shape == (0, 8)
    assert np.array_equal(B[::7], R[::7])
    rows = np.array([5, 1, 999, 5])
    assert np.array_equal(B[rows], R[rows]) and np.array_equal(B[[1, 2]], R[[1, 2]])
    mask = rng.random(1000) < 0.3
    assert np.array_equal(B[mask], R[mask]) and np.array_equal(B[rows, 2:4], R[rows, 2:4])
    assert np.array_equal(np.asarray(B), R)
    with pytest.raises(IndexError):
        B[1000]


def test_ram_cap_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(RAM_CAP_ENV, "512M")
    assert ram_cap() == 512 * 2**20
    monkeypatch.setenv(RAM_CAP_ENV, "lots")
    with pytest.raises(InvalidInputError, match=RAM_CAP_ENV):
        ram_cap()


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """300k rows x 32 dims (37 MB of float32): many read blocks (65,536 rows each)."""
    X, _ = clustered(n=300_000, d=32, k=50, spread=0.2, seed=5)
    d = tmp_path_factory.mktemp("big") / "indexes"
    vector_pool(d, "big", X)
    return d, X


def test_a_pool_over_the_ram_cap_is_seeded_and_queried_in_blocks(big, monkeypatch) -> None:
    index_dir, X = big
    plain = fmal.seed("big", 40, index_dir=index_dir, output=index_dir / "plain.csv")
    assert "read_in_blocks" not in plain.info  # 37 MB: under the default cap
    monkeypatch.setenv(RAM_CAP_ENV, "8M")  # under the 37 MB matrix
    pool = fmal.open_pool("big", index_dir)
    assert pool.read_in_blocks and isinstance(pool.embeddings, BlockMatrix)
    reads: list[int] = []
    for name in ("_slice", "_gather"):
        orig = getattr(BlockMatrix, name)

        def spy(self, *a, _orig=orig):
            out = _orig(self, *a)
            reads.append(len(out))
            return out

        monkeypatch.setattr(BlockMatrix, name, spy)
    # the strategy and its coverage report hold far less than the matrix at any time
    tracemalloc.start()
    res = select("auto", pool.embeddings, 40, random_state=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert reads and max(reads) < X.shape[0] / 4  # never the whole matrix in one read
    assert peak < 0.75 * X.nbytes, f"peak {peak / 2**20:.1f} MiB vs matrix {X.nbytes / 2**20:.1f} MiB"
    mapped = select("auto", np.load(pool.path / "embeddings.npy", mmap_mode="r"), 40, random_state=1)
    assert res.indices.tolist() == mapped.indices.tolist()  # the same picks as from the memory-mapped read
    blocked = fmal.seed("big", 40, index_dir=index_dir, output=index_dir / "blocked.csv", random_state=3)
    assert "block by block" in blocked.info["read_in_blocks"]  # and the API says so
    # with the pool's IVF index: two-level k-means over its lists, the report on a sample of rows
    assert "IVF lists" in blocked.info["two_level"] and "random rows" in blocked.info["coverage_sample"]
    assert blocked.info["rows_read"] <= 40 * 500
    exact = fmal.seed("big", 40, index_dir=index_dir, output=index_dir / "exact.csv", random_state=3, exact=True)
    assert "two_level" not in exact.info and "coverage_sample" not in exact.info
    assert exact.info["clusters_represented"] == "40 of 40"
    labels = index_dir / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{i},{'ab'[k % 2]}\n" for k, i in enumerate(plain.ids)), encoding="utf-8")
    q = fmal.query("big", labels, 20, index_dir=index_dir, candidates="knn:20", output=index_dir / "q.csv")
    assert len(q.ids) == 20 and "read_in_blocks" in q.info


def test_format_bytes() -> None:
    from fmal._matrix import format_bytes

    assert format_bytes(100) == "100 B" and format_bytes(1536) == "1.5 KiB"
    assert format_bytes(8 * 2**20) == "8.0 MiB" and format_bytes(15_360_000_000) == "14.3 GiB"


def test_two_level_kmeans_over_ivf_lists_finds_the_clusters(tmp_path: Path) -> None:
    """The two-level path (IVF lists, then k-means of their centroids weighted by size) recovers
    well separated clusters as the exact k-means does, reading no embedding for the assignment."""
    import faiss
    from sklearn.metrics import adjusted_rand_score

    from fmal.seed.clustering import ivf_lists, kmeans, pool_kmeans

    X, y = clustered(n=20_000, d=16, k=8, spread=0.05, seed=2)
    index = faiss.index_factory(16, "IVF128,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(X)
    index.add(X)
    C1, lists = ivf_lists(index, X.shape[0])
    assert C1.shape == (128, 16) and lists.min() >= 0 and lists.max() < 128
    assert ivf_lists(faiss.IndexFlatIP(16), 10) is None and ivf_lists(index, 5) is None
    np.save(tmp_path / "X.npy", X)
    B = BlockMatrix(tmp_path / "X.npy")
    two = pool_kmeans(B, 8, index=index, random_state=0)
    assert two.two_level and np.isnan(two.sim).all()
    exact = kmeans(X, 8, random_state=0)[1]
    assert adjusted_rand_score(y, two.assign) > 0.9 and adjusted_rand_score(y, exact) > 0.9
    assert not pool_kmeans(X, 8, index=index).two_level  # an array in RAM: exact
    assert not pool_kmeans(B, 100, index=index).two_level  # too few lists per cluster: exact


def test_block_matrix_reads_through_iter_blocks_and_take(tmp_path: Path, monkeypatch) -> None:
    from fmal._matrix import in_blocks, iter_blocks, take

    A = np.random.default_rng(1).normal(size=(1000, 8)).astype(np.float16)
    np.save(tmp_path / "a.npy", A)
    B, R = BlockMatrix(tmp_path / "a.npy"), A.astype(np.float32)
    for X in (B, R):  # the module functions take a BlockMatrix or an array alike
        blocks = list(iter_blocks(X, 300))
        assert [s for s, _ in blocks] == [0, 300, 600, 900] and all(b.dtype == np.float32 for _, b in blocks)
        assert np.array_equal(np.concatenate([b for _, b in blocks]), R)
        assert [s for s, _ in iter_blocks(X, 300, start=250, stop=700)] == [250, 550]
        assert np.array_equal(np.concatenate([b for _, b in iter_blocks(X, 300, start=250, stop=700)]), R[250:700])
        assert np.array_equal(take(X, [7, 3, 7, -1]), R[[7, 3, 7, -1]])
    assert in_blocks(B) and not in_blocks(R) and not in_blocks(np.load(tmp_path / "a.npy", mmap_mode="r"))
    mask = np.zeros(1000, dtype=bool)
    mask[[2, 500]] = True
    assert np.array_equal(B.take(mask), R[mask])
    monkeypatch.setenv(RAM_CAP_ENV, "16K")  # under the 31 KiB float32 matrix
    with pytest.raises(InvalidInputError, match=r"a\.npy: 31\.2 KiB of float32 embeddings exceed the RAM cap \(16\.0 KiB, \$FMAL_MAX_RAM\)"):
        np.asarray(B)
    assert np.array_equal(B[10:20], R[10:20]) and np.array_equal(B.take([999]), R[[999]])  # explicit reads still work
