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

One module per job, in pipeline order:

    spec.py     "random,typiclust+margin" -> StrategySpec (seed strategy + query strategy)
    loop.py     the simulation on embeddings: seed, fit the probe, score, query (strategy call sites)
    stats.py    mean and t-interval over seeds, AULC, labels to reach a target
    results.py  SimulationResult / StrategySummary, verdict and advice, JSON and markdown
    data.py     a labeled file -> test split -> pool embeddings -> the loop (``simulate``)
    outputs.py  simulation.json, .md, curves.csv and the PNG (matplotlib: the ``plots`` extra)
"""

from fmal.simulate.data import default_pool_name, simulate
from fmal.simulate.loop import simulate_embeddings
from fmal.simulate.outputs import FILES, plot_curves, write_outputs
from fmal.simulate.results import SimulationResult, StrategySummary
from fmal.simulate.spec import BASELINE, DEFAULT_STRATEGIES, StrategySpec, parse_strategies
from fmal.simulate.stats import CONFIDENCE, DEFAULT_REACH, aulc, labels_to_reach, mean_ci

__all__ = [
    "BASELINE",
    "CONFIDENCE",
    "DEFAULT_REACH",
    "DEFAULT_STRATEGIES",
    "FILES",
    "SimulationResult",
    "StrategySpec",
    "StrategySummary",
    "aulc",
    "default_pool_name",
    "labels_to_reach",
    "mean_ci",
    "parse_strategies",
    "plot_curves",
    "simulate",
    "simulate_embeddings",
    "write_outputs",
]
