"""The embedding pass on Ray Data: chunks of unique texts flow to a pool of stateful encoder actors
(one model per actor, loaded once) and come back to the driver, which saves each chunk as it
arrives. A killed driver or worker loses only the chunks not yet saved; a rerun skips the rest.

Embeddings travel back to the driver (as .npy bytes), so workers need no shared filesystem.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmal.exceptions import FmalError, InvalidInputError
from fmal.store import Chunk, save_chunk

log = logging.getLogger(__name__)


class _EmbedActor:
    """A Ray actor holding one encoder; embeds one chunk per call."""

    def __init__(self, encoder_kwargs: dict[str, Any], batch_size: int) -> None:
        from fmal.encoders import load_encoder

        self.encoder = load_encoder(**encoder_kwargs)
        self.batch_size = batch_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for texts in batch["texts"]:
            emb = self.encoder.encode([str(t) for t in texts], batch_size=self.batch_size, normalize=True)
            buf = io.BytesIO()
            np.save(buf, emb, allow_pickle=False)
            out.append(buf.getvalue())
        return {"index": batch["index"], "emb": np.asarray(out, dtype=object)}


class RayEngine:
    """Embed chunks on Ray: ``address=None`` starts a local Ray with this machine's cores,
    ``address="ray://host:10001"`` or ``"auto"`` joins a running cluster."""

    def __init__(
        self,
        encoder_kwargs: dict[str, Any],
        *,
        batch_size: int = 64,
        address: str | None = None,
        workers: int | None = None,
    ) -> None:
        self.encoder_kwargs = encoder_kwargs
        self.batch_size = batch_size
        self.address = address
        self.workers = workers

    def _init(self) -> int:
        try:
            import ray
        except ImportError:
            raise InvalidInputError("--engine ray needs Ray: pip install 'fmal[ray]' (or ray[data])") from None
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "ignore_reinit_error": True}
            if self.address:
                kwargs["address"] = self.address
            else:
                kwargs["num_cpus"] = os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except Exception as exc:
                raise FmalError(f"--engine ray: cannot start or join Ray ({type(exc).__name__}: {exc})".replace("\n", " ")) from None
        return int(ray.cluster_resources().get("CPU", 1))

    def run(self, chunks: list[Chunk], texts: list[str], partial: Path) -> Iterator[Chunk]:
        if not chunks:
            return
        import ray

        cpus = self._init()
        workers = self.workers or max(1, min(len(chunks), cpus))
        # leave a share of a CPU to Ray Data's own read/write tasks, or a small machine hangs
        cpus_per_actor = max(0.25, (cpus - 0.5) / workers)
        threads = max(1, int(cpus_per_actor))
        kwargs = {**self.encoder_kwargs, "threads": self.encoder_kwargs.get("threads") or threads}
        by_index = {ch.index: ch for ch in chunks}
        items = [{"index": ch.index, "texts": texts[ch.lo : ch.hi]} for ch in chunks]
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * workers))
        ds = ds.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"encoder_kwargs": kwargs, "batch_size": self.batch_size},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus_per_actor,
        )
        for row in ds.iter_rows():
            ch = by_index[int(row["index"])]
            emb = np.load(io.BytesIO(row["emb"]), allow_pickle=False)
            if emb.shape[0] != ch.hi - ch.lo:
                raise FmalError(f"--engine ray: chunk {ch.index} came back with {emb.shape[0]} rows, expected {ch.hi - ch.lo}")
            save_chunk(partial / ch.file_name, emb)
            yield ch
