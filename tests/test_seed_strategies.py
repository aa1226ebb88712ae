"""Every registered seed strategy on small pools: determinism, budget, no duplicates, extension of
a labeled set, degenerate pools, errors; plus ProbCover's delta and the coverage report."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clustered

from fmal.exceptions import InvalidInputError, PoolExhaustedError
from fmal.seed import SEED_STRATEGIES, diagnose, select
from fmal.seed.coverage import probcover_delta
from fmal.seed.geometry import BallGraph, ball_graph, check_delta, sample_rows

ALL = SEED_STRATEGIES.names()
#: strategies that treat labeled rows as covering their region (random only excludes them)
COVERING = [s for s in ALL if s != "random"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small problems: one BLAS / OpenMP thread is faster, and far faster on a busy machine
    (threads spin-waiting for each other); restored afterwards."""
    import faiss
    from threadpoolctl import threadpool_limits

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1):
        yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(n=600, d=16, k=6, seed=1)


def test_expected_strategies_registered() -> None:
    assert {"random", "kmeans", "typiclust", "kcenter", "probcover", "auto"} <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_budget_no_duplicates(name: str, data) -> None:
    X, _ = data
    a = SEED_STRATEGIES.call(name, X, 12, random_state=3)
    b = SEED_STRATEGIES.call(name, X, 12, random_state=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices.size == 12 and np.unique(a.indices).size == 12
    assert a.indices.min() >= 0 and a.indices.max() < X.shape[0]
    assert a.scores.shape == (12,) and a.clusters.shape == (12,)


@pytest.mark.parametrize("name", ALL)
def test_labeled_rows_never_picked(name: str, data) -> None:
    X, _ = data
    labeled = np.arange(0, 600, 7)
    res = SEED_STRATEGIES.call(name, X, 20, labeled=labeled, random_state=0)
    assert not np.isin(res.indices, labeled).any()
    assert np.unique(res.indices).size == 20


@pytest.mark.parametrize("name", COVERING)
def test_labeled_clusters_count_as_covered(name: str, data) -> None:
    """Labeled rows in 3 of 6 clusters: 3 more picks go to the 3 other clusters."""
    X, y = data
    labeled = np.asarray([np.nonzero(y == c)[0][0] for c in (0, 1, 2)])
    params = {"delta": 0.6} if name == "probcover" else {}  # a ball spans a cluster, not two
    for seed in range(3):
        res = SEED_STRATEGIES.call(name, X, 3, labeled=labeled, random_state=seed, **params)
        assert sorted(y[res.indices].tolist()) == [3, 4, 5], (name, seed, y[res.indices])


@pytest.mark.parametrize("name", ["kmeans", "typiclust", "auto"])
def test_one_pick_per_cluster(name: str) -> None:
    for seed in range(4):
        X, y = clustered(n=600, d=16, k=6, seed=seed)
        res = SEED_STRATEGIES.call(name, X, 6, random_state=seed)
        assert sorted(y[res.indices].tolist()) == [0, 1, 2, 3, 4, 5], (seed, y[res.indices])


def test_kcenter_and_probcover_spread_over_clusters(data) -> None:
    X, y = data
    assert np.unique(y[SEED_STRATEGIES.call("kcenter", X, 6).indices]).size == 6
    assert np.unique(y[SEED_STRATEGIES.call("probcover", X, 6, delta=0.6).indices]).size == 6


@pytest.mark.parametrize("name", ALL)
def test_fewer_distinct_points_than_budget(name: str) -> None:
    X, _ = clustered(n=5, d=8, k=5, seed=0)
    X = np.repeat(X, 4, axis=0)  # 20 rows, 5 distinct
    # ProbCover with a delta that spans the distinct points would rightly cover two with one ball:
    # below their smallest distance, each ball holds one point's copies
    gap = min(np.linalg.norm(X[i] - X[j]) for i in range(0, 20, 4) for j in range(i + 4, 20, 4))
    params = {"delta": float(gap) / 2} if name == "probcover" else {}
    res = SEED_STRATEGIES.call(name, X, 10, random_state=0, **params)
    assert np.unique(res.indices).size == 10
    # the first picks hit every distinct point before any repeats (random excepted)
    if name != "random":
        assert np.unique(res.indices[:5] // 4).size == 5, (name, res.indices)


@pytest.mark.parametrize("name", ALL)
def test_all_identical_vectors(name: str) -> None:
    X = np.tile(clustered(n=1, d=8, k=1)[0], (30, 1))
    res = select(name, X, 10, random_state=0)
    assert np.unique(res.indices).size == 10
    assert res.info["pool_within_delta"] == 1.0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("budget", [0, -1, 2.5, True, "3"])
def test_bad_budget(name: str, budget, data) -> None:
    X, _ = data
    with pytest.raises(InvalidInputError, match="budget"):
        SEED_STRATEGIES.call(name, X, budget)


@pytest.mark.parametrize("name", ALL)
def test_budget_larger_than_unlabeled(name: str, data) -> None:
    X, _ = data
    with pytest.raises(PoolExhaustedError, match="budget"):
        SEED_STRATEGIES.call(name, X, 595, labeled=np.arange(10))


@pytest.mark.parametrize("delta", [0, -0.1, 2.01, float("nan"), float("inf"), "0.5", True])
def test_bad_delta(delta, data) -> None:
    X, _ = data
    with pytest.raises(InvalidInputError, match="delta must"):
        SEED_STRATEGIES.call("probcover", X, 5, delta=delta)
    with pytest.raises(InvalidInputError, match="delta must"):
        diagnose(X, np.arange(5), delta=delta)


def test_check_delta_accepts_its_range() -> None:
    assert check_delta(2) == 2.0 and check_delta(0.25) == 0.25


def test_bad_labeled_indices(data) -> None:
    X, _ = data
    with pytest.raises(InvalidInputError, match="labeled"):
        SEED_STRATEGIES.call("kcenter", X, 3, labeled=[600])


def test_probcover_auto_delta_is_pure_and_reported(data) -> None:
    X, _ = data
    res = SEED_STRATEGIES.call("probcover", X, 6, n_classes=6, random_state=0)
    assert 0 < res.delta <= 2 and res.info["purity"] >= 0.95
    assert res.info["delta_rule"].startswith("purity>=0.95")
    # 6 pseudo-classes on 6 clusters: a delta that spans a cluster, so 6 balls cover most rows
    assert res.info["sample_coverage"] > 0.8
    assert probcover_delta(X, n_classes=6, random_state=0)["delta"] == pytest.approx(res.delta)


def test_probcover_samples_large_pools_and_says_so(data) -> None:
    X, _ = data
    res = SEED_STRATEGIES.call("probcover", X, 5, max_rows=200, labeled=[1, 2, 3], random_state=0)
    assert res.info["graph_rows"] == 200 and "sample" in res.info["note"]
    assert np.unique(res.indices).size == 5


def test_probcover_fills_at_random_when_all_covered(data) -> None:
    X, _ = data
    res = SEED_STRATEGIES.call("probcover", X, 10, delta=2.0)
    assert res.info["filled_at_random"] == 9 and np.unique(res.indices).size == 10


def test_ball_graph_matches_brute_force(data) -> None:
    X, _ = data
    Xs = np.ascontiguousarray(X[:150])
    g = ball_graph(Xs, 0.3, query_block=64)
    D = np.sqrt(np.maximum(2 - 2 * Xs @ Xs.T, 0))
    for i in range(150):
        assert set(g.nbrs[g.lims[i] : g.lims[i + 1]].tolist()) == set(np.nonzero(D[i] <= 0.3)[0].tolist())
    rows = np.asarray([3, 7])
    assert sorted(g.neighbours_of(rows).tolist()) == sorted(
        np.concatenate([g.nbrs[g.lims[r] : g.lims[r + 1]] for r in rows]).tolist())
    assert BallGraph(np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)).n_edges == 0


def test_sample_rows_keeps_labeled() -> None:
    rng = np.random.default_rng(0)
    rows = sample_rows(10_000, 100, rng, keep=np.asarray([5, 9999]))
    assert rows.size == 100 and {5, 9999} <= set(rows.tolist()) and np.all(np.diff(rows) > 0)
    assert sample_rows(50, 100, rng).size == 50


def test_diagnostics_report(data) -> None:
    X, y = data
    res = select("kcenter", X, 6, random_state=0)
    info = res.info
    assert info["clusters_represented"] == "6 of 6" and info["largest_uncovered_cluster"] == 0
    assert 0 <= info["pool_within_delta"] <= 1 and info["coverage_delta"] > 0
    # a selection inside one cluster leaves the others uncovered, and says how big they are
    one = np.nonzero(y == 0)[0][:6]
    bad = diagnose(X, one, delta=0.6, random_state=0)
    assert bad["largest_uncovered_cluster"] > 0 and bad["pool_within_delta"] < 0.3
    assert bad["pool_in_uncovered_clusters"] > 0.5
    # labeled rows count as chosen
    full = diagnose(X, one, labeled=[np.nonzero(y == c)[0][0] for c in range(1, 6)], delta=0.6, random_state=0)
    assert full["pool_within_delta"] > 0.9


def test_auto_rules(data) -> None:
    X, y = data
    for rule in ("mix", "strata", "hedge"):
        res = SEED_STRATEGIES.call("auto", X, 6, rule=rule, random_state=0)
        assert np.unique(res.indices).size == 6 and res.info["rule"] == rule
    with pytest.raises(InvalidInputError, match="rule must be one of"):
        SEED_STRATEGIES.call("auto", X, 6, rule="magic")


def test_auto_mix_alternates_typical_and_random_picks() -> None:
    """rule="mix": the 1st, 3rd, ... picks are TypiClust's (the most typical row of the same
    cluster), the 2nd, 4th, ... a random row of theirs, so not TypiClust's."""
    X, _ = clustered(n=1200, d=16, k=12, spread=0.5, seed=3)  # clusters of ~100 rows: typicality on every row
    typ = SEED_STRATEGIES.call("typiclust", X, 10, random_state=4)
    mix = SEED_STRATEGIES.call("auto", X, 10, random_state=4)  # default rule: mix
    assert mix.info["rule"] == "mix"
    assert np.array_equal(mix.clusters, typ.clusters)  # the same k-means, the same cluster order
    assert np.array_equal(mix.indices[0::2], typ.indices[0::2])
    assert not np.isin(mix.indices[1::2], typ.indices).any()
    if mix.assign is not None:  # every pick is a member of the cluster it stands for
        assert np.array_equal(np.asarray(mix.assign)[mix.indices], mix.clusters)
    strata = SEED_STRATEGIES.call("auto", X, 10, rule="strata", random_state=4)
    assert not np.array_equal(strata.indices[0::2], typ.indices[0::2])  # strata: random everywhere


def _kcenter_brute(X: np.ndarray, budget: int, labeled: np.ndarray) -> list[int]:
    """Textbook greedy k-center: a full distance update per pick (what the lazy version must equal)."""
    max_sim = np.full(X.shape[0], -np.inf, dtype=np.float32)
    picks: list[int] = []
    for c in labeled:
        max_sim = np.maximum(max_sim, X @ X[c])
    if not labeled.size:
        m = X.astype(np.float64).sum(axis=0)
        picks.append(int(np.argmax(X @ (m / np.linalg.norm(m)).astype(np.float32))))
        max_sim = np.maximum(max_sim, X @ X[picks[0]])
    max_sim[labeled] = np.inf
    max_sim[picks] = np.inf
    while len(picks) < budget:
        i = int(np.argmin(max_sim))
        picks.append(i)
        max_sim = np.maximum(max_sim, X @ X[i])
        max_sim[i] = np.inf
    return picks


@pytest.mark.parametrize("with_labels", [False, True])
def test_kcenter_lazy_steps_equal_the_textbook_greedy(with_labels: bool) -> None:
    """Large enough (20k rows) that most steps take the lazy path rather than a full pass."""
    X, _ = clustered(n=20000, d=16, k=40, seed=3)
    labeled = np.arange(0, 20000, 1999) if with_labels else np.zeros(0, dtype=np.int64)
    res = SEED_STRATEGIES.call("kcenter", X, 60, labeled=labeled)
    assert res.indices.tolist() == _kcenter_brute(X, 60, labeled)


# ----------------------------------------------------------------------------- ProbCover: n_classes and the delta rule


def test_probcover_n_classes_is_deterministic_and_reported(data) -> None:
    X, _ = data
    fn = SEED_STRATEGIES.get("probcover")
    a = fn(X, 8, n_classes=3, random_state=5)
    b = fn(X, 8, n_classes=3, random_state=5)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.delta == b.delta and "on 3 k-means pseudo-classes" in a.info["delta_rule"]
    assert "on 7 k-means pseudo-classes" in fn(X, 8, n_classes=7, random_state=5).info["delta_rule"]


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, "4", True])
def test_bad_n_classes_is_a_clear_error(bad, data) -> None:
    X, _ = data
    with pytest.raises(InvalidInputError, match=r"n_classes must be an integer >= 2"):
        SEED_STRATEGIES.call("probcover", X, 5, n_classes=bad)
    with pytest.raises(InvalidInputError, match=r"n_classes must be an integer >= 2"):
        probcover_delta(X, n_classes=bad)


