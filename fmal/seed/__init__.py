"""Cold start: choose the first rows to label, with no labels (or extending a few)."""

from fmal.seed import clustering, coverage, random  # noqa: F401  (register the strategies)
from fmal.seed.base import SEED_STRATEGIES, SeedResult, SeedStrategy

__all__ = ["SEED_STRATEGIES", "SeedResult", "SeedStrategy"]
