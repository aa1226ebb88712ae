"""ONNX Runtime backends of the encoder: export a sentence-transformers model once, cache it, reuse it.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose releases
pin ``transformers<4.58`` while fmal runs on transformers 5. So fmal exports the model itself
(``torch.onnx.export``, the whole module chain up to the sentence embedding: transformer, pooling,
dense, normalize) and runs it with ``onnxruntime``. ``onnx-int8`` is the same graph with its weight
matrices quantised to int8 per output channel (``onnxruntime.quantization.quantize_dynamic``).

The cache lives under ``$FMAL_CACHE/onnx/<model fingerprint>/`` (default ``~/.cache/fmal``), never
inside the model folder (which may sit in a read-only site-packages). ``meta.json`` records each
file's sha256; a missing, truncated or unreadable file is rebuilt with a log message saying why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmal._atomic import atomic_path, write_json
from fmal.exceptions import ModelLoadError

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")
_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
META = "meta.json"
CACHE_FORMAT = 2  # bump when the export or quantisation recipe changes: old caches are rebuilt


def cache_root() -> Path:
    """Where fmal caches exports: ``$FMAL_CACHE`` or ``~/.cache/fmal``."""
    env = os.environ.get("FMAL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fmal"


def cache_dir_for(fingerprint: str, name: str) -> Path:
    """The export folder of one model: keyed by its fingerprint (by its name when it has none)."""
    key = fingerprint.split(":", 1)[-1] if fingerprint != "unknown" else "name-" + hashlib.sha256(name.encode()).hexdigest()
    return cache_root() / "onnx" / key[:32]


def _sha256(f: Path) -> str:
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class OnnxExport:
    """One cached ONNX file of a model and what produced it."""

    path: Path
    backend: str
    sha256: str
    input_names: tuple[str, ...]
    exported_now: bool


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        m = json.loads((folder / META).read_text(encoding="utf-8"))
        return m if isinstance(m, dict) and m.get("format") == CACHE_FORMAT else {}
    except (OSError, ValueError):
        return {}


def _cached(folder: Path, backend: str, fingerprint: str) -> tuple[OnnxExport | None, str]:
    """The cached export when it is intact, else (None, why it is not usable)."""
    meta = _read_meta(folder)
    f = folder / _FILES[backend]
    entry = meta.get("files", {}).get(backend)
    if not f.exists() and not entry:
        return None, "not exported yet"
    if not f.exists():
        return None, f"{f.name} is missing"
    if not entry or meta.get("fingerprint") != fingerprint:
        return None, f"{META} does not describe {f.name}"
    if f.stat().st_size != entry.get("size") or _sha256(f) != entry.get("sha256"):
        return None, f"{f.name} does not match its recorded sha256 (truncated or overwritten)"
    return OnnxExport(f, backend, entry["sha256"], tuple(meta["input_names"]), False), ""


def _wrap(st_model: Any, input_names: tuple[str, ...]) -> Any:
    """A torch module running the whole sentence-transformers chain on tokenised inputs."""
    import torch

    class SentenceEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st_model

        def forward(self, *inputs: Any) -> Any:
            features = dict(zip(input_names, inputs))
            features["modality"] = "text"
            return self.st(features)["sentence_embedding"]

    return SentenceEmbedding().eval()


def input_names_of(st_model: Any) -> tuple[str, ...]:
    """The tensor inputs the model's tokeniser produces (input_ids, attention_mask, ...)."""
    feats = st_model.preprocess(["fmal"])
    return tuple(k for k, v in feats.items() if hasattr(v, "shape"))


def _export_fp32(st_model: Any, out: Path, input_names: tuple[str, ...]) -> None:
    import warnings

    import torch

    feats = st_model.preprocess(["an example sentence to trace", "short"])
    args = tuple(feats[k] for k in input_names)
    dyn = {k: {0: "batch", 1: "seq"} for k in input_names} | {"sentence_embedding": {0: "batch"}}
    with atomic_path(out) as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python control flow: shapes are dynamic
        torch.onnx.export(
            _wrap(st_model, input_names), args, str(tmp), dynamo=False,
            input_names=list(input_names), output_names=["sentence_embedding"], dynamic_axes=dyn, opset_version=17,
        )