def test_n_classes_beyond_the_rows_is_a_clear_error(data) -> None:
    X, _ = data
    # not given: 10, or as many as there are rows
    assert "on 10 k-means" in SEED_STRATEGIES.call("probcover", X, 5).info["delta_rule"]
    assert "on 6 k-means" in SEED_STRATEGIES.call("probcover", X[:6], 2).info["delta_rule"]
    with pytest.raises(InvalidInputError, match=r"n_classes must be <= the number of rows clustered \(50\)"):
        SEED_STRATEGIES.call("probcover", X[:50], 5, n_classes=51)


def test_midpoint_rule_raises_the_purity_delta_never_lowers_it(data) -> None:
    X, _ = data
    fn = SEED_STRATEGIES.get("probcover")
    pure = fn(X, 10, delta_rule="purity", random_state=2)
    mid = fn(X, 10, random_state=2)  # default: midpoint
    assert pure.delta == pytest.approx(probcover_delta(X, random_state=2)["delta"])
    assert mid.info["purity_delta"] == pytest.approx(pure.delta, abs=1e-4)
    # on these data the purity delta is under the tiling radius: the rule raises it, to the midpoint
    assert mid.info["tiling_radius"] > pure.delta and mid.delta > pure.delta
    assert mid.delta == pytest.approx(0.5 * (mid.info["purity_delta"] + mid.info["tiling_radius"]), abs=1e-3)
    d = probcover_delta(X, budget=10, random_state=2)
    assert d["delta"] == pytest.approx(mid.delta, abs=1e-6)
    with pytest.raises(InvalidInputError, match="delta_rule must be one of midpoint, purity"):
        fn(X, 5, delta_rule="paper")


