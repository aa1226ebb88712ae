"""Query rounds: given a probe, choose the next rows to label."""

from fmal.query import uncertainty  # noqa: F401  (register the strategies)
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, QueryStrategy
from fmal.query.measures import entropy, least_confidence, margin

__all__ = ["QUERY_STRATEGIES", "QueryContext", "QueryResult", "QueryStrategy", "entropy", "least_confidence", "margin"]
