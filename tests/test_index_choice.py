"""Index choice from pool size and memory budget, build with measured recall, load with params."""

import numpy as np
import pytest

from fmal import index as fi
from fmal.exceptions import InvalidInputError

from conftest import clustered


def test_auto_picks_flat_for_a_small_pool():
    c = fi.choose_index(5_000, 384, "auto", fi.parse_memory("4G"))
    assert c.kind == "flat" and c.factory == "Flat"


def test_auto_picks_ivfpq_for_a_large_pool_under_a_small_budget():
    c = fi.choose_index(50_000_000, 384, "auto", fi.parse_memory("4G"))
    assert c.kind == "ivfpq" and c.factory.startswith("IVF") and ",PQ" in c.factory
    assert c.bytes_per_vector * 50_000_000 <= fi.parse_memory("4G")


def test_auto_picks_scalar_codes_when_full_vectors_do_not_fit_but_8_bit_codes_do():
    c = fi.choose_index(10_000_000, 384, "auto", fi.parse_memory("4G"))
    assert c.kind == "ivfsq" and c.factory == f"IVF{fi.MAX_NLIST},SQ8"
    assert c.bytes_per_vector * 10_000_000 <= fi.parse_memory("4G")


def test_nlist_grows_as_sqrt_n_up_to_a_cap():
    assert fi.choose_index(1_000_000, 384, "ivfflat").nlist == 1024
    assert fi.choose_index(60_000, 384, "ivfflat").nlist == 256
    assert fi.choose_index(100_000_000, 384, "ivfpq").nlist == fi.MAX_NLIST


def test_recall_truth_is_computed_once_for_several_settings():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    index, info = fi.build(X, "ivfsq", max_memory=fi.parse_memory("1G"))
    assert info["type"] == "ivfsq" and info["factory"].endswith(",SQ8")
    # 8-bit codes of 16-d vectors: the target is reached (nprobe raised as needed), with no warning
    assert fi.RECALL_TARGET <= info["recall_at_10"] <= 1.0 and info["warnings"] == []
    truth = fi.recall_truth(X, random_state=3)
    assert fi.recall_at_k(index, X, truth=truth) == fi.recall_at_k(index, X, random_state=3)


def test_recall_is_measured_on_queries_held_out_of_their_own_answer():
    X, _ = clustered(n=2000, d=16, k=10, spread=0.3)
    q, near, rows = fi.recall_truth(X, k=10, n_queries=50, random_state=0)
    assert near.shape == (50, 10) and not (near == rows[:, None]).any()  # a query is never its own neighbour
    assert np.array_equal(q, X[rows])
    sims = X[rows] @ X.T
    sims[np.arange(50), rows] = -np.inf
    assert np.array_equal(np.sort(near, axis=1), np.sort(np.argsort(-sims, axis=1)[:, :10], axis=1))
    # an exact index scores 1.0 without the free self-match (with it, a broken index would get 0.1)
    flat = fi.build_index(X, "flat")
    assert fi.recall_at_k(flat, X, truth=(q, near, rows)) == 1.0

    class SelfOnly:  # returns the query's own row and then nothing useful
        ntotal = X.shape[0]

        def search(self, queries, k):
            ids = np.tile(np.arange(k), (len(queries), 1))
            ids[:, 0] = rows
            return np.zeros_like(ids, dtype=np.float32), ids

    got = fi.recall_at_k(SelfOnly(), X, truth=(q, near, rows))
    assert got < 0.1  # the self hit earns nothing


def test_recall_below_target_warns_and_is_recorded(monkeypatch, caplog):
    X, _ = clustered(n=3000, d=16, k=10, spread=0.3)
    import fmal.recall

    monkeypatch.setattr(fmal.recall, "RECALL_TARGET", 1.01)  # unreachable: every nprobe is tried
    with caplog.at_level("WARNING", logger="fmal.recall"):
        _, info = fi.build(X, "ivfflat")
    assert info["search_params"] == {"nprobe": min(max(fi._NPROBES), info["nlist"])}  # the last one tried
    assert len(info["warnings"]) == 1 and "under the 1.01 target" in info["warnings"][0]
    assert any("under the 1.01 target" in r.getMessage() for r in caplog.records)


def test_pq_over_the_budget_warns_and_is_recorded(caplog):
    c = fi.choose_index(100_000_000, 384, "auto", fi.parse_memory("1G"))  # 10.7 B a vector: under PQ4's 12
    assert c.factory.endswith(",PQ4") and c.warning and "over --max-index-memory" in c.warning
    assert fi.choose_index(50_000_000, 384, "auto", fi.parse_memory("4G")).warning is None
    X, _ = clustered(n=3000, d=16, k=10, spread=0.3)
    with caplog.at_level("WARNING", logger="fmal.index"):
        _, info = fi.build(X, "ivfpq", max_memory=3000 * 10)  # 10 B a vector: even PQ4 does not fit
    assert info["pq_m"] == 4 and any("over --max-index-memory" in w for w in info["warnings"])
    assert any("over --max-index-memory" in r.getMessage() for r in caplog.records)