def _quantize_int8(src: Path, out: Path) -> None:
    """int8 weights per output channel (7-bit range: no u8*s8 overflow on CPUs without VNNI).

    Only MatMuls with a weight matrix are quantised (attention's activation x activation stays
    fp32), and not the feed-forward output projections: their input comes out of GELU with large
    outliers, and keeping them fp32 took MiniLM's mean cosine to fp32 from 0.991 to 0.995 (min
    0.972 -> 0.987) on the shared data for a few percent of speed."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    g = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in g.initializer}
    nodes = [n.name for n in g.node if n.op_type == "MatMul" and any(i in weights for i in n.input)
             and not ("/output/dense/" in n.name and "attention" not in n.name)]
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantiser logs a line per tensor, and advice, on the root logger
    try:
        with atomic_path(out) as tmp:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                             op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes)
    finally:
        logging.disable(before)


def ensure_export(st_model: Any, fingerprint: str, name: str, backend: str, *, folder: Path | None = None) -> OnnxExport:
    """Return the cached ONNX file of ``backend`` for this model, exporting (once) when it is
    missing or corrupt. The export of ``onnx-int8`` goes through (and keeps) the ``onnx`` one."""
    if backend not in ONNX_BACKENDS:
        raise ValueError(f"backend must be one of {list(ONNX_BACKENDS)}, got {backend!r}")
    folder = folder or cache_dir_for(fingerprint, name)
    found, why = _cached(folder, backend, fingerprint)
    if found is not None:
        log.debug("reusing ONNX export %s", found.path)
        return found
    if why == "not exported yet":
        log.info("exporting %s to ONNX (%s) once; cached in %s", name, backend, folder)
    else:
        log.warning("ONNX cache %s unusable (%s): rebuilding it", folder / _FILES[backend], why)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        names = input_names_of(st_model)
        t0 = time.perf_counter()
        if backend == "onnx-int8":
            fp32 = ensure_export(st_model, fingerprint, name, "onnx", folder=folder)
            _quantize_int8(fp32.path, folder / _FILES[backend])
        else:
            _export_fp32(st_model, folder / _FILES[backend], names)
    except (OSError, RuntimeError, ValueError, ImportError) as exc:
        raise ModelLoadError(
            f"--backend {backend}: could not export {name} to ONNX in {folder} ({type(exc).__name__}: {exc}); "
            "use --backend torch, or set FMAL_CACHE to a writable folder".replace("\n", " ")
        ) from None
    f = folder / _FILES[backend]
    digest = _sha256(f)
    meta = _read_meta(folder)
    if meta.get("fingerprint") != fingerprint:
        meta = {}
    meta.update({"format": CACHE_FORMAT, "fingerprint": fingerprint, "model": name, "input_names": list(names)})
    meta.setdefault("files", {})[backend] = {"file": f.name, "sha256": digest, "size": f.stat().st_size,
                                             "seconds": round(time.perf_counter() - t0, 2)}
    write_json(folder / META, meta)
    log.info("ONNX export %s written in %.1f s", f, time.perf_counter() - t0)
    return OnnxExport(f, backend, digest, names, True)


def make_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads and full graph optimisation."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # warnings about unused initialisers are noise
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def load_session(st_model: Any, fingerprint: str, name: str, backend: str, threads: int) -> tuple[Any, OnnxExport]:
    """Export (or reuse) and open a session; an export that will not load is rebuilt once."""
    exp = ensure_export(st_model, fingerprint, name, backend)
    try:
        return make_session(exp.path, threads), exp
    except Exception as exc:  # onnxruntime raises its own exception types
        log.warning("ONNX cache %s will not load (%s): rebuilding it", exp.path, type(exc).__name__)
        exp.path.unlink(missing_ok=True)
        exp = ensure_export(st_model, fingerprint, name, backend)
        return make_session(exp.path, threads), exp


def run_sorted(session: Any, st_model: Any, texts: list[str], input_names: tuple[str, ...], batch_size: int,
               dim: int, window: int = 8192) -> np.ndarray:
    """Embed ``texts`` with an ONNX session: tokenise a window at once, sort by token count, run
    batches cut to their own longest text (little padding), and put rows back in input order."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    right_padded = getattr(getattr(st_model, "tokenizer", None), "padding_side", "right") == "right"
    for w0 in range(0, len(texts), window):
        part = texts[w0 : w0 + window]
        feats = st_model.preprocess(part)
        arrays = {k: feats[k].numpy() for k in input_names}
        lengths = arrays["attention_mask"].sum(axis=1) if "attention_mask" in arrays else np.full(len(part), 1)
        order = np.argsort(-lengths, kind="stable")
        for b0 in range(0, len(part), batch_size):
            idx = order[b0 : b0 + batch_size]
            if right_padded:
                top = int(lengths[idx].max())
                batch = {k: np.ascontiguousarray(v[idx, :top]) for k, v in arrays.items()}
            else:
                f = st_model.preprocess([part[i] for i in idx])
                batch = {k: f[k].numpy() for k in input_names}
            emb = session.run(["sentence_embedding"], batch)[0]
            out[w0 + idx] = emb
    return out
