"""The simulation on embeddings: per strategy and seed, seed the first labels, then fit the probe,
score it on the test rows and query the next labels, up to the last budget.

The strategies are called in :func:`_run_one` only (``SEED_STRATEGIES.call(...)`` and ``query_fn(ctx, ...)``),
with the same inputs as ``fmal seed`` / ``fmal query``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fmal import index as fmal_index
from fmal._defaults import DEFAULT_C
from fmal._validation import SEED_MAX, check_positive, check_seed
from fmal.exceptions import FmalError, InvalidInputError, LabelsError, PoolExhaustedError
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.query.adaptive import ACTIVE, RANDOM, SEED
from fmal.seed import SEED_STRATEGIES
from fmal import multilabel as ml
from fmal.probe_multilabel import MultiLabelProbe
from fmal.simulate import multilabel as ml_sim
from fmal.simulate.results import SimulationResult, summarise
from fmal.simulate.spec import BASELINE, DEFAULT_STRATEGIES, StrategySpec, parse_strategies
from fmal.simulate.stats import DEFAULT_REACH

def _budgets(initial: int, step: int, max_labels: int, n_pool: int) -> list[int]:
    check_positive(initial, "initial", integer=True)
    check_positive(step, "step", integer=True)
    check_positive(max_labels, "max_labels", integer=True)
    if max_labels < initial:
        raise InvalidInputError(f"max must be at least initial ({initial}), got {max_labels}; raise --max or lower --initial")
    if max_labels > n_pool:
        raise PoolExhaustedError(
            f"max must be no larger than the {n_pool:,} labeled pool (train) rows, got {max_labels:,}; lower --max"
            + (" (and --initial)" if initial > n_pool else "")
        )
    b = list(range(initial, max_labels + 1, step))
    if b[-1] != max_labels:
        b.append(max_labels)
    return b


def _round_seed(seed: int, round_no: int) -> int:
    """A per-round random_state derived from the run's seed (rounds must not reuse one stream)."""
    return int(np.random.SeedSequence([int(seed), int(round_no)]).generate_state(1)[0] % (2**31))


