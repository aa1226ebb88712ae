"""A pool: one folder with a JSON manifest, the rows (ids and texts, Parquet), the embeddings
(.npy, read memory-mapped or in blocks) and a FAISS index.

    indexes/NAME/
        manifest.json     written last: its presence means the pool is complete; records each derived
                          file's size, sha256 and shape (fmal.pool.check)
        rows.parquet      id, text
        embeddings.npy    float32 (or float16: --precision) [n_rows, dim], L2-normalised
        index.faiss       FAISS index over embeddings.npy
        labels.db         labels, answers, rounds and their files: the truth (fmal.session)
        labels.csv        view of the current labels (id,label), rewritten from labels.db
        rounds/, probes/  each round's picks (a view) and stored probe
        .lock             the pool's write lock (fmal._lock)
        .partial/         while embedding: progress.json + one .npy per finished chunk
                          (Ray engine: one .parquet + .npy per finished input shard)

Modules: :mod:`~fmal.pool.files` (the names above), :mod:`~fmal.pool.manifest` (the manifest,
read and written in one place, and the build settings), :mod:`~fmal.pool.read` (open a pool),
:mod:`~fmal.pool.build` (embed an input into one), :mod:`~fmal.pool.write` (its files and the
resumable work in ``.partial``), :mod:`~fmal.pool.check` (the derived files against the manifest).
Every name here is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmal.pool.build import BuildResult, build_pool, build_pool_from_shards, check_existing
    from fmal.pool.manifest import BuildSettings, Manifest, read_manifest
    from fmal.pool.read import Pool, open_embeddings, open_pool, pool_path

#: public name -> its module, imported on first access: ``fmal.pool.check`` (which fmal.index and
#: fmal._matrix use) imports nothing else of the package, and ``fmal status`` no encoder code
_LAZY = {
    **dict.fromkeys(["BuildResult", "build_pool", "build_pool_from_shards", "check_existing"], "fmal.pool.build"),
    **dict.fromkeys(["BuildSettings", "Manifest", "read_manifest"], "fmal.pool.manifest"),
    **dict.fromkeys(["Pool", "open_embeddings", "open_pool", "pool_path"], "fmal.pool.read"),
}

__all__ = ["BuildResult", "BuildSettings", "Manifest", "Pool", "build_pool", "build_pool_from_shards", "check_existing",
           "open_embeddings", "open_pool", "pool_path", "read_manifest"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fmal.pool' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
