"""Cold start: choose the first rows to label, with no labels (or extending a few)."""

from fmal.seed import auto, clustering, coverage, random  # noqa: F401  (register the strategies)
from fmal.seed.base import SEED_STRATEGIES, SeedResult, SeedStrategy, check_params, select
from fmal.seed.diagnostics import diagnose

__all__ = ["SEED_STRATEGIES", "SeedResult", "SeedStrategy", "check_params", "diagnose", "select"]