def _score(pred: np.ndarray, y_test: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    acc = float(np.mean(pred == y_test))
    f1 = float(f1_score(y_test, pred, labels=classes, average="macro", zero_division=0))
    return acc, f1


def _check_picks(picks: np.ndarray, want: int, is_labeled: np.ndarray, who: str) -> np.ndarray:
    picks = np.asarray(picks, dtype=np.int64)
    if picks.size != want or np.unique(picks).size != want or is_labeled[picks].any():
        raise FmalError(f"{who} returned {picks.size} rows for a budget of {want} (some repeated or already labeled); "
                        "this is a bug in that strategy: report it")
    return picks


def _run_one(
    spec: StrategySpec,
    seed: int,
    X: np.ndarray,
    y: np.ndarray,
    X_test: np.ndarray,
    y_test: np.ndarray,
    classes: np.ndarray,
    budgets: list[int],
    index: Any,
    probe_c: float | str,
    tick: Callable[[], None],
    multi: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One learning curve: seed, then (fit probe, score, query) per step. The oracle is ``y``.
    ``multi``: a multi-label run's query parameters per strategy (:mod:`fmal.simulate.multilabel`)."""
    query_fn = QUERY_STRATEGIES.get(spec.query_strategy)
    params = multi[spec.name] if multi is not None else {}
    n = X.shape[0]
    is_labeled = np.zeros(n, dtype=bool)
    res = SEED_STRATEGIES.call(spec.seed_strategy, X, budgets[0], index=index, labeled=None, random_state=seed)
    labeled = _check_picks(res.indices, budgets[0], is_labeled, f"seed strategy {spec.seed_strategy!r}")
    is_labeled[labeled] = True
    origin = np.full(n, SEED, dtype=object)  # where each label came from: what ``adaptive`` decides on
    rows: list[dict[str, Any]] = []
    for r, b in enumerate(budgets):
        y_known = y[labeled]
        probe = None
        if multi is not None:  # multi-label: a one-vs-rest probe fits from the first answer on
            seen = np.asarray(ml.classes_of(y_known.tolist()))
            probe = MultiLabelProbe(C=probe_c, random_state=seed).fit(X[labeled], y_known)
            scores = ml_sim.score(probe.predict(X_test), y_test, classes)
        else:
            seen = np.unique(y_known)
            if seen.size >= 2:
                probe = LinearProbe(C=probe_c, random_state=seed).fit(X[labeled], y_known)
                pred = probe.predict(X_test)
            else:  # one class labeled so far: a probe cannot be fitted; everything is that class
                pred = np.full(y_test.shape[0], seen[0])
            acc, f1 = _score(pred, y_test, classes)
            scores = {"accuracy": acc, "macro_f1": f1}
        rows.append({"strategy": spec.name, "seed": seed, "step": r, "n_labels": b, **scores,
                     "classes_seen": int(seen.size), "random_share": math.nan})
        tick()
        if r + 1 == len(budgets):
            break
        add = budgets[r + 1] - b
        rs = _round_seed(seed, r + 1)
        if probe is None:  # what fmal tells a user with one class: extend the seed set
            picks = SEED_STRATEGIES.call(spec.seed_strategy, X, add, index=index, labeled=labeled, random_state=rs).indices
            who = f"seed strategy {spec.seed_strategy!r}"
        else:
            candidates = np.nonzero(~is_labeled)[0]
            proba = probe.predict_proba(X[candidates])
            lab = np.sort(labeled)
            ctx = QueryContext(X=X, candidates=candidates, proba=proba, classes=probe.classes_, labeled=lab,
                               index=index, probe=probe, random_state=rs, labels=y[lab], origin=origin[lab].astype(str))
            qres = query_fn(ctx, add, **params)
            picks = qres.indices
            who = f"query strategy {spec.query_strategy!r}"
            is_random = np.zeros(len(picks), dtype=bool) if qres.is_random is None else np.asarray(qres.is_random)
            origin[np.asarray(picks)] = np.where(is_random, RANDOM, ACTIVE)
            rows[-1]["random_share"] = float(np.mean(is_random))  # of the next batch (adaptive decides it)
        picks = _check_picks(picks, add, is_labeled, who)
        is_labeled[picks] = True
        labeled = np.concatenate([labeled, picks])
    return rows


def simulate_embeddings(
    X: np.ndarray,
    y: Sequence[Any] | np.ndarray,
    X_test: np.ndarray,
    y_test: Sequence[Any] | np.ndarray,
    *,
    strategies: str | Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int = 5,
    initial: int = 20,
    step: int = 20,
    max_labels: int = 200,
    probe_c: float | str = DEFAULT_C,
    reach: Sequence[float] = DEFAULT_REACH,
    random_state: int = 0,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    info: dict[str, Any] | None = None,
    multi_label: bool = False,
) -> SimulationResult:
    """Simulate every strategy on pre-computed embeddings: ``X``/``y`` are the pool (train rows and
    their gold labels, answered by the oracle), ``X_test``/``y_test`` the held-out rows it is scored on.

    Seeds are ``random_state, random_state + 1, ...``. ``probe_c``: the probe's C (a fixed C is
    fast; ``"auto"`` cross-validates as ``fmal query`` does, and is several times slower).
    ``on_start(total)`` / ``on_progress(done)`` count (strategy, seed, step) triples.
    ``multi_label``: ``y`` holds canonical multi-label answers (``"a|b"``); the curves' accuracy
    is then micro-F1, with macro-F1 and subset accuracy (:mod:`fmal.simulate.multilabel`).
    """
    t_start = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float32)
    X_test = np.ascontiguousarray(X_test, dtype=np.float32)
    y = np.asarray(y).astype(str)
    y_test = np.asarray(y_test).astype(str)
    if X.ndim != 2 or X.shape[0] != y.shape[0] or X_test.ndim != 2 or X_test.shape[0] != y_test.shape[0]:
        raise InvalidInputError(f"X must be 2-D with one row per label, got X {X.shape}, y {y.shape}, "
                                f"X_test {X_test.shape}, y_test {y_test.shape}")
    if X_test.shape[0] == 0:
        raise InvalidInputError("test set is empty; give test rows (--test-col / --test-size)")
    check_positive(seeds, "seeds", integer=True)
    random_state = check_seed(random_state)
    if random_state + int(seeds) - 1 > SEED_MAX:
        raise InvalidInputError(f"seeds {random_state}..{random_state + int(seeds) - 1} run past {SEED_MAX:,} (2**32-1); lower random_state",
                                param="random_state")
    specs = parse_strategies(strategies)
    if not any(s.is_random for s in specs):
        specs.insert(0, StrategySpec(BASELINE, "random", "random"))  # every verdict is paired against random
    baseline = next(s.name for s in specs if s.is_random)
    if multi_label:  # multi-label hook: its own checks, probe and scores
        return _simulate_multilabel(X, y, X_test, y_test, specs, baseline, seeds, initial, step, max_labels, probe_c,
                                    reach, random_state, on_start, on_progress, info, t_start)
    pool_classes = np.unique(y)
    if pool_classes.size < 2:
        raise LabelsError(f"label column has a single class ({str(pool_classes[0])!r}) in the pool; "
                          "a classifier needs two or more: check --label-col")
    absent = sorted(set(np.unique(y_test)) - set(pool_classes))
    if absent:
        raise LabelsError(
            f"test rows have {len(absent)} class(es) that no pool (train) row has ({', '.join(repr(str(a)) for a in absent[:5])}); "
            "no strategy could ever learn them: move some of those rows out of the test split"
        )
    shares = _check_reach(reach)
    budgets = _budgets(initial, step, max_labels, X.shape[0])
    classes = np.unique(np.concatenate([y, y_test]))
    index = fmal_index.build_index(X, "flat")  # over the pool rows only: test rows stay unseen

    full = LinearProbe(C=probe_c, random_state=random_state).fit(X, y)
    full_acc, full_f1 = _score(full.predict(X_test), y_test, classes)

    seed_list = [random_state + i for i in range(int(seeds))]
    t_loop = time.perf_counter()
    rows = _all_curves(specs, seed_list, budgets, on_start, on_progress,
                       lambda spec, seed, tick: _run_one(spec, seed, X, y, X_test, y_test, classes, budgets, index,
                                                         probe_c, tick))
    result = summarise(specs, baseline, seed_list, budgets, classes.tolist(), pd.DataFrame(rows), full_acc, full_f1,
                       shares)
    result.info = {
        **(info or {}),
        "n_train": int(X.shape[0]), "n_test": int(X_test.shape[0]), "dim": int(X.shape[1]),
        "class_counts_train": {str(k): int(v) for k, v in zip(*np.unique(y, return_counts=True))},
        "class_counts_test": {str(k): int(v) for k, v in zip(*np.unique(y_test, return_counts=True))},
        "probe_C": probe_c, "full_data_probe_C": full.C_,
        "seconds_simulation": round(time.perf_counter() - t_loop, 3),
        "seconds_total": round(time.perf_counter() - t_start, 3),
        "rounds_with_one_class": int((result.curves["classes_seen"] < 2).sum()),
    }
    return result


def _check_reach(reach: Sequence[float]) -> list[float]:
    """The ``reach`` shares of the full-data accuracy, each in (0, 1]."""
    shares = [float(r) for r in reach]
    if any(not 0 < r <= 1 for r in shares):
        raise InvalidInputError(f"reach shares must lie in (0, 1], got {list(reach)}", param="reach")
    return shares


def _all_curves(specs: list[StrategySpec], seed_list: list[int], budgets: list[int],
                on_start: Callable[[int], None] | None, on_progress: Callable[[int], None] | None,
                run: Callable[[StrategySpec, int, Callable[[], None]], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every (strategy, seed) curve's rows, ``run(spec, seed, tick)`` each; progress counts
    (strategy, seed, step) triples: ``on_start(total)`` once, ``on_progress(done)`` per step."""
    if on_start:
        on_start(len(specs) * len(seed_list) * len(budgets))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done)

    rows: list[dict[str, Any]] = []
    for spec in specs:
        for seed in seed_list:
            rows += run(spec, seed, tick)
    return rows


def _simulate_multilabel(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, specs: list[StrategySpec],
                         baseline: str, seeds: int, initial: int, step: int, max_labels: int, probe_c: float | str,
                         reach: Sequence[float], random_state: int, on_start: Callable[[int], None] | None,
                         on_progress: Callable[[int], None] | None, info: dict[str, Any] | None,
                         t_start: float) -> SimulationResult:
    """:func:`simulate_embeddings` for canonical multi-label answers (same loop, same summaries)."""
    params = ml_sim.check_specs(specs)
    classes = ml_sim.check_labels(y, y_test)
    shares = _check_reach(reach)
    budgets = _budgets(initial, step, max_labels, X.shape[0])
    index = fmal_index.build_index(X, "flat")
    full = MultiLabelProbe(C=probe_c, random_state=random_state).fit(X, y)
    full_scores = ml_sim.score(full.predict(X_test), y_test, classes)
    seed_list = [random_state + i for i in range(int(seeds))]
    t_loop = time.perf_counter()
    rows = _all_curves(specs, seed_list, budgets, on_start, on_progress,
                       lambda spec, seed, tick: _run_one(spec, seed, X, y, X_test, y_test, classes, budgets, index,
                                                         probe_c, tick, multi=params))
    result = summarise(specs, baseline, seed_list, budgets, classes.tolist(), pd.DataFrame(rows), full_scores["accuracy"],
                       full_scores["macro_f1"], shares)
    Y = ml.binarize(y.tolist(), classes)
    result.info = {
        **(info or {}),
        "task": ml.MULTI, "accuracy_is": ml_sim.METRIC,
        "full_data_subset_accuracy": full_scores["subset_accuracy"],
        "n_train": int(X.shape[0]), "n_test": int(X_test.shape[0]), "dim": int(X.shape[1]),
        "class_counts_train": {str(c): int(k) for c, k in zip(classes, Y.sum(axis=0))},
        "mean_classes_per_row_train": round(float(Y.sum(axis=1).mean()), 3),
        "probe_C": probe_c, "full_data_probe_C": full.C_,
        "seconds_simulation": round(time.perf_counter() - t_loop, 3),
        "seconds_total": round(time.perf_counter() - t_start, 3),
    }
    return result
