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


def test_a_query_with_bad_arguments_fails_before_the_heavy_imports(tmp_path):
    """``fmal query`` / ``fmal seed`` on a pool that does not exist (or with an unknown strategy or
    candidates) say so before pandas or scikit-learn are imported (they took 2 s to fail)."""
    import json
    import subprocess
    import sys

    heavy = {"pandas", "sklearn", "scipy", "faiss", "torch"}
    for args in (["query", "--pool", "nosuchpool", "--budget", "5"], ["query", "--pool", "p", "--budget", "5", "--candidates", "knn:x"],
                 ["query", "--pool", "p", "--budget", "5", "--strategy", "nosuch"], ["seed", "--pool", "nosuchpool", "--budget", "5"]):
        code = ("import sys, json\nfrom fmal.cli import app\nsys.argv = ['fmal', " + ", ".join(repr(a) for a in args)
                + f", '--index-dir', {str(tmp_path)!r}]\ntry:\n    app()\nexcept SystemExit as e:\n    code = e.code\n"
                "print('RESULT ' + json.dumps([code, sorted({m.split('.')[0] for m in sys.modules})]))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
        exit_code, modules = json.loads(line[len("RESULT "):])
        assert exit_code == 2 and out.stderr.startswith("error: "), (args, out.stderr)
        assert not heavy & set(modules), (args, heavy & set(modules))
