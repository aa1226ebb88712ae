"""fmal: choose what to label first, with foundation-model embeddings.

    pool -> encoder -> embedding store -> FAISS index -> seed -> labels -> probe -> query -> ...

The public names below are imported when first used (PEP 562 ``__getattr__``, as scikit-learn
does), so ``import fmal`` and ``fmal --help`` do not pay for scikit-learn, FAISS, pandas or torch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from fmal._version import __version__
from fmal.exceptions import (
    CorruptPoolError,
    FmalError,
    InvalidInputError,
    LabelsError,
    ModelLoadError,
    ModelMismatchError,
    PoolBusyError,
    PoolError,
    PoolExhaustedError,
    PoolExistsError,
    PoolNotFoundError,
)

if TYPE_CHECKING:  # what static tools see; at run time these come from __getattr__
    from fmal.api import (
        AuditResult,
        EmbedResult,
        ExportResult,
        ImportResult,
        PoolStatus,
        Selection,
        audit,
        embed,
        export,
        import_labels,
        query,
        report,
        seed,
        status,
    )
    from fmal.encoders import SentenceTransformerEncoder, load_encoder
    from fmal.probe import LinearProbe
    from fmal.probe_multilabel import MultiLabelProbe
    from fmal.query import QUERY_STRATEGIES, QueryContext, QueryResult
    from fmal.seed import SEED_STRATEGIES, SeedResult
    from fmal.simulate import SimulationResult, simulate
    from fmal.pool import Pool, open_pool

#: public name -> the module that defines it (imported on first access)
_LAZY = {
    **dict.fromkeys(["AuditResult", "EmbedResult", "ExportResult", "ImportResult", "PoolStatus", "Selection",
                     "audit", "embed", "export", "import_labels", "query", "report", "seed", "status"], "fmal.api"),
    "SentenceTransformerEncoder": "fmal.encoders",
    "load_encoder": "fmal.encoders",
    "LinearProbe": "fmal.probe",
    "MultiLabelProbe": "fmal.probe_multilabel",
    "QUERY_STRATEGIES": "fmal.query",
    "QueryContext": "fmal.query",
    "QueryResult": "fmal.query",
    "SEED_STRATEGIES": "fmal.seed",
    "SeedResult": "fmal.seed",
    "SimulationResult": "fmal.simulate",
    "simulate": "fmal.simulate",
    "Pool": "fmal.pool",
    "open_pool": "fmal.pool",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fmal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


#: API functions named like a submodule (fmal.seed the function, fmal/seed/ the package)
_SHADOWED = frozenset(n for n, m in _LAZY.items() if m in ("fmal.api", "fmal.simulate") and n[0].islower())


class _Fmal(types.ModuleType):
    """``fmal.seed`` is the API function, as when this package imported fmal.api eagerly: importing
    the submodule ``fmal.seed`` (which binds it on its parent) must not hide the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Fmal


__all__ = [
    "QUERY_STRATEGIES",
    "SEED_STRATEGIES",
    "AuditResult",
    "CorruptPoolError",
    "EmbedResult",
    "ExportResult",
    "FmalError",
    "ImportResult",
    "InvalidInputError",
    "LabelsError",
    "LinearProbe",
    "ModelLoadError",
    "ModelMismatchError",
    "MultiLabelProbe",
    "Pool",
    "PoolBusyError",
    "PoolError",
    "PoolExhaustedError",
    "PoolExistsError",
    "PoolNotFoundError",
    "PoolStatus",
    "QueryContext",
    "QueryResult",
    "SeedResult",
    "Selection",
    "SentenceTransformerEncoder",
    "SimulationResult",
    "__version__",
    "audit",
    "embed",
    "export",
    "import_labels",
    "load_encoder",
    "open_pool",
    "query",
    "report",
    "seed",
    "simulate",
    "status",
]
