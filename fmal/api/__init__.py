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

Importing this package imports none of them: each public name is imported from its module on
first use (PEP 562 ``__getattr__``, as :mod:`fmal` and :mod:`fmal.pool` do), so ``api.query``
loads the rounds and not the annotation formats, and a command whose arguments are wrong fails
before pandas (0.3 s) or scikit-learn (0.9 s) are imported. The modules themselves import
scikit-learn, FAISS and torch only inside the functions that use them. ``fmal --help``,
``fmal status`` and ``fmal info`` do not import this package at all (tests/test_startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what static tools see; at run time these come from __getattr__
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

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    **dict.fromkeys(["DEFAULT_QUERY_STRATEGY", "DEFAULT_SEED_STRATEGY"], "fmal._defaults"),
    **dict.fromkeys(["audit", "export", "import_labels"], "fmal.api.annotation"),
    "embed": "fmal.api.embedding",
    **dict.fromkeys(["PoolInfo", "info", "report", "status"], "fmal.api.inspection"),
    **dict.fromkeys(["declare_classes", "parse_classes"], "fmal.api.labelset"),
    **dict.fromkeys(["AuditResult", "EmbedResult", "ExportResult", "ImportResult", "PoolStatus", "Selection",
                     "UndoResult"], "fmal.api.results"),
    **dict.fromkeys(["query", "seed", "undo"], "fmal.api.rounds"),
    "QUERY_STRATEGIES": "fmal.query",
    "SEED_STRATEGIES": "fmal.seed",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fmal.api' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
