"""fmal: choose what to label first, with foundation-model embeddings.

    pool -> encoder -> embedding store -> FAISS index -> seed -> labels -> probe -> query -> ...
"""

from fmal._version import __version__
from fmal.api import (
    AuditResult,
    EmbedResult,
    ExportResult,
    ImportResult,
    PoolStatus,
    Selection,
    SimulationResult,
    audit,
    embed,
    export,
    import_labels,
    query,
    report,
    seed,
    simulate,
    status,
)
from fmal.encoders import SentenceTransformerEncoder, load_encoder
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
from fmal.probe import LinearProbe
from fmal.query import QUERY_STRATEGIES, QueryContext, QueryResult
from fmal.seed import SEED_STRATEGIES, SeedResult
from fmal.store import Pool, open_pool

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
