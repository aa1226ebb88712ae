"""The query path's plumbing gives the numbers it gave before it was made faster: top_k's partition
against a full sort, the probe's scores in parallel blocks against one call, and the k-NN candidates
searched beside the probe's fit against the search alone."""

from __future__ import annotations

import numpy as np
import pytest

from fmal.query.base import top_k
from fmal.query.candidates import score_rows


def _top_k_by_sorting(scores: np.ndarray, k: int, random_state: int) -> np.ndarray:
    tiebreak = np.random.default_rng(random_state).random(scores.shape[0])
    return np.lexsort((tiebreak, -np.asarray(scores, dtype=np.float64)))[:k]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_top_k_equals_sorting_every_score(seed):
    rng = np.random.default_rng(seed)
    cases = [rng.random(5000), rng.integers(0, 4, 5000).astype(float),  # many ties at the k-th score
             np.zeros(2000), rng.random(50).astype(np.float32)]
    nan = rng.random(3000)
    nan[::7] = np.nan
    cases.append(nan)
    for scores in cases:
        for k in (1, 3, 100, 400, scores.shape[0] // 4 + 1, scores.shape[0]):
            np.testing.assert_array_equal(top_k(scores, k, seed), _top_k_by_sorting(scores, k, seed))


def test_scores_in_parallel_blocks_equal_one_call():
    from fmal.probe import LinearProbe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.asarray(["a", "b", "c"])[rng.integers(0, 3, 60)]
    probe = LinearProbe(C=10.0).fit(X[:60], y)
    rows = np.setdiff1d(np.arange(3000), [0, 5, 2999])
    np.testing.assert_array_equal(score_rows(probe, X, rows, batch=256), probe.predict_proba(X[rows]))


def test_knn_candidates_beside_the_fit_equal_the_search_alone(tiny_pool):
    from fmal.api.rounds import _probe_and_candidates
    from fmal.multilabel import SINGLE
    from fmal.pool import open_pool
    from fmal.query import knn_candidates, parse_candidates

    index_dir, name, _ = tiny_pool
    p = open_pool(name, index_dir)
    labeled = np.asarray([2, 40, 41, 90, 150, 170])
    y = np.asarray(["x", "y", "x", "y", "x", "y"])
    excluded = np.zeros(p.n, dtype=bool)
    excluded[labeled] = True
    probe, cand = _probe_and_candidates(p, SINGLE, labeled, y, excluded, parse_candidates("knn:5"), 10, None, 0)
    np.testing.assert_array_equal(cand, knn_candidates(p.index, p.embeddings, labeled, excluded, 5, 10))
    assert list(probe.classes_) == ["x", "y"]
    _, every = _probe_and_candidates(p, SINGLE, labeled, y, excluded, parse_candidates("all"), 10, None, 0)
    np.testing.assert_array_equal(every, np.flatnonzero(~excluded))