def test_auto_picks_ivfflat_when_full_vectors_fit_but_pool_is_large():
    c = fi.choose_index(1_000_000, 384, "auto", fi.parse_memory("8G"))
    assert c.kind == "ivfflat"


@pytest.mark.parametrize("text,expected", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5g", int(1.5 * 2**30)), ("100", 100)])
def test_parse_memory(text, expected):
    assert fi.parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1G", "0"])
def test_parse_memory_rejects_garbage(bad):
    with pytest.raises(InvalidInputError, match="max_index_memory"):
        fi.parse_memory(bad)


def test_unknown_index_kind_is_a_clear_error():
    with pytest.raises(InvalidInputError, match=r"must be one of \[auto, flat"):
        fi.choose_index(10, 8, "annoy")


def test_ivf_index_is_trained_measured_and_reloaded(tmp_path):
    X, _ = clustered(n=4000, d=32, k=20, spread=0.2)
    index, info = fi.build(X, "ivfflat")
    assert info["type"] == "ivfflat" and info["ntotal"] == 4000
    assert info["recall_at_10"] >= 0.9 and "nprobe" in info["search_params"]
    fi.save_index(index, tmp_path / "i.faiss")
    again = fi.load_index(tmp_path / "i.faiss", n=4000, dim=32, search_params=info["search_params"])
    assert fi.recall_at_k(again, X) == pytest.approx(info["recall_at_10"], abs=1e-6)


def test_exact_knn_streams_blocks():
    X, _ = clustered(n=1000, d=16, k=5)
    got = fi.exact_knn(X, X[:7], 5, block=128)
    sims = X[:7] @ X.T
    assert np.array_equal(np.sort(got, axis=1), np.sort(np.argsort(-sims, axis=1)[:, :5], axis=1))


def test_a_second_concurrent_build_of_a_pool_fails_at_once(tmp_path):
    import subprocess
    import sys

    from fmal.pool import build_pool
    from fmal.exceptions import PoolBusyError

    path = tmp_path / "p"
    path.mkdir()
    # another process holds the pool's write lock (an embed, or a seed/query writing the pool)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from fmal._lock import pool_lock\n"
         f"with pool_lock({str(path)!r}):\n    print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PoolBusyError, match="another fmal process is writing this pool"):
            build_pool(None, None, path)  # type: ignore[arg-type]
    finally:
        holder.communicate("")
    assert [f.name for f in path.iterdir() if f.name != ".lock"] == []


@pytest.mark.parametrize("kind", ["ivfflat", "ivfsq"])
def test_probed_lists_bound_the_recall_and_equal_it_with_flat_codes(kind):
    # tune() reads recall off the probed lists instead of searching (ivfflat) or to skip hopeless
    # nprobes (ivfsq): it must agree with a real search at every setting
    import faiss

    X, _ = clustered(n=6000, d=24, k=30, spread=0.3)
    index, info = fi.build(X, kind)
    truth = fi.recall_truth(X, random_state=1)
    bound = fi.probed_recall(index, truth, [1, 2, 4, 8, 16, 32, 64])
    for p, b in bound.items():
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", p)
        got = fi.recall_at_k(index, X, truth=truth)
        assert got == pytest.approx(b, abs=1e-9) if kind == "ivfflat" else got <= b + 1e-9
    assert fi.probed_recall(fi.build_index(X[:500], "flat"), truth, [1]) == {}


def test_saved_index_reports_the_sha256_of_its_file(tmp_path):
    from fmal.pool.check import sha256_file

    X, _ = clustered(n=3000, d=16, k=10)
    index = fi.build_index(X, "ivfflat")
    assert fi.save_index(index, tmp_path / "i.faiss") == sha256_file(tmp_path / "i.faiss")


def test_neighbours_scored_in_the_assignment_product_are_the_exact_ones():
    # build() takes the recall queries' exact neighbours from the add pass (no second pass over X)
    import faiss

    X, _ = clustered(n=5000, d=24, k=30, spread=0.3)
    index = faiss.index_factory(24, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(X[:3000])
    q = X[[3, 999, 4321]]
    got = fi._add_ivf(index, X, 512, q, 11)
    assert index.ntotal == 5000
    assert (got == fi.exact_knn(X, q, 11)).all()
