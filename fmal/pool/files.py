"""The names of a pool folder's files (the layout is drawn in :mod:`fmal.pool`)."""

from __future__ import annotations

from pathlib import Path

FORMAT = "fmal-pool"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS = "rows.parquet"
EMBEDDINGS = "embeddings.npy"
INDEX = "index.faiss"
PARTIAL = ".partial"
DEFAULT_INDEX_DIR = Path("indexes")
