"""Query strategies on small constructed cases: pure functions over a QueryContext."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from conftest import clustered

from fmal.exceptions import InvalidInputError
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext, cohen_kappa, parse_candidates, stop_sample, stop_signal
from fmal.query.candidates import knn_candidates
from fmal.query.diverse import dropout_flips, gradient_factors
from fmal.query.stopping import advice

ALL = ("entropy", "margin", "least-confidence", "random", "cluster-margin", "badge", "typical-margin", "dropquery", "auto",
       "adaptive")


def _ctx(X, labeled, y, seed=0, with_index=False):
    probe = LinearProbe(C=10.0, random_state=seed).fit(X[labeled], y[labeled])
    mask = np.ones(len(X), dtype=bool)
    mask[labeled] = False
    cand = np.nonzero(mask)[0]
    index = None
    if with_index:
        index = faiss.IndexFlatIP(X.shape[1])
        index.add(X)
    return QueryContext(X=X, candidates=cand, proba=probe.predict_proba(X[cand]), classes=probe.classes_,
                        labeled=labeled, index=index, probe=probe, random_state=seed)


def _two_blobs_with_boundary_point():
    """Two labeled groups at x=-1 and x=+1; unlabeled rows spread along x; row 0 sits on x=0."""
    rng = np.random.default_rng(0)
    xs = np.concatenate([[0.0], rng.uniform(-1, 1, 199)])
    xs[1:][np.abs(xs[1:]) < 0.05] += 0.2
    X = np.column_stack([xs, 0.05 * rng.normal(size=200), np.ones(200)]).astype(np.float32)
    lab = np.concatenate([np.full(5, -1.0), np.full(5, 1.0)])
    XL = np.column_stack([lab, 0.05 * rng.normal(size=10), np.ones(10)]).astype(np.float32)
    X = np.vstack([X, XL])
    y = np.array(["?"] * 200 + ["neg"] * 5 + ["pos"] * 5)
    return X, np.arange(200, 210), y


@pytest.mark.parametrize("name", ["margin", "entropy", "least-confidence"])
def test_boundary_point_is_picked_first(name):
    X, labeled, y = _two_blobs_with_boundary_point()
    res = QUERY_STRATEGIES.get(name)(_ctx(X, labeled, y), 5)
    assert res.indices[0] == 0


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_returns_budget_distinct_unlabeled_rows_and_is_seeded(name):
    X, yk = clustered(n=400, d=16, k=4, spread=0.3)
    y = np.asarray([f"c{v}" for v in yk])
    labeled = np.arange(0, 40)
    ctx = _ctx(X, labeled, y, with_index=True)
    res = QUERY_STRATEGIES.get(name)(ctx, 12)
    assert res.indices.size == 12 == np.unique(res.indices).size and res.scores.size == 12
    assert not np.isin(res.indices, labeled).any() and np.isin(res.indices, ctx.candidates).all()
    again = QUERY_STRATEGIES.get(name)(_ctx(X, labeled, y, with_index=True), 12)
    np.testing.assert_array_equal(res.indices, again.indices)


def _duplicates_ctx() -> QueryContext:
    """30 near-copies of one row, all on the decision boundary (p = 0.5), and 70 spread-out rows
    that are a little less uncertain: the trap plain top-k uncertainty falls into."""
    rng = np.random.default_rng(1)
    d = 8
    dups = np.ones((30, d), np.float32) + 1e-4 * rng.normal(size=(30, d)).astype(np.float32)
    X = np.vstack([dups, rng.normal(size=(70, d)).astype(np.float32)])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    p1 = np.concatenate([np.full(30, 0.5), rng.uniform(0.3, 0.45, 70)])
    return QueryContext(X=X, candidates=np.arange(100), proba=np.column_stack([1 - p1, p1]),
                        classes=np.array(["neg", "pos"]), labeled=np.zeros(0, dtype=np.int64), random_state=0)


@pytest.mark.parametrize("name", ["cluster-margin", "badge"])
def test_diverse_batch_does_not_pick_near_duplicates(name):
    ctx = _duplicates_ctx()
    plain = QUERY_STRATEGIES.get("margin")(ctx, 10)
    diverse = QUERY_STRATEGIES.get(name)(ctx, 10)
    assert np.isin(plain.indices, np.arange(30)).all()  # the trap is real: margin takes only copies
    assert np.isin(diverse.indices, np.arange(30)).sum() <= 2


def test_typical_margin_prefers_dense_uncertain_rows_over_outliers():
    rng = np.random.default_rng(2)
    d = 8
    dense = np.column_stack([np.zeros(80), 0.05 * rng.normal(size=(80, d - 1))]).astype(np.float32)
    dense[:, 1] += 1.0
    outliers = np.column_stack([np.zeros(10), rng.normal(size=(10, d - 1)) * 3]).astype(np.float32)
    labeled_X = np.column_stack([np.repeat([-1.0, 1.0], 10), 0.05 * rng.normal(size=(20, d - 1))]).astype(np.float32)
    labeled_X[:, 1] += 1.0
    X = np.vstack([dense, outliers, labeled_X])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.array(["?"] * 90 + ["neg"] * 10 + ["pos"] * 10)
    res = QUERY_STRATEGIES.get("typical-margin")(_ctx(X, np.arange(90, 110), y), 10)
    assert not np.isin(res.indices, np.arange(80, 90)).any()


def test_dropquery_picks_unstable_rows_spread_over_the_boundary():
    """Rows along a in [-1, 1] with a probe splitting at a = 0: dropout flips the class of rows
    near the boundary, hardly ever of rows far from it; the picks are one per cluster of those rows."""
    rng = np.random.default_rng(3)
    d = 64
    u, v = np.linalg.qr(rng.normal(size=(d, 2)))[0].T * np.sqrt(d)  # dense directions: dropout keeps a share of each
    a, b = rng.uniform(-1, 1, 1000), rng.uniform(-1, 1, 1000)  # b: a direction the label ignores, to spread over
    X = (np.outer(a, u) + np.outer(b, v) + 0.3 * rng.normal(size=(1000, d))).astype(np.float32)
    y = np.where(a > 0, "pos", "neg")
    labeled = np.concatenate([np.nonzero(a < -0.8)[0][:10], np.nonzero(a > 0.8)[0][:10]])
    ctx = _ctx(X, labeled, y)
    flips = dropout_flips(ctx, np.arange(ctx.candidates.size), 0.75, 8)
    x0 = np.abs(a[ctx.candidates])
    assert flips[x0 < 0.1].mean() > 0.2 and flips[x0 > 0.5].mean() < 0.01
    res = QUERY_STRATEGIES.get("dropquery")(ctx, 6, n_drop=8)
    assert res.info["uncertain"] > 6 == res.info["clusters"] and (res.scores > 0.5).all()
    assert np.abs(a[res.indices]).max() < 0.3 and np.ptp(b[res.indices]) > 1.0  # near the boundary, spread along it
    with pytest.raises(InvalidInputError, match="dropout"):
        QUERY_STRATEGIES.get("dropquery")(ctx, 8, dropout=1.0)


def test_gradient_factors_are_zero_for_certain_rows():
    a = gradient_factors(np.array([[1.0, 0.0], [0.5, 0.5]]))
    np.testing.assert_allclose(a[0], 0.0)
    assert np.abs(a[1]).sum() == pytest.approx(1.0)


def test_auto_switches_from_typical_to_uncertain_and_keeps_a_random_share():
    X, yk = clustered(n=600, d=16, k=4, spread=0.3)
    y = np.asarray([f"c{v}" for v in yk])
    few = QUERY_STRATEGIES.get("auto")(_ctx(X, np.arange(8), y), 20)
    many = QUERY_STRATEGIES.get("auto")(_ctx(X, np.arange(60), y), 20)
    assert few.info["phase"] == "typical" and many.info["phase"] == "uncertain"
    assert many.info["random_picks"] == 2 and np.isnan(many.scores[-2:]).all()
    with pytest.raises(InvalidInputError, match="random_share"):
        QUERY_STRATEGIES.get("auto")(_ctx(X, np.arange(60), y), 5, random_share=2)


def test_candidates_spec_and_knn_candidates():
    assert parse_candidates("all").kind == "all" and parse_candidates("knn:50").k == 50
    for bad in ("knn", "knn:0", "knn:x", "some"):
        with pytest.raises(InvalidInputError, match="candidates must be"):
            parse_candidates(bad)
    X, _ = clustered(n=300, d=16, k=6, spread=0.05)
    index = faiss.IndexFlatIP(16)
    index.add(X)
    labeled = np.array([0, 1])
    excluded = np.zeros(300, dtype=bool)
    excluded[labeled] = True
    cand = knn_candidates(index, X, labeled, excluded, 10, budget=5)
    assert 5 <= cand.size <= 20 and not np.isin(labeled, cand).any()
    sims = X[cand] @ X[labeled].T
    assert (sims.max(axis=1) > 0.9).all()  # neighbours of the labeled rows only
    assert knn_candidates(index, X, labeled, excluded, 2, budget=50).size >= 50  # k grows until enough


def test_stopping_signal():
    a = np.array(["x", "y", "x", "y"] * 25)
    same = stop_signal(a, a, [0.995])
    assert same.agreement == 1.0 and same.kappa == 1.0 and "flattening" in same.advice
    flipped = stop_signal(a, np.where(a == "x", "y", "x"))
    assert flipped.agreement == 0.0 and flipped.kappa < 0 and "keep labeling" in flipped.advice
    assert cohen_kappa(a, a) == 1.0
    assert "keep labeling" in advice([]) and "one more round" in advice([0.995])
    s = stop_sample(1000, 100)
    np.testing.assert_array_equal(s, stop_sample(1000, 100))
    assert s.size == 100 and np.all(np.diff(s) > 0)
