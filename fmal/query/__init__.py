"""Query rounds: given a probe, choose the next rows to label."""

from fmal.query import adaptive, auto, diverse, multilabel, uncertainty  # noqa: F401  (register the strategies)
from fmal.query.base import QUERY_STRATEGIES, QueryContext, QueryResult, QueryStrategy
from fmal.query.candidates import CandidateSpec, knn_candidates, parse_candidates
from fmal.query.measures import entropy, least_confidence, margin
from fmal.query.stopping import StopSignal, cohen_kappa, stop_sample, stop_signal

__all__ = [
    "QUERY_STRATEGIES", "CandidateSpec", "QueryContext", "QueryResult", "QueryStrategy", "StopSignal", "cohen_kappa",
    "entropy", "knn_candidates", "least_confidence", "margin", "parse_candidates", "stop_sample", "stop_signal",
]
