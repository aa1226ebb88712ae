"""The embedding pass on Ray Data, reading its own input: the driver lists and fingerprints the
shards (``fmal.io.list_shards``); Ray tasks read and validate each unfinished shard with fmal's
own reader (``fmal.io.read_shard``, the local engine's, so errors are the same), cut it into
pieces of ``chunk_size`` texts, and a pool of stateful encoder actors (one model per actor, loaded
once) embeds them. Pieces come back to the driver, which saves each shard once all its pieces
are in (``fmal.pool.write.save_shard``): a killed driver or worker loses only unfinished shards.

Workers read the input by path (the same machine, or a filesystem every node sees); embeddings
travel back to the driver as .npy bytes, so the pool needs no shared filesystem.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fmal import exceptions as fmal_exceptions
from fmal.exceptions import FmalError, InvalidInputError
from fmal.engines.shards import ShardResult, ShardTask, unique_texts

log = logging.getLogger(__name__)

# the columns of a piece of a shard on its way through the pipeline
_PIECE = ("task", "part", "n_parts", "texts", "ids", "digest", "error", "error_type")


def _column(values: list[Any]) -> np.ndarray:
    """A 1-d object column (np.asarray would turn equal-length lists into a 2-d array)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _read_shards(batch: dict[str, np.ndarray], *, text_col: str, id_col: str | None, chunk_size: int) -> dict[str, np.ndarray]:
    """Ray task: read and validate shards (one per input row) into pieces of ``chunk_size`` texts.

    A user error (a bad row, a missing column) comes back as data, the error of the local engine,
    so the driver can raise it as it is: Ray would turn it into a traceback and drop its type."""
    from fmal.io import read_shard

    rows: list[tuple[Any, ...]] = []
    for task, path in zip(batch["task"], batch["path"]):
        try:
            shard = read_shard(Path(str(path)), text_col=text_col, id_col=id_col)
        except FmalError as exc:
            rows.append((int(task), 0, 1, "[]", "null", "", str(exc), type(exc).__name__))
            continue
        n_parts = max(1, -(-len(shard.texts) // chunk_size))
        for p in range(n_parts):
            lo, hi = p * chunk_size, (p + 1) * chunk_size
            ids = None if shard.ids is None else shard.ids[lo:hi]
            rows.append((int(task), p, n_parts, json.dumps(shard.texts[lo:hi]), json.dumps(ids), shard.digest, "", ""))
    cols = {name: [r[i] for r in rows] for i, name in enumerate(_PIECE)}
    return {name: np.asarray(v, dtype=np.int64) if name in ("task", "part", "n_parts") else _column(v) for name, v in cols.items()}


class _EmbedActor:
    """A Ray actor holding one encoder; embeds the distinct texts of one piece per call."""

    def __init__(self, encoder_kwargs: dict[str, Any], batch_size: int) -> None:
        from fmal.encoders import load_encoder

        self.batch_size = batch_size
        self.error: FmalError | None = None
        try:
            self.encoder = load_encoder(**encoder_kwargs)
        except FmalError as exc:  # sent back as data with each piece, as the reader's errors are
            self.error = exc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: batch[k] for k in _PIECE}
        if self.error is not None:
            n = len(batch["task"])
            out["error"] = _column([str(self.error)] * n)
            out["error_type"] = _column([type(self.error).__name__] * n)
        embs, counts = [], []
        for texts_json, error in zip(batch["texts"], out["error"]):
            if error:
                embs.append(b"")
                counts.append(0)
                continue
            uniq, inverse = unique_texts(json.loads(str(texts_json)))
            emb = self.encoder.encode(uniq, batch_size=self.batch_size, normalize=True)[inverse]
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(emb, dtype=np.float32), allow_pickle=False)
            embs.append(buf.getvalue())
            counts.append(len(uniq))
        return {**out, "emb": _column(embs), "n_embedded": np.asarray(counts, dtype=np.int64)}


