"""Simulated labeling: does active learning beat random on my data?

Replays fmal's own loop on a labeled dataset: a seed strategy picks the first ``initial`` rows, an
oracle answers from the gold labels, the product's :class:`~fmal.probe.LinearProbe` is fitted and
scored on held-out test rows, a query strategy picks the next ``step`` rows, and so on up to
``max_labels``. Every strategy is run with several seeds; the results are learning curves (accuracy
and macro-F1, mean and 95% t-interval over seeds), the area under each curve (AULC), the labels
needed to reach a share of the full-data accuracy, and the per-seed paired difference to random.

Nothing is re-implemented: strategies come from ``SEED_STRATEGIES`` and ``QUERY_STRATEGIES`` and
get the same inputs (``QueryContext``) as in ``fmal seed`` / ``fmal query``. Test rows are never
shown to a strategy: strategies see the train rows only (their own embedding matrix and index).
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmal import index as fmal_index
from fmal import store
from fmal._atomic import atomic_path, write_json, write_text
from fmal._validation import SEED_MAX, check_label, check_positive, check_seed
from fmal.exceptions import FmalError, InvalidInputError, LabelsError, PoolExhaustedError
from fmal.io import write_table
from fmal._defaults import DEFAULT_C
from fmal.query import QUERY_STRATEGIES, QueryContext
from fmal.query.adaptive import ACTIVE, RANDOM, SEED
from fmal.seed import SEED_STRATEGIES

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
BASELINE = "random"
DEFAULT_STRATEGIES = ("random", "typiclust+margin")
DEFAULT_REACH = (0.9, 0.95)
CONFIDENCE = 0.95
FILES = {"json": "simulation.json", "markdown": "simulation.md", "png": "learning_curves.png", "curves": "curves.csv"}


# ----------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class StrategySpec:
    """A simulated strategy: the seed strategy of the first round and the query strategy after it."""

    name: str
    seed: str
    query: str

    @property
    def is_random(self) -> bool:
        return self.seed == "random" and self.query == "random"


def _valid_names() -> str:
    both = [n for n in SEED_STRATEGIES if n in QUERY_STRATEGIES]
    return (f"SEED+QUERY with SEED one of [{', '.join(SEED_STRATEGIES)}] and QUERY one of "
            f"[{', '.join(QUERY_STRATEGIES)}], or a single name of both lists [{', '.join(both)}]")


def parse_strategies(strategies: str | Sequence[str]) -> list[StrategySpec]:
    """Parse ``"random,typiclust+margin"`` (or a list of such names) into strategy specs.

    ``seed+query`` names a seed and a query strategy; a single name must exist in both registries
    (``random``, ``auto``). Names are looked up at run time, so new strategies work as they land.
    """
    items = [s.strip() for s in (strategies.split(",") if isinstance(strategies, str) else strategies)]
    items = [s for s in items if s]
    if not items:
        raise InvalidInputError(f"strategies must name at least one strategy, got {strategies!r}; use {_valid_names()}")
    out: list[StrategySpec] = []
    for item in items:
        if item.count("+") > 1:
            raise InvalidInputError(f"strategies: {item!r} has more than one '+'; use {_valid_names()}")
        seed_name, _, query_name = item.partition("+")
        seed_name, query_name = seed_name.strip(), (query_name.strip() if query_name else seed_name.strip())
        if seed_name not in SEED_STRATEGIES or query_name not in QUERY_STRATEGIES:
            bad = seed_name if seed_name not in SEED_STRATEGIES else query_name
            role = "seed" if seed_name not in SEED_STRATEGIES else "query"
            hint = ""
            if "+" not in item and (item in SEED_STRATEGIES or item in QUERY_STRATEGIES):
                hint = f" ({item!r} is only a {'seed' if item in SEED_STRATEGIES else 'query'} strategy: pair it, e.g. " \
                       f"{item + '+margin' if item in SEED_STRATEGIES else 'typiclust+' + item})"
            raise InvalidInputError(f"strategies: {item!r}: {bad!r} is not a {role} strategy{hint}; use {_valid_names()}")
        name = seed_name if seed_name == query_name else f"{seed_name}+{query_name}"
        if name not in {s.name for s in out}:
            out.append(StrategySpec(name, seed_name, query_name))
    return out


# ----------------------------------------------------------------------------- statistics


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided t-interval (lo, hi) over seeds; the interval is NaN with one value."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half


def aulc(budgets: Sequence[int], scores: Sequence[float]) -> float:
    """Area under a learning curve, normalised by the label range: the curve's mean height
    (trapezoids), in the units of ``scores``. One point: that point."""
    b = np.asarray(budgets, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if b.size == 1:
        return float(s[0])
    return float(np.sum((s[1:] + s[:-1]) / 2 * np.diff(b)) / (b[-1] - b[0]))


def labels_to_reach(budgets: Sequence[int], scores: Sequence[float], target: float) -> int | None:
    """First budget whose score is at least ``target``; None when the curve never gets there."""
    for b, s in zip(budgets, scores):
        if s >= target - 1e-12:
            return int(b)
    return None


# ----------------------------------------------------------------------------- results


@dataclass
class StrategySummary:
    """One strategy's headline numbers (accuracy in points, 0-100)."""

    strategy: str
    seed_strategy: str
    query_strategy: str
    aulc: float
    aulc_lo: float
    aulc_hi: float
    aulc_macro_f1: float
    diff_vs_baseline: float
    diff_lo: float
    diff_hi: float
    labels_to_reach: dict[str, int | None]
    verdict: str


