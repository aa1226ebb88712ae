"""The interface between the pool builder and an engine that reads its input itself (the Ray
engine): the builder hands it one :class:`ShardTask` per unfinished input file and gets back one
:class:`ShardResult` per shard read and embedded (saved by :func:`fmal.pool.write.save_shard`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class ShardTask:
    """One input file for an engine that reads its input itself: read ``file``, embed its texts."""

    key: str
    file: Path
    digest: str


@dataclass(frozen=True)
class ShardResult:
    """One shard read and embedded: its validated texts, ids (None: generated at assembly) and
    id column, the embeddings in row order, and how many texts were embedded for it."""

    key: str
    texts: list[str]
    ids: list[str] | None
    emb: np.ndarray
    n_embedded: int


class ShardEngine(Protocol):
    """Reads input files (with ``fmal.io.read_shard``) and embeds them; yields each shard once done."""

    def run_shards(self, tasks: list[ShardTask], *, text_col: str, id_col: str | None, chunk_size: int) -> Iterator[ShardResult]: ...


def shard_key(digest: str) -> str:
    """The name of a shard's files in ``.partial``: from its bytes, so a changed shard is redone
    and an unchanged one is reused, wherever it sits in the folder."""
    return "shard-" + digest.split(":", 1)[-1][:32]


def unique_texts(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order and, per row, the index of its unique text (what an engine
    embeds: each distinct text once)."""
    first: dict[str, int] = {}
    inverse = np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        inverse[i] = first.setdefault(t, len(first))
    return list(first), inverse
