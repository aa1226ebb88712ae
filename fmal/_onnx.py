"""ONNX Runtime backends of the encoder: export a sentence-transformers model once, cache it, reuse it.

Why not sentence-transformers' own ``backend="onnx"``: it needs ``optimum-onnx``, whose releases
pin ``transformers<4.58`` while fmal runs on transformers 5. So fmal exports the model itself
(``torch.onnx.export``, the whole module chain up to the sentence embedding: transformer, pooling,
dense, normalize) and runs it with ``onnxruntime``. The transformer is exported with eager attention
so that onnxruntime's transformer optimizer can fuse each layer into a few kernels (Attention,
SkipLayerNormalization, BiasGelu, EmbedLayerNormalization); a fused graph that does not reproduce the
unfused one is discarded for the unfused one. ``onnx`` (fp32, fused) is fmal's default backend: on the
shipped datasets it costs nothing against torch. ``onnx-int8`` is the fused graph with its weight
matrices quantised to int8 per output channel (``onnxruntime.quantization.quantize_dynamic``): faster,
but its activations are quantised per batch, which misses fmal's accuracy bar on one dataset (README,
"Encoder speed").

The cache lives under ``$FMAL_CACHE/onnx/<model fingerprint>/`` (default ``~/.cache/fmal``), never
inside the model folder (which may sit in a read-only site-packages). ``meta.json`` records each
file's sha256 and the export recipe (``RECIPE``); a missing, truncated or unreadable file, or one
made by another recipe (an older fmal, another onnxruntime), is rebuilt with a log message saying why.
"""

from __future__ import annotations

import hashlib
import functools
import json
import logging
import os
import platform
import re
import time
from concurrent.futures import ThreadPoolExecutor
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
CACHE_FORMAT = 4  # bump when the export or quantisation recipe changes: old caches are rebuilt