def _error(error_type: str, message: str) -> FmalError:
    """The fmal error a worker sent back as data, of its own type (so of its own exit code)."""
    cls = getattr(fmal_exceptions, error_type, None)
    return cls(message) if isinstance(cls, type) and issubclass(cls, FmalError) else FmalError(message)


class RayEngine:
    """Read and embed shards on Ray: ``address=None`` starts a local Ray with this machine's cores,
    ``address="ray://host:10001"`` or ``"auto"`` joins a running cluster. ``workers`` fixes the
    number of encoder actors; by default the pool grows from one to one per CPU as work queues.
    ``gpus_per_worker`` > 0: each encoder actor requests that many GPUs from Ray (Ray then sets the
    actor's CUDA_VISIBLE_DEVICES, and the encoder's ``device="auto"`` finds it)."""

    def __init__(
        self,
        encoder_kwargs: dict[str, Any],
        *,
        batch_size: int = 64,
        address: str | None = None,
        workers: int | None = None,
        gpus_per_worker: float = 0.0,
    ) -> None:
        self.encoder_kwargs = encoder_kwargs
        self.batch_size = batch_size
        self.address = address
        self.workers = workers
        self.gpus_per_worker = float(gpus_per_worker)

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

    def run_shards(self, tasks: list[ShardTask], *, text_col: str, id_col: str | None, chunk_size: int) -> Iterator[ShardResult]:
        """Read, validate and embed ``tasks`` on Ray; yield each shard once all its pieces are back."""
        if not tasks:
            return
        import ray

        cpus = self._init()
        workers = self.workers or max(1, cpus)
        # leave a share of a CPU to the reader tasks, or a small machine hangs
        cpus_per_actor = max(0.25, (cpus - 0.5) / workers)
        threads = max(1, int(cpus_per_actor))
        kwargs = {**self.encoder_kwargs, "threads": self.encoder_kwargs.get("threads") or threads}
        items = [{"task": i, "path": str(t.file)} for i, t in enumerate(tasks)]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            _read_shards, fn_kwargs={"text_col": text_col, "id_col": id_col, "chunk_size": chunk_size},
            batch_size=1, batch_format="numpy", num_cpus=0.25,
        )
        pool = ray.data.ActorPoolStrategy(size=self.workers) if self.workers else ray.data.ActorPoolStrategy(min_size=1, max_size=workers)
        ds = ds.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"encoder_kwargs": kwargs, "batch_size": self.batch_size},
            batch_size=1,
            batch_format="numpy",
            compute=pool,
            num_cpus=cpus_per_actor,
            **({"num_gpus": self.gpus_per_worker} if self.gpus_per_worker > 0 else {}),
        )
        pieces: dict[int, dict[int, dict[str, Any]]] = {}
        for row in ds.iter_rows():
            if row["error"]:
                raise _error(str(row["error_type"]), str(row["error"]))
            i = int(row["task"])
            parts = pieces.setdefault(i, {})
            parts[int(row["part"])] = row
            if len(parts) == int(row["n_parts"]):
                yield self._shard(tasks[i], [parts[p] for p in range(len(parts))])
                del pieces[i]

    @staticmethod
    def _shard(task: ShardTask, parts: list[dict[str, Any]]) -> ShardResult:
        """One shard from its pieces, checked against the bytes the driver fingerprinted."""
        if parts[0]["digest"] != task.digest:
            raise InvalidInputError(f"{task.file}: changed while fmal embed was reading it; rerun the command")
        texts: list[str] = []
        ids: list[str] | None = None if json.loads(parts[0]["ids"]) is None else []
        for part in parts:
            texts += json.loads(part["texts"])
            if ids is not None:
                ids += json.loads(part["ids"])
        emb = np.concatenate([np.load(io.BytesIO(part["emb"]), allow_pickle=False) for part in parts])
        return ShardResult(task.key, texts, ids, emb, sum(int(part["n_embedded"]) for part in parts))
