"""Strategy names of a simulation: ``"random,typiclust+margin"`` -> one :class:`StrategySpec` each.

Names are looked up in the registries at parse time, so new strategies work as they land.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fmal.exceptions import InvalidInputError
from fmal.query import QUERY_STRATEGIES
from fmal.seed import SEED_STRATEGIES

BASELINE = "random"
DEFAULT_STRATEGIES = ("random", "typiclust+margin")


@dataclass(frozen=True)
class StrategySpec:
    """A simulated strategy: the seed strategy of the first round and the query strategy after it
    (registry names; the integer random seeds are the simulation's, not the spec's)."""

    name: str
    seed_strategy: str
    query_strategy: str

    @property
    def is_random(self) -> bool:
        return self.seed_strategy == "random" and self.query_strategy == "random"


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