@functools.lru_cache(maxsize=1)
def cpu_has_vnni() -> bool:
    """Whether this CPU multiplies u8 x s8 without the 16-bit saturation of pre-VNNI x86 (AVX-512
    VNNI, AVX-VNNI or AMX on x86; any non-x86 CPU, whose int8 kernels do not saturate). Decides the
    int8 weight range at export time; recorded in the recipe, so a cache moved to another CPU is
    rebuilt."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), [])
    except OSError:
        return False  # unknown: the 7-bit range is safe everywhere
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags))


def _ort_version() -> str:
    try:
        import onnxruntime

        return ".".join(onnxruntime.__version__.split(".")[:2])
    except ImportError:
        return "none"


# What produced a cached file: a cache whose recipe differs is rebuilt (fused graphs use onnxruntime's
# contrib operators, so the onnxruntime version that fused and quantised them is part of it)
RECIPE = {
    "format": CACHE_FORMAT,
    "export": "torch.onnx.export opset 17, eager attention, transformer+pooling+dense+normalize",
    "fuse": "onnxruntime.transformers optimizer, bert fusions, raw 2-D attention mask; unfused if it differs",
    "int8": f"quantize_dynamic QInt8 per channel, {'8-bit weights (VNNI)' if cpu_has_vnni() else 'reduce_range'}, "
            "MatMul+Attention weights, except the first layer's feed-forward matmuls",
    "onnxruntime": _ort_version(),
}
RECIPE_ID = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:16]


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


def _read_meta(folder: Path, *, any_recipe: bool = False) -> dict[str, Any]:
    """The folder's meta.json ({} when unreadable, or made by another recipe unless ``any_recipe``)."""
    try:
        m = json.loads((folder / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(m, dict):
        return {}
    return m if any_recipe or m.get("recipe") == RECIPE_ID else {}


def _cached(folder: Path, backend: str, fingerprint: str) -> tuple[OnnxExport | None, str]:
    """The cached export when it is intact, else (None, why it is not usable)."""
    raw = _read_meta(folder, any_recipe=True)
    meta = raw if raw.get("recipe") == RECIPE_ID else {}
    f = folder / _FILES[backend]
    entry = meta.get("files", {}).get(backend)
    if raw and not meta and f.exists():
        old = f"recipe {raw['recipe']}" if raw.get("recipe") else f"cache format {raw.get('format', '?')}"
        old += f", onnxruntime {raw['onnxruntime']}" if raw.get("onnxruntime") else ""
        return None, (f"{f.name} was made by an older or different export recipe ({old}; this fmal uses "
                      f"recipe {RECIPE_ID}, onnxruntime {RECIPE['onnxruntime']})")
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


_TRACE_TEXTS = ["an example sentence to trace", "short"]
_CHECK_TEXTS = ["Fusing the graph must not change the embedding of this sentence.", "a",
                "What is the capital of Australia, and when did it become the capital?", "ok then"]


def _eager_attention(st_model: Any) -> tuple[Any, str | None]:
    """Switch the transformer to eager attention (what the optimizer's fusions recognise); return
    the model and the implementation to restore."""
    first = st_model[0] if len(st_model) else None
    auto = getattr(first, "auto_model", None)
    cfg = getattr(auto, "config", None)
    before = getattr(cfg, "_attn_implementation", None)
    if auto is None or before in (None, "eager"):
        return auto, None
    try:
        if hasattr(auto, "set_attn_implementation"):
            auto.set_attn_implementation("eager")
        else:
            cfg._attn_implementation = "eager"
    except Exception as exc:  # a model without an eager path: export what it has
        log.info("could not switch %s to eager attention (%s); exporting it as it is", type(auto).__name__, exc)
        return auto, None
    return auto, before


def _restore_attention(auto: Any, before: str | None) -> None:
    if auto is None or before is None:
        return
    if hasattr(auto, "set_attn_implementation"):
        auto.set_attn_implementation(before)
    else:
        auto.config._attn_implementation = before


def _torch_export(st_model: Any, out: Path, input_names: tuple[str, ...]) -> None:
    import warnings

    import torch

    feats = st_model.preprocess(_TRACE_TEXTS)
    args = tuple(feats[k] for k in input_names)
    dyn = {k: {0: "batch", 1: "seq"} for k in input_names} | {"sentence_embedding": {0: "batch"}}
    auto, before = _eager_attention(st_model)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about python control flow: shapes are dynamic
            torch.onnx.export(
                _wrap(st_model, input_names), args, str(out), dynamo=False,
                input_names=list(input_names), output_names=["sentence_embedding"], dynamic_axes=dyn, opset_version=17,
            )
    finally:
        _restore_attention(auto, before)


def _check_feeds(st_model: Any, input_names: tuple[str, ...]) -> dict[str, np.ndarray]:
    feats = st_model.preprocess(_CHECK_TEXTS)
    return {k: feats[k].numpy() for k in input_names}


def _fuse(st_model: Any, src: Path, out: Path, input_names: tuple[str, ...]) -> dict[str, int]:
    """Write the graph of ``src`` with onnxruntime's transformer fusions applied to ``out`` and
    return the fused operator counts; raise ValueError when nothing fused or the fused graph does
    not reproduce ``src`` (cosine >= 0.99999 on a few sentences)."""
    from onnxruntime.transformers.fusion_options import AttentionMaskFormat, FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = getattr(getattr(st_model[0], "auto_model", None), "config", None) if len(st_model) else None
    heads, hidden = getattr(cfg, "num_attention_heads", 0), getattr(cfg, "hidden_size", 0)
    opts = FusionOptions("bert")
    opts.attention_mask_format = AttentionMaskFormat.AttentionMask  # no assumption about the padding side
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the optimizer logs every fusion on the root logger
    try:
        model = optimize_model(str(src), model_type="bert", num_heads=int(heads or 0), hidden_size=int(hidden or 0),
                               optimization_options=opts, opt_level=0)
    finally:
        logging.disable(before)
    stats = {k: int(v) for k, v in model.get_fused_operator_statistics().items() if v}
    if not stats.get("Attention"):
        raise ValueError(f"no attention layer fused ({stats or 'nothing fused'})")
    with atomic_path(out) as tmp:
        model.save_model_to_file(str(tmp))
        feeds = _check_feeds(st_model, input_names)
        a = make_session(src).run(["sentence_embedding"], feeds)[0]
        b = make_session(tmp).run(["sentence_embedding"], feeds)[0]
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        if a.shape != b.shape or not np.all(cos >= 0.99999):
            raise ValueError(f"the fused graph differs from the exported one (cosine {cos.min():.6f})")
    return stats


def _export_fp32(st_model: Any, out: Path, input_names: tuple[str, ...]) -> dict[str, Any]:
    """Export the model to ``out``, fused when onnxruntime's optimizer can fuse it; return the fused
    operator counts ({} when it runs unfused)."""
    unfused = out.with_name(f".{out.stem}-unfused-{os.getpid()}.onnx")
    try:
        _torch_export(st_model, unfused, input_names)
        try:
            return _fuse(st_model, unfused, out, input_names)
        except Exception as exc:  # the optimizer does not know this architecture: keep the plain export
            log.warning("ONNX export runs unfused (slower): %s: %s", type(exc).__name__, exc)
            os.replace(unfused, out)
            return {}
    finally:
        unfused.unlink(missing_ok=True)


_FIRST_FFN = re.compile(r"layers?[./_]0[./](intermediate|output)[./]dense")  # not layer.0/attention/output/dense


def _int8_nodes(src: Path) -> list[str]:
    """The nodes to quantise: every MatMul with a weight matrix and every fused Attention (its QKV
    projection), except the first layer's two feed-forward matmuls (see _quantize_int8)."""
    import onnx

    g = onnx.load(str(src), load_external_data=False).graph
    weights = {i.name for i in g.initializer}
    nodes = [n.name for n in g.node
             if n.op_type == "Attention" or (n.op_type == "MatMul" and any(i in weights for i in n.input))]
    return [n for n in nodes if not _FIRST_FFN.search(n)]


def _quantize_int8(src: Path, out: Path) -> None:
    """int8 weights per output channel, activations quantised per batch (dynamic). The full 8-bit
    weight range on CPUs with VNNI (:func:`cpu_has_vnni`), else 7 bits (``reduce_range``: no u8 x s8
    overflow in the 16-bit intermediate sums of AVX2/AVX-512 without VNNI). On the 2-core Zen 4
    machine (2,000 mixed texts, fp32 export as reference): 7-bit mean cosine 0.9934, 8-bit 0.9943
    and about 10% less CPU time.

    Quantised: the fused Attention nodes' QKV projections and every MatMul with a weight matrix
    except the first layer's feed-forward pair (2/18 of the matmul FLOPs), the most sensitive
    matrices. On MiniLM-L6 and the shared data, everything int8: mean cosine to fp32 0.991, trec6
    probe -0.50 points; first FFN output projection fp32: 0.993, -0.50; the pair fp32: 0.9934,
    -0.06 (no other single matrix moved the mean cosine by more than 0.0008)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = _int8_nodes(src)
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the quantiser logs a line per tensor, and advice, on the root logger
    try:
        with atomic_path(out) as tmp:
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=not cpu_has_vnni(),
                             op_types_to_quantize=["MatMul", "Attention"], nodes_to_quantize=nodes,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
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
        extra: dict[str, Any] = {}
        if backend == "onnx-int8":
            fp32 = ensure_export(st_model, fingerprint, name, "onnx", folder=folder)
            t0 = time.perf_counter()
            _quantize_int8(fp32.path, folder / _FILES[backend])
        else:
            extra["fused"] = _export_fp32(st_model, folder / _FILES[backend], names)
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
        # files of the other backend made by another recipe or model: remove them now, so that they
        # are rebuilt ("not exported yet") rather than reported as undescribed
        for other, fname in _FILES.items():
            if other != backend and (folder / fname).exists():
                (folder / fname).unlink(missing_ok=True)
                log.info("removed %s, made by another export recipe", folder / fname)
    meta.update({"format": CACHE_FORMAT, "recipe": RECIPE_ID, "recipe_text": RECIPE, "onnxruntime": RECIPE["onnxruntime"],
                 "fingerprint": fingerprint, "model": name, "input_names": list(names)})
    meta.setdefault("files", {})[backend] = {"file": f.name, "sha256": digest, "size": f.stat().st_size,
                                             "seconds": round(time.perf_counter() - t0, 2), **extra}
    write_json(folder / META, meta)
    log.info("ONNX export %s written in %.1f s", f, time.perf_counter() - t0)
    return OnnxExport(f, backend, digest, names, True)


def is_fused(path: Path) -> bool | None:
    """Whether the cached export at ``path`` (either backend) runs the fused graph: the fp32 export's
    recorded operator counts (``{}`` when it fell back to the unfused graph). None when unrecorded."""
    entry = _read_meta(path.parent, any_recipe=True).get("files", {}).get("onnx")
    if not isinstance(entry, dict) or "fused" not in entry:
        return None
    return bool(entry["fused"])


def has_cuda_provider() -> bool:
    """Whether the installed onnxruntime can run on an NVIDIA GPU (``onnxruntime-gpu``)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _providers(device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def make_session(path: Path, device: str = "cpu") -> Any:
    """An onnxruntime session on ``device`` (``cpu``, ``cuda`` or ``cuda:N``: the CUDA execution
    provider, with the CPU one for operators it lacks), one intra-op thread that blocks rather than
    spins, sequential execution, full graph optimisation. Parallelism comes from running batches
    concurrently on it (:func:`run_sorted`), one per core: onnxruntime's ``run`` is thread-safe and
    releases the GIL.

    Why not intra-op threads: a small model's operators on a batch are too short to split well.
    Measured on the 2-core machine (4,096 mixed texts, int8, same run): one session with 2 intra-op
    threads 211-220 texts/s, two batches at a time on 1 thread each 240-262 texts/s (+9 to +24%).
    Not spinning: on a machine shared with other jobs, idle-spinning threads take cores from the
    threads doing work."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # warnings about unused initialisers are noise
    return ort.InferenceSession(str(path), so, providers=_providers(device))


def load_session(st_model: Any, fingerprint: str, name: str, backend: str, device: str = "cpu") -> tuple[Any, OnnxExport]:
    """Export (or reuse) and open a session on ``device``; an export that will not load is rebuilt once."""
    exp = ensure_export(st_model, fingerprint, name, backend)
    try:
        return make_session(exp.path, device), exp
    except Exception as exc:  # onnxruntime raises its own exception types
        log.warning("ONNX cache %s will not load (%s): rebuilding it", exp.path, type(exc).__name__)
        exp.path.unlink(missing_ok=True)
        exp = ensure_export(st_model, fingerprint, name, backend)
        return make_session(exp.path, device), exp


def save_light(st_model: Any, model_folder: Path | None, exp: OnnxExport, *, dim: int, default_max_len: int,
               position_limit: int | None) -> None:
    """Record what the light path (:mod:`fmal._onnx_light`) needs next to the export ``exp``,
    unless a current record is there already; a failure only logs: the heavy path stays."""
    from fmal import _onnx_light

    if model_folder is None:
        return
    folder = exp.path.parent
    try:
        if _onnx_light.load(model_folder, folder, None) is not None:
            return
        meta = _read_meta(folder)
        if meta.get("fingerprint") is None:
            return
        if _onnx_light.record(st_model, model_folder, folder, meta, dim=dim, default_max_len=default_max_len,
                              position_limit=position_limit, input_names=exp.input_names):
            write_json(folder / META, meta)
    except Exception as exc:  # never fail a load for the sake of the next one
        log.info("no light ONNX record for %s (%s: %s)", model_folder, type(exc).__name__, exc)


def load_light(model_folder: Path, fingerprint: str, name: str, backend: str, device: str,
               max_seq_length: int | None) -> tuple[Any, OnnxExport, dict[str, Any], Any] | None:
    """(session, export, light record, tokeniser) for a model whose export is cached, intact and
    recorded for the light path; None when any of that is missing (the heavy path then loads)."""
    from fmal import _onnx_light

    folder = cache_dir_for(fingerprint, name)
    found, _ = _cached(folder, backend, fingerprint)
    if found is None:
        return None
    light = _onnx_light.load(model_folder, folder, max_seq_length)
    if light is None:
        return None
    rec, tok = light
    if tuple(rec["input_names"]) != found.input_names:
        return None
    try:
        session = make_session(found.path, device)
    except Exception:  # onnxruntime raises its own exception types: the heavy path rebuilds it
        return None
    return session, found, rec, tok


WINDOW = 8192  # texts tokenised and sorted by length at once: the batches are cut from a window


def run_sorted(session: Any, tokenize: Any, texts: list[str], batch_size: int, dim: int, *, right_padded: bool = True,
               window: int | None = None, workers: int = 1, first: Any = None) -> np.ndarray:
    """Embed ``texts`` with an ONNX session: tokenise a window at once (``tokenize``: texts -> the
    graph's int64 input arrays, padded to the longest), sort by token count, run batches cut to
    their own longest text (little padding), ``workers`` batches at a time, and put rows back in
    input order. ``first``: the first window already tokenised (arrays, or a future of them), when
    the caller tokenised it while something else ran; the batches are the same."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    window = window or WINDOW
    # left-padded models re-tokenise each batch: a fast tokenizer used from two threads at once
    # can fail ("Already borrowed"), so they run one batch at a time
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fmal-onnx") if workers > 1 and right_padded else None
    try:
        for w0 in range(0, len(texts), window):
            part = texts[w0 : w0 + window]
            if w0 == 0 and first is not None:
                arrays = first.result() if hasattr(first, "result") else first
            else:
                arrays = tokenize(part)
            lengths = arrays["attention_mask"].sum(axis=1) if "attention_mask" in arrays else np.full(len(part), 1)
            order = np.argsort(-lengths, kind="stable")

            def run_batch(b0: int, w0: int = w0, part: list[str] = part, arrays: dict = arrays,
                          lengths: np.ndarray = lengths, order: np.ndarray = order) -> None:
                idx = order[b0 : b0 + batch_size]
                if right_padded:
                    top = int(lengths[idx].max())
                    batch = {k: np.ascontiguousarray(v[idx, :top]) for k, v in arrays.items()}
                else:
                    batch = tokenize([part[i] for i in idx])
                out[w0 + idx] = session.run(["sentence_embedding"], batch)[0]

            starts = range(0, len(part), batch_size)
            if pool is None:
                for b0 in starts:
                    run_batch(b0)
            else:
                for _ in pool.map(run_batch, starts):  # longest batches first: the tail is short ones
                    pass
    finally:
        if pool is not None:
            pool.shutdown()
    return out
