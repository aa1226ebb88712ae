"""The operations of fmal, one function per CLI command. The CLI only parses, calls one of these,
and prints what it returns.

By job (each module imports only those above it in this list, and none imports fmal.cli):

    results     the result dataclasses (EmbedResult, Selection, UndoResult, PoolStatus,
                ExportResult, ImportResult, AuditResult); plain data, imports no operation
    labelset    the pool's declared classes: declare_classes (and classes= of seed, export, import)
    embedding   embed: texts, images or vectors made elsewhere into a pool folder
    rounds      seed, query, undo and the round bookkeeping they share (_finish_round, probes,
                the stopping signal)
    annotation  export, import_labels, audit: the loop with the annotation tools
    inspection  status, info (fmal.describe, light enough for fmal status/info), report

Importing this package imports what the operations need at module level (pandas, numpy, the
strategy registries) but not scikit-learn, FAISS or torch: those load inside the functions that
use them. ``fmal --help``, ``fmal status`` and ``fmal info`` do not import this package at all
(tests/test_startup.py).
"""

from fmal._defaults import DEFAULT_QUERY_STRATEGY, DEFAULT_SEED_STRATEGY
from fmal.api.annotation import audit, export, import_labels
from fmal.api.embedding import embed
from fmal.api.inspection import PoolInfo, info, report, status
from fmal.api.labelset import declare_classes, parse_classes
from fmal.api.results import (
    AuditResult,
    EmbedResult,
    ExportResult,
    ImportResult,
    PoolStatus,
    Selection,
    UndoResult,
)
from fmal.api.rounds import query, seed, undo
from fmal.query import QUERY_STRATEGIES  # the strategies query(strategy=) accepts
from fmal.seed import SEED_STRATEGIES  # the strategies seed(strategy=) accepts

__all__ = [
    "DEFAULT_QUERY_STRATEGY",
    "DEFAULT_SEED_STRATEGY",
    "QUERY_STRATEGIES",
    "SEED_STRATEGIES",
    "AuditResult",
    "EmbedResult",
    "ExportResult",
    "ImportResult",
    "PoolInfo",
    "PoolStatus",
    "Selection",
    "UndoResult",
    "audit",
    "declare_classes",
    "embed",
    "export",
    "import_labels",
    "info",
    "parse_classes",
    "query",
    "report",
    "seed",
    "status",
    "undo",
]
