"""The contract every registered seed and query strategy keeps (after scikit-activeml's template
test): each parameter of its signature is exercised here with good and bad values (a table that
fails when a new parameter has no entry), it is deterministic under the seed, it returns
``budget`` distinct in-range rows that are not labeled, it rejects an unknown keyword with an
error listing the ones it takes, and its numpydoc docstring documents every parameter."""

from __future__ import annotations

import inspect

import faiss
import numpy as np
import pytest
from conftest import clustered

from fmal.exceptions import InvalidInputError
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.seed import SEED_STRATEGIES

OK = None  # the value is accepted
BAD = InvalidInputError

#: context keywords, exercised for every seed strategy by the tests below (labeled, seed, index)
SEED_CONTEXT_TESTED = {"index", "labeled", "random_state"}

#: strategy -> parameter -> [(value, OK or the error it must raise), ...]
SEED_PARAMS: dict[str, dict[str, list[tuple[object, object]]]] = {
    "random": {},
    "kmeans": {},
    "typiclust": {"k_neighbors": [(5, OK), (1, OK), (0, BAD), (2.5, BAD)]},
    "auto": {"rule": [("mix", OK), ("strata", OK), ("hedge", OK), ("magic", BAD)]},
    "kcenter": {},
    "probcover": {
        "delta": [(0.6, OK), (None, OK), (0, BAD), (2.5, BAD)],
        "n_classes": [(4, OK), (None, OK), (1, BAD), (10_000, BAD)],
        "alpha": [(0.9, OK), (0, BAD), (1.0, BAD)],
        "max_rows": [(200, OK), (0, BAD), (1.5, BAD)],
        "delta_rule": [("purity", OK), ("midpoint", OK), ("other", BAD)],
    },
}

QUERY_PARAMS: dict[str, dict[str, list[tuple[object, object]]]] = {
    "entropy": {},
    "margin": {},
    "mean-margin": {},  # multi-label (fmal.query.multilabel): per-class probabilities
    "max-entropy": {},
    "least-confidence": {},
    "random": {},
    "cluster-margin": {"pool_factor": [(3.0, OK), (1, OK), (0, BAD), (-1.0, BAD)]},
    "badge": {"pool_factor": [(3.0, OK), (0, BAD)]},
    "typical-margin": {"pool_factor": [(3.0, OK), (0, BAD)], "k_neighbors": [(5, OK), (0, BAD)]},
    "dropquery": {"dropout": [(0.5, OK), (0.75, OK), (0.0, BAD), (1.0, BAD)], "n_drop": [(1, OK), (5, OK), (0, BAD), (2.5, BAD)]},
    "auto": {
        "switch_per_class": [(0, OK), (100, OK), (-1, BAD)],
        "random_share": [(0.0, OK), (0.5, OK), (1.0, OK), (2.0, BAD)],
        "then": [("margin", OK), ("cluster-margin", OK), ("auto", BAD), ("adaptive", BAD), ("nope", BAD)],
        "max_share": [(0.0, OK), (1.0, OK), (-0.1, BAD), (1.5, BAD)],
        "min_random": [(2, OK), (20, OK), (1, BAD), (0, BAD)],
        "evidence_z": [(0.0, OK), (3.0, OK), (-1.0, BAD)],
        "agreement_threshold": [(-1.0, OK), (0.3, OK), (1.5, BAD), (-2.0, BAD)],
    },
    "adaptive": {
        "min_share": [(0.0, OK), (0.5, OK), (-0.1, BAD)],
        "max_share": [(0.8, OK), (1.0, OK), (1.5, BAD)],
        "agreement_threshold": [(0.0, OK), (0.3, OK), (-1, BAD)],
        "min_random": [(1, OK), (20, OK), (0, BAD)],
        "switch_per_class": [(0, OK), (100, OK), (-1, BAD)],
        "then": [("margin", OK), ("badge", OK), ("auto", BAD), ("adaptive", BAD), ("nope", BAD)],
    },
}

BUDGET = 6