@dataclass
class SimulationResult:
    """Everything a simulation measured.

    ``curves``: one row per (strategy, seed, n_labels) with accuracy and macro_f1 (0-1);
    ``summaries``: headline numbers per strategy; ``verdict``: one plain sentence;
    ``files``: where the outputs were written (empty until written).
    """

    strategies: list[StrategySpec]
    baseline: str
    seeds: list[int]
    budgets: list[int]
    classes: list[str]
    curves: pd.DataFrame
    full_accuracy: float
    full_macro_f1: float
    reach: tuple[float, ...]
    summaries: list[StrategySummary]
    verdict: str
    advice: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Per strategy and number of labels: mean and 95% interval of accuracy and macro-F1 (0-1)."""
        rows = []
        for spec in self.strategies:
            c = self.curves[self.curves["strategy"] == spec.name]
            for b in self.budgets:
                at = c[c["n_labels"] == b]
                row: dict[str, Any] = {"strategy": spec.name, "n_labels": b}
                for metric in ("accuracy", "macro_f1"):
                    m, lo, hi = mean_ci(at[metric].to_numpy())
                    row.update({metric: m, f"{metric}_lo": lo, f"{metric}_hi": hi})
                row["n_seeds"] = len(at)
                rows.append(row)
        return pd.DataFrame(rows)

    def summary_frame(self) -> pd.DataFrame:
        """One row per strategy: AULC, difference to the baseline, labels to reach, verdict."""
        rows = []
        for s in self.summaries:
            row = {k: v for k, v in s.__dict__.items() if k != "labels_to_reach"}
            row.update({f"labels_to_{k}": v for k, v in s.labels_to_reach.items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        """Every number, JSON-ready (NaN becomes null)."""
        per_step = self.to_frame()
        strategies = []
        for spec, summ in zip(self.strategies, self.summaries):
            c = self.curves[self.curves["strategy"] == spec.name]
            steps = []
            for b in self.budgets:
                at = c[c["n_labels"] == b].sort_values("seed")
                ps = per_step[(per_step["strategy"] == spec.name) & (per_step["n_labels"] == b)].iloc[0]
                steps.append({
                    "n_labels": b,
                    **{m: {"mean": ps[m], "lo": ps[f"{m}_lo"], "hi": ps[f"{m}_hi"], "per_seed": at[m].tolist()}
                       for m in ("accuracy", "macro_f1")},
                    "classes_seen_per_seed": at["classes_seen"].tolist(),
                    "random_share_per_seed": at["random_share"].tolist(),  # share of the next batch drawn at random
                })
            per_seed = self._per_seed_aulc(spec.name, "accuracy")
            base = self._per_seed_aulc(self.baseline, "accuracy")
            diff_steps = []
            for b in self.budgets:
                d = self._paired(spec.name, b)
                m, lo, hi = mean_ci(d)
                diff_steps.append({"n_labels": b, "mean": 100 * m, "lo": 100 * lo, "hi": 100 * hi})
            strategies.append({
                "name": spec.name, "seed_strategy": spec.seed, "query_strategy": spec.query,
                "curve": steps,
                "aulc_accuracy": {"mean": summ.aulc, "lo": summ.aulc_lo, "hi": summ.aulc_hi, "per_seed": per_seed},
                "aulc_macro_f1": {"mean": summ.aulc_macro_f1, "per_seed": self._per_seed_aulc(spec.name, "macro_f1")},
                "labels_to_reach": {
                    k: {"target_accuracy": self.full_accuracy * float(k.rstrip("%")) / 100, "median": v,
                        "per_seed": self._reach_per_seed(spec.name, float(k.rstrip("%")) / 100)}
                    for k, v in summ.labels_to_reach.items()
                },
                "vs_baseline": {
                    "baseline": self.baseline,
                    "aulc_diff_points": {"mean": summ.diff_vs_baseline, "lo": summ.diff_lo, "hi": summ.diff_hi,
                                         "per_seed": [a - b for a, b in zip(per_seed, base)]},
                    "accuracy_diff_points_per_step": diff_steps,
                    "verdict": summ.verdict,
                },
            })
        out = {
            "format": "fmal-simulation", "format_version": 1,
            "verdict": self.verdict,
            "advice": self.advice,
            "baseline": self.baseline,
            "seeds": self.seeds, "budgets": self.budgets, "classes": self.classes,
            "confidence": CONFIDENCE, "interval": "two-sided t-interval over seeds",
            "aulc_definition": "mean accuracy over the label range (trapezoids), in points (0-100)",
            "full_data": {"accuracy": self.full_accuracy, "macro_f1": self.full_macro_f1},
            "strategies": strategies,
            "info": self.info,
        }
        return _json_clean(out)

    def _per_seed_aulc(self, name: str, metric: str) -> list[float]:
        c = self.curves[self.curves["strategy"] == name]
        return [100 * aulc(g["n_labels"].tolist(), g[metric].tolist()) for _, g in c.sort_values("n_labels").groupby("seed")]

    def _reach_per_seed(self, name: str, share: float) -> list[int | None]:
        c = self.curves[self.curves["strategy"] == name]
        return [labels_to_reach(g["n_labels"].tolist(), g["accuracy"].tolist(), share * self.full_accuracy)
                for _, g in c.sort_values("n_labels").groupby("seed")]

    def _paired(self, name: str, n_labels: int) -> np.ndarray:
        c = self.curves[self.curves["n_labels"] == n_labels].set_index(["strategy", "seed"])["accuracy"]
        return np.asarray([c[(name, s)] - c[(self.baseline, s)] for s in self.seeds])

    def to_markdown(self) -> str:
        """A summary table, the per-step accuracy table and the verdict, as markdown."""
        n = len(self.seeds)
        reach_cols = [f"labels to {k} of full" for k in self._reach_keys()]
        lines = [
            f"**{self.verdict}**", "", self.advice, "",
            (f"Full-data accuracy (all {self.info.get('n_train', '?')} train labels): {100 * self.full_accuracy:.1f}%"
             f" (macro-F1 {100 * self.full_macro_f1:.1f}); test rows: {self.info.get('n_test', '?')};"
             f" {n} seed{'s' if n != 1 else ''}; intervals: 95% t-interval over seeds."), "",
            "| strategy | AULC accuracy | vs " + self.baseline + " (paired) | " + " | ".join(reach_cols) + " | verdict |",
            "|---|---|---|" + "---|" * len(reach_cols) + "---|",
        ]
        for s in self.summaries:
            diff = "-" if s.strategy == self.baseline else _pm(s.diff_vs_baseline, s.diff_lo, s.diff_hi, signed=True)
            reach = [str(v) if v is not None else f"> {self.budgets[-1]}" for v in s.labels_to_reach.values()]
            lines.append(f"| {s.strategy} | {_pm(s.aulc, s.aulc_lo, s.aulc_hi)} | {diff} | " + " | ".join(reach) + f" | {s.verdict} |")
        frame = self.to_frame()
        lines += ["", "Accuracy (%) by number of labels, mean +/- 95% half-interval:", "",
                  "| strategy | " + " | ".join(str(b) for b in self.budgets) + " |",
                  "|---|" + "---|" * len(self.budgets)]
        for spec in self.strategies:
            f = frame[frame["strategy"] == spec.name]
            cells = [_pm(100 * r.accuracy, 100 * r.accuracy_lo, 100 * r.accuracy_hi) for r in f.itertuples()]
            lines.append(f"| {spec.name} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def _reach_keys(self) -> list[str]:
        return [f"{round(100 * r)}%" for r in self.reach]


def _pm(m: float, lo: float, hi: float, *, signed: bool = False) -> str:
    if math.isnan(m):
        return "-"
    s = f"{m:+.1f}" if signed else f"{m:.1f}"
    return s if math.isnan(lo) else f"{s} +/- {(hi - lo) / 2:.1f}"


def _json_clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else round(obj, 6)
    return obj


def _verdict(name: str, diff: float, lo: float, hi: float, baseline: str) -> str:
    if math.isnan(lo):
        return f"{name} vs {baseline}: {diff:+.1f} points AULC (one seed: no interval; use more seeds)"
    half = (hi - lo) / 2
    if lo > 0:
        return f"{name} beats {baseline} by {diff:.1f} +/- {half:.1f} points AULC"
    if hi < 0:
        return f"{name} loses to {baseline} by {-diff:.1f} +/- {half:.1f} points AULC"
    return f"{name} is no better than {baseline} ({diff:+.1f} +/- {half:.1f} points AULC)"


def _advice(result: SimulationResult, winners: list[StrategySummary]) -> str:
    """What to do next, in a sentence or two."""
    if len(result.seeds) < 2:
        return "Rerun with --seeds 5 or more: one run cannot tell a strategy from luck."
    if winners:
        best = max(winners, key=lambda s: s.diff_vs_baseline)
        return (f"Use {best.strategy}: fmal seed --strategy {best.seed_strategy}, then fmal query --strategy "
                f"{best.query_strategy}. Keep a random sample aside to measure the probe's accuracy honestly.")
    last = result.to_frame().query("n_labels == @result.budgets[-1]")["accuracy"].max()
    gap = 100 * (result.full_accuracy - last)
    return (f"Label a random sample: it is as good here, and it gives an unbiased test set for free. "
            f"At {result.budgets[-1]} labels the best curve is {gap:.1f} points below the full-data accuracy"
            + (", so more labels still pay; " if gap > 2 else "; ")
            + "a stronger embedding model (--model) or a larger --max may change the answer: rerun this check then.")


# ----------------------------------------------------------------------------- the simulation


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
) -> list[dict[str, Any]]:
    """One learning curve: seed, then (fit probe, score, query) per step. The oracle is ``y``."""
    from fmal.probe import LinearProbe  # scikit-learn: imported when a simulation runs, not with fmal.api

    seed_fn = SEED_STRATEGIES.get(spec.seed)
    query_fn = QUERY_STRATEGIES.get(spec.query)
    n = X.shape[0]
    is_labeled = np.zeros(n, dtype=bool)
    res = seed_fn(X, budgets[0], index=index, labeled=None, random_state=seed)
    labeled = _check_picks(res.indices, budgets[0], is_labeled, f"seed strategy {spec.seed!r}")
    is_labeled[labeled] = True
    origin = np.full(n, SEED, dtype=object)  # where each label came from: what ``adaptive`` decides on
    rows: list[dict[str, Any]] = []
    for r, b in enumerate(budgets):
        y_known = y[labeled]
        seen = np.unique(y_known)
        probe = None
        if seen.size >= 2:
            probe = LinearProbe(C=probe_c, random_state=seed).fit(X[labeled], y_known)
            pred = probe.predict(X_test)
        else:  # one class labeled so far: a probe cannot be fitted; everything is that class
            pred = np.full(y_test.shape[0], seen[0])
        acc, f1 = _score(pred, y_test, classes)
        rows.append({"strategy": spec.name, "seed": seed, "step": r, "n_labels": b, "accuracy": acc, "macro_f1": f1,
                     "classes_seen": int(seen.size), "random_share": math.nan})
        tick()
        if r + 1 == len(budgets):
            break
        add = budgets[r + 1] - b
        rs = _round_seed(seed, r + 1)
        if probe is None:  # what fmal tells a user with one class: extend the seed set
            picks = seed_fn(X, add, index=index, labeled=labeled, random_state=rs).indices
            who = f"seed strategy {spec.seed!r}"
        else:
            candidates = np.nonzero(~is_labeled)[0]
            proba = probe.predict_proba(X[candidates])
            lab = np.sort(labeled)
            ctx = QueryContext(X=X, candidates=candidates, proba=proba, classes=probe.classes_, labeled=lab,
                               index=index, probe=probe, random_state=rs, labels=y[lab], origin=origin[lab].astype(str))
            qres = query_fn(ctx, add)
            picks = qres.indices
            who = f"query strategy {spec.query!r}"
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
) -> SimulationResult:
    """Simulate every strategy on pre-computed embeddings: ``X``/``y`` are the pool (train rows and
    their gold labels, answered by the oracle), ``X_test``/``y_test`` the held-out rows it is scored on.

    Seeds are ``random_state, random_state + 1, ...``. ``probe_c``: the probe's C (a fixed C is
    fast; ``"auto"`` cross-validates as ``fmal query`` does, and is several times slower).
    ``on_start(total)`` / ``on_progress(done)`` count (strategy, seed, step) triples.
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
        raise InvalidInputError(f"seeds {random_state}..{random_state + int(seeds) - 1} run past {SEED_MAX:,} (2**32-1); lower --seed")
    specs = parse_strategies(strategies)
    if not any(s.is_random for s in specs):
        specs.insert(0, StrategySpec(BASELINE, "random", "random"))  # every verdict is paired against random
    baseline = next(s.name for s in specs if s.is_random)
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
    shares = [float(r) for r in reach]
    if any(not 0 < r <= 1 for r in shares):
        raise InvalidInputError(f"reach shares must lie in (0, 1], got {list(reach)}")
    budgets = _budgets(initial, step, max_labels, X.shape[0])
    classes = np.unique(np.concatenate([y, y_test]))
    built = fmal_index.build_index(X, "flat")  # over the pool rows only: test rows stay unseen
    index = built[0] if isinstance(built, tuple) else built  # (index, info) since the index-choice rework

    from fmal.probe import LinearProbe

    full = LinearProbe(C=probe_c, random_state=random_state).fit(X, y)
    full_acc, full_f1 = _score(full.predict(X_test), y_test, classes)

    seed_list = [random_state + i for i in range(int(seeds))]
    total = len(specs) * len(seed_list) * len(budgets)
    if on_start:
        on_start(total)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_progress:
            on_progress(done)

    rows: list[dict[str, Any]] = []
    t_loop = time.perf_counter()
    for spec in specs:
        for s in seed_list:
            rows += _run_one(spec, s, X, y, X_test, y_test, classes, budgets, index, probe_c, tick)
    curves = pd.DataFrame(rows)
    result = SimulationResult(specs, baseline, seed_list, budgets, classes.tolist(), curves, full_acc, full_f1,
                              tuple(shares), [], "", info={})
    summaries = []
    for spec in specs:
        per_seed = result._per_seed_aulc(spec.name, "accuracy")
        m, lo, hi = mean_ci(per_seed)
        f1m, _, _ = mean_ci(result._per_seed_aulc(spec.name, "macro_f1"))
        if spec.name == baseline:
            d, dlo, dhi, verdict = 0.0, math.nan, math.nan, "baseline"
        else:
            base = result._per_seed_aulc(baseline, "accuracy")
            d, dlo, dhi = mean_ci([a - b for a, b in zip(per_seed, base)])
            verdict = _verdict(spec.name, d, dlo, dhi, baseline)
        reach_med = {}
        for share in shares:
            per = result._reach_per_seed(spec.name, share)
            vals = np.asarray([math.inf if v is None else v for v in per], dtype=np.float64)
            med = float(np.median(vals))
            reach_med[f"{round(100 * share)}%"] = None if math.isinf(med) else round(med)
        summaries.append(StrategySummary(spec.name, spec.seed, spec.query, m, lo, hi, f1m, d, dlo, dhi, reach_med, verdict))
    result.summaries = summaries
    winners: list[StrategySummary] = [s for s in summaries if s.strategy != baseline and not math.isnan(s.diff_lo) and s.diff_lo > 0]
    if winners:
        best = max(winners, key=lambda s: s.diff_vs_baseline)
        result.verdict = best.verdict + (f" (best of {len(winners)} that beat {baseline})" if len(winners) > 1 else "")
    elif len(seed_list) < 2:
        result.verdict = "one seed: no interval, so no verdict; rerun with --seeds 5 or more"
    else:
        result.verdict = f"no strategy beats {baseline} on this data"
    result.advice = _advice(result, winners)
    result.info = {
        **(info or {}),
        "n_train": int(X.shape[0]), "n_test": int(X_test.shape[0]), "dim": int(X.shape[1]),
        "class_counts_train": {str(k): int(v) for k, v in zip(*np.unique(y, return_counts=True))},
        "class_counts_test": {str(k): int(v) for k, v in zip(*np.unique(y_test, return_counts=True))},
        "probe_C": probe_c, "full_data_probe_C": full.C_,
        "seconds_simulation": round(time.perf_counter() - t_loop, 3),
        "seconds_total": round(time.perf_counter() - t_start, 3),
        "rounds_with_one_class": int((curves["classes_seen"] < 2).sum()),
    }
    return result