def test_tiling_radius_shrinks_as_the_budget_grows(data) -> None:
    from fmal.seed.geometry import tiling_radius

    X, _ = data
    r = [tiling_radius(X, b, np.random.default_rng(0)) for b in (2, 20, 200)]
    assert 0 < r[2] <= r[1] <= r[0] <= 2


def test_cli_n_classes(tiny_pool, cli, cli_error) -> None:
    index_dir, name, _ = tiny_pool
    res = cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover", "--n-classes", 3)
    assert res.exit_code == 0, res.output
    assert "6 rows picked by probcover" in res.output and "on 3 k-means pseudo-classes" in res.output
    for bad in ("1", "0", "-2"):
        res = cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover", "--n-classes", bad)
        cli_error(res, "--n-classes must be an integer >= 2")  # the API's n_classes, shown as the CLI's flag
    res = cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover", "--n-classes", 500)
    cli_error(res, "--n-classes must be <= the number of rows clustered (200)")
    res = cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "kmeans", "--n-classes", 3)
    cli_error(res, "seed strategy 'kmeans' has no parameter '--n-classes'", "its parameters: none")
    res = cli("seed", "--pool", name, "--index-dir", index_dir, "--budget", 6, "--strategy", "probcover", "--n-classes", "abc")
    assert res.exit_code == 2 and "--n-classes" in res.output
    assert "--n-classes" in cli("seed", "--help").output