@pytest.fixture(scope="module")
def pool() -> tuple[np.ndarray, np.ndarray, faiss.Index]:
    X, y = clustered(n=300, d=16, k=5, spread=0.3, seed=2)
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    return X, y, index


def _ctx(pool, seed: int = 0) -> QueryContext:
    X, yk, index = pool
    y = np.asarray([f"c{v}" for v in yk])
    labeled = np.arange(0, 300, 10)
    probe = LinearProbe(C=10.0, random_state=0).fit(X[labeled], y[labeled])
    cand = np.setdiff1d(np.arange(X.shape[0]), labeled)
    return QueryContext(X=X, candidates=cand, proba=probe.predict_proba(X[cand]), classes=probe.classes_,
                        labeled=labeled, index=index, probe=probe, random_state=seed)


def _check_picks(picks: np.ndarray, n: int, labeled: np.ndarray, budget: int = BUDGET) -> None:
    assert picks.shape == (budget,) and np.unique(picks).size == budget
    assert picks.min() >= 0 and picks.max() < n
    assert not np.isin(picks, labeled).any()


# ----------------------------------------------------------------------------- the tables are complete


def test_every_registered_strategy_has_a_table_entry():
    assert set(SEED_PARAMS) == set(SEED_STRATEGIES.names())
    assert set(QUERY_PARAMS) == set(QUERY_STRATEGIES.names())


@pytest.mark.parametrize("name", SEED_STRATEGIES.names())
def test_every_seed_parameter_is_tested(name):
    keywords = SEED_STRATEGIES.keywords(name)
    assert keywords is not None, f"seed strategy {name!r} takes **kwargs: declare its parameters"
    untested = set(keywords) - SEED_CONTEXT_TESTED - set(SEED_PARAMS[name])
    assert not untested, f"seed strategy {name!r}: add {sorted(untested)} to SEED_PARAMS"
    assert set(SEED_PARAMS[name]) <= set(SEED_STRATEGIES.params(name)), "the table names a parameter that is gone"


@pytest.mark.parametrize("name", QUERY_STRATEGIES.names())
def test_every_query_parameter_is_tested(name):
    keywords = QUERY_STRATEGIES.keywords(name)
    assert keywords is not None, f"query strategy {name!r} takes **kwargs: declare its parameters"
    assert set(keywords) == set(QUERY_PARAMS[name]), f"query strategy {name!r}: QUERY_PARAMS must list {keywords}"


# ----------------------------------------------------------------------------- each parameter's values


def _cases(table: dict[str, dict[str, list[tuple[object, object]]]]) -> list[tuple[str, str, object, object]]:
    return [(s, p, v, e) for s, params in table.items() for p, cases in params.items() for v, e in cases]


@pytest.mark.parametrize(("name", "param", "value", "error"), _cases(SEED_PARAMS))
def test_seed_parameter_values(name, param, value, error, pool):
    X, _, index = pool
    labeled = np.arange(0, 300, 50)
    run = lambda: SEED_STRATEGIES.call(name, X, BUDGET, index=index, labeled=labeled, random_state=0, **{param: value})  # noqa: E731
    if error is OK:
        _check_picks(run().indices, X.shape[0], labeled)
    else:
        with pytest.raises(error, match=param):
            run()


@pytest.mark.parametrize(("name", "param", "value", "error"), _cases(QUERY_PARAMS))
def test_query_parameter_values(name, param, value, error, pool):
    ctx = _ctx(pool)
    run = lambda: QUERY_STRATEGIES.call(name, ctx, BUDGET, **{param: value})  # noqa: E731
    if error is OK:
        res = run()
        _check_picks(res.indices, pool[0].shape[0], ctx.labeled)
        assert np.isin(res.indices, ctx.candidates).all() and res.scores.shape == (BUDGET,)
    else:
        with pytest.raises(error, match=param if value != "nope" else "unknown query strategy"):
            run()


# ----------------------------------------------------------------------------- behaviour shared by all