# ----------------------------------------------------------------------------- data -> embeddings


def default_pool_name(data: PathLike) -> str:
    """A pool name from a file name: its stem, with characters pool names forbid replaced by "-"."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(data).stem).strip("-._") or "pool"
    return name[:128]


def _split(
    frame: pd.DataFrame, labels: np.ndarray, path: Path, test_col: str | None, test_value: str,
    test_size: float | None, random_state: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Boolean mask of test rows (among labeled rows) and a description of the split."""
    if test_col is not None and test_size is not None:
        raise InvalidInputError("give either --test-col or --test-size, not both")
    if test_col is not None:
        if test_col not in frame.columns:
            cols = ", ".join(map(str, frame.columns))
            raise InvalidInputError(f"{path}: no column {test_col!r} (columns: {cols}); pass --test-col")
        vals = frame[test_col].astype(str).str.strip().str.lower().to_numpy()
        is_test = vals == test_value.strip().lower()
        if not is_test.any() or is_test.all():
            seen = ", ".join(sorted(set(vals))[:10])
            raise InvalidInputError(
                f"{path}: column {test_col!r} must mark some rows, not all, as {test_value!r} (values: {seen}); "
                "pass --test-value or use --test-size"
            )
        return is_test, {"test_col": test_col, "test_value": test_value}
    size = 0.3 if test_size is None else test_size
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < 1:
        raise InvalidInputError(f"test_size must be a share between 0 and 1 (e.g. 0.3), got {size!r}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.size)
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    try:
        _, test_idx = train_test_split(idx, test_size=size, stratify=stratify, random_state=random_state)
    except ValueError as exc:
        raise InvalidInputError(f"test_size {size}: cannot split {labels.size} rows ({exc}); change --test-size") from None
    is_test = np.zeros(labels.size, dtype=bool)
    is_test[test_idx] = True
    return is_test, {"test_size": size, "stratified": stratify is not None, "split_seed": random_state}


def simulate(
    data: Any,
    *,
    label_col: str = "label",
    text_col: str = "text",
    id_col: str | None = None,
    test_col: str | None = None,
    test_value: str = "test",
    test_size: float | None = None,
    strategies: str | Sequence[str] = DEFAULT_STRATEGIES,
    seeds: int = 5,
    initial: int = 20,
    step: int = 20,
    max_labels: int = 200,
    pool: str | None = None,
    index_dir: PathLike | None = None,
    model: PathLike | None = None,
    out: PathLike | None = None,
    probe_c: float | str = DEFAULT_C,
    reach: Sequence[float] = DEFAULT_REACH,
    random_state: int = 0,
    on_embed_start: Callable[[int], None] | None = None,
    on_embed_progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Does active learning beat random on ``data`` (any file ``fmal embed`` reads, with gold labels)?

    Embeds ``data`` once into a pool (reused when it exists: ``pool`` defaults to the file's stem),
    holds out test rows (``test_col`` rows equal to ``test_value``, else a stratified ``test_size``
    split, 0.3 by default), then runs :func:`simulate_embeddings`. Rows with an empty label are left
    out. With ``out``, writes the JSON, markdown, curves CSV and PNG there (``result.files``).
    """
    from fmal.api import embed  # late: fmal.api re-exports this module's simulate

    random_state = check_seed(random_state)
    from fmal import frames

    source = data  # a path, or the data itself (a DataFrame, a dict {id: text}, ...: fmal.frames)
    table = frames.texts_table(source, "data", text_col=text_col, id_col=id_col)
    data = table.path if frames.is_path(source) else Path(frames.describe(source, "data"))
    frame = table.frame
    if label_col not in frame.columns:
        cols = ", ".join(map(str, frame.columns))
        raise InvalidInputError(f"{data}: no column {label_col!r} (columns: {cols}); pass --label-col")
    raw = [check_label(v, f"{data}: row {i}", label_col) for i, v in enumerate(frame[label_col].tolist(), start=1)]
    has_label = np.asarray([v is not None for v in raw], dtype=bool)
    if not has_label.any():
        raise LabelsError(f"{data}: column {label_col!r} is empty in every row; simulate needs gold labels")
    labels_all = np.asarray([v if v is not None else "" for v in raw], dtype=object)
    present = np.unique(labels_all[has_label].astype(str))
    if present.size < 2:
        raise LabelsError(f"{data}: column {label_col!r} has a single class ({str(present[0])!r}); "
                          "simulate needs two or more classes: check --label-col")
    if test_col is not None:
        is_test_all, split_info = _split(frame, labels_all, data, test_col, test_value, test_size, random_state)
    else:  # a stratified split of the labeled rows only
        lab_idx = np.nonzero(has_label)[0]
        mask, split_info = _split(frame.iloc[lab_idx], labels_all[lab_idx].astype(str), data, None, test_value,
                                  test_size, random_state)
        is_test_all = np.zeros(len(frame), dtype=bool)
        is_test_all[lab_idx[mask]] = True

    pool_name = pool or (default_pool_name(data) if frames.is_path(source) else f"data-{table.fingerprint.split(':')[-1][:12]}")
    emb = embed(source, pool_name, index_dir=index_dir, text_col=text_col, id_col=id_col, model=model,
                on_start=on_embed_start, on_progress=on_embed_progress)
    p = store.open_pool(emb.pool_path)
    rows = p.rows_of(table.ids, source=str(data))
    train = np.nonzero(has_label & ~is_test_all)[0]
    test = np.nonzero(has_label & is_test_all)[0]
    Xall = p.embeddings
    X = np.asarray(Xall[rows[train]], dtype=np.float32)
    X_test = np.asarray(Xall[rows[test]], dtype=np.float32)
    model_info = p.manifest.get("model") or {}
    info = {"data": str(data), "pool": str(p.path), "model": model_info.get("name"),
            "backend": model_info.get("backend"), "model_fingerprint": model_info.get("fingerprint"),
            "label_col": label_col, "split": split_info, "n_rows": len(frame),
            "n_unlabeled_left_out": int((~has_label).sum()), "embedded_now": int(emb.n_embedded),
            "seconds_embed": round(emb.seconds, 3)}
    result = simulate_embeddings(
        X, labels_all[train].astype(str), X_test, labels_all[test].astype(str), strategies=strategies, seeds=seeds,
        initial=initial, step=step, max_labels=max_labels, probe_c=probe_c, reach=reach, random_state=random_state,
        on_start=on_start, on_progress=on_progress, info=info,
    )
    if out is not None:
        write_outputs(result, out)
    return result


# ----------------------------------------------------------------------------- outputs


def plot_curves(result: SimulationResult, path: PathLike, *, title: str | None = None) -> Path:
    """PNG of the accuracy and macro-F1 learning curves, mean and 95% band per strategy (Agg backend)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError("plots need matplotlib: pip install 'fmal[sim]'") from None
    frame = result.to_frame()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for ax, metric, full, label in ((axes[0], "accuracy", result.full_accuracy, "accuracy"),
                                    (axes[1], "macro_f1", result.full_macro_f1, "macro-F1")):
        for i, spec in enumerate(result.strategies):
            f = frame[frame["strategy"] == spec.name]
            style = {"color": "0.35", "linestyle": "--"} if spec.name == result.baseline else {"color": f"C{i}"}
            ax.plot(f["n_labels"], 100 * f[metric], marker="o", markersize=3, label=spec.name, **style)
            if f[f"{metric}_lo"].notna().any():
                ax.fill_between(f["n_labels"], 100 * f[f"{metric}_lo"], 100 * f[f"{metric}_hi"], alpha=0.18,
                                color=style["color"])
        ax.axhline(100 * full, color="k", linewidth=0.8, linestyle=":", label="all train labels")
        ax.set_xlabel("labels")
        ax.set_ylabel(f"test {label} (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title or f"{Path(str(result.info.get('data', 'simulation'))).stem}: mean and 95% interval over "
                 f"{len(result.seeds)} seeds", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_outputs(result: SimulationResult, out: PathLike) -> dict[str, Path]:
    """Write simulation.json (every number), simulation.md, curves.csv (per seed) and
    learning_curves.png into ``out``; returns (and stores in ``result.files``) their paths."""
    out = Path(out)
    files = {k: out / v for k, v in FILES.items()}
    write_json(files["json"], result.to_dict())
    write_text(files["markdown"], result.to_markdown())
    write_table(result.curves, files["curves"])
    plot_curves(result, files["png"])
    result.files = files
    return files