@pytest.mark.parametrize("name", SEED_STRATEGIES.names())
def test_seed_strategy_is_seeded_and_returns_budget_free_rows(name, pool):
    X, _, index = pool
    labeled = np.arange(0, 300, 25)
    runs = [SEED_STRATEGIES.call(name, X, BUDGET, index=index, labeled=labeled, random_state=s) for s in (4, 4)]
    _check_picks(runs[0].indices, X.shape[0], labeled)
    np.testing.assert_array_equal(runs[0].indices, runs[1].indices)
    assert runs[0].scores.shape == runs[0].clusters.shape == (BUDGET,)


@pytest.mark.parametrize("name", QUERY_STRATEGIES.names())
def test_query_strategy_is_seeded_and_returns_budget_free_rows(name, pool):
    a, b = (QUERY_STRATEGIES.call(name, _ctx(pool, seed=4), BUDGET) for _ in range(2))
    _check_picks(a.indices, pool[0].shape[0], _ctx(pool).labeled)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize(("registry", "name"), [(SEED_STRATEGIES, n) for n in SEED_STRATEGIES]
                         + [(QUERY_STRATEGIES, n) for n in QUERY_STRATEGIES])
def test_unknown_keyword_is_refused_with_the_accepted_ones(registry, name, pool):
    args = (pool[0], BUDGET) if registry is SEED_STRATEGIES else (_ctx(pool), BUDGET)
    own = registry.params(name)
    with pytest.raises(InvalidInputError, match=f"has no parameter 'k_neigbors'; its parameters: {', '.join(own) or 'none'}$"):
        registry.call(name, *args, k_neigbors=3)
    if registry is SEED_STRATEGIES:  # a context keyword is not a user parameter
        with pytest.raises(InvalidInputError, match="has no parameter 'labeled'"):
            registry.check(name, {"labeled": None})


def test_context_keywords_reach_only_the_strategies_that_declare_them(pool):
    X, _, index = pool
    assert "index" not in SEED_STRATEGIES.keywords("kcenter") and "random_state" not in SEED_STRATEGIES.keywords("kcenter")
    a = SEED_STRATEGIES.call("kcenter", X, BUDGET, index=index, labeled=None, random_state=1).indices
    np.testing.assert_array_equal(a, SEED_STRATEGIES.get("kcenter")(X, BUDGET).indices)


def test_library_errors_name_the_parameter_not_the_cli_flag(pool):
    """API users have no flags: the message names ``budget``; the CLI rewrites it as ``--budget``
    (tests/test_cli.py checks its output)."""
    X = pool[0]
    for name in SEED_STRATEGIES:
        with pytest.raises(InvalidInputError) as err:
            SEED_STRATEGIES.call(name, X, X.shape[0] + 1)
        assert "lower budget" in str(err.value) and "--" not in str(err.value) and err.value.param == "budget"


# ----------------------------------------------------------------------------- docstrings


def _sections(doc: str) -> dict[str, str]:
    """numpydoc sections of ``doc``: title -> body."""
    lines = inspect.cleandoc(doc).splitlines()
    out: dict[str, list[str]] = {}
    cur = "summary"
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and lines[i + 1].strip() and set(lines[i + 1].strip()) == {"-"}:
            cur = line.strip()
            out[cur] = []
        elif not (line.strip() and set(line.strip()) == {"-"}):
            out.setdefault(cur, []).append(line)
    return {k: "\n".join(v) for k, v in out.items()}


@pytest.mark.parametrize(("registry", "name"), [(SEED_STRATEGIES, n) for n in SEED_STRATEGIES]
                         + [(QUERY_STRATEGIES, n) for n in QUERY_STRATEGIES])
def test_numpydoc_documents_every_parameter(registry, name):
    fn = registry.get(name)
    sec = _sections(fn.__doc__ or "")
    assert {"Parameters", "Returns"} <= set(sec), (name, sorted(sec))
    if name != "random":
        assert "References" in sec, name
    for param in inspect.signature(fn).parameters:
        assert f"{param} :" in sec["Parameters"], (name, param)
    text = registry.summaries()[name]
    assert text.endswith(".") and "\n" not in text and len(text) > 20, (name, text)
