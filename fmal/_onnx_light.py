"""Run a cached ONNX export without torch, sentence-transformers or transformers.

Why: importing torch and sentence-transformers and building the torch model costs seconds on every
``fmal embed`` (issue 18), and the ONNX graph already holds the whole chain (transformer, pooling,
dense, normalize). Only the tokeniser runs outside it, and the ``tokenizers`` library runs it alone.

How it stays identical: the first (heavy) load of a model on an ONNX backend saves the tokeniser
that sentence-transformers actually runs (its Rust ``backend_tokenizer``, as JSON) next to the
export, with what the heavy path knows (max_seq_length, dim, position limit, padding) and the
token ids it gives for awkward probe texts (:data:`PROBE`). A later load takes the light path only
when the model folder's small files (tokeniser, configs) and the installed sentence-transformers /
transformers / tokenizers are those recorded, and the saved tokeniser still reproduces the recorded
probe ids; anything else falls back to the heavy path (which records again). Same ids in, same
session, same batches: the vectors are byte-identical to the heavy path's.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from fmal._atomic import write_text

log = logging.getLogger(__name__)

LIGHT_FORMAT = 1
LIGHT_KEY = "light"  # the record's key in the export folder's meta.json
TOKENIZER_FILE = "tokenizer.json"  # in the export folder: the runtime tokeniser, serialised
_DEPS = ("sentence-transformers", "transformers", "tokenizers")
_SMALL_SUFFIXES = (".json", ".txt", ".model")
#: awkward texts whose ids the light tokeniser must reproduce: empty, whitespace only, beyond any
#: max_seq_length, accents, combining marks, emoji (ZWJ sequences), CJK, special-token strings
PROBE = ["", " ", "  \t\n  ", "a", "  padded  ", "word " * 600, "x" * 3000, "Ünïcödé naïve café Ａｂｃ ﬁ",
         "e\u0301 combining, \u200b zero width, \u00a0nbsp", "emoji 😀🎉👍🏽 👨‍👩‍👧 family",
         "中文测试，日本語のテキスト、한국어", "[CLS] [SEP] [PAD] [MASK] [UNK] <s> </s> <pad>",
         "tab\tsep\r\nCRLF line", "What is the capital of Australia?"]


def dep_versions() -> dict[str, str | None]:
    """Installed versions of the libraries whose tokenising the record stands for."""
    out: dict[str, str | None] = {}
    for d in _DEPS:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def folder_digest(folder: Path) -> str:
    """sha256 over the names and contents of a model folder's small files (tokeniser, vocabularies,
    configs): the model fingerprint covers the weights and config.json only."""
    h = hashlib.sha256()
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix in _SMALL_SUFFIXES
                   and not any(p.startswith(".") for p in f.relative_to(folder).parts))
    for f in files:
        h.update(str(f.relative_to(folder)).encode() + b"\0")
        h.update(f.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def ids_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of tokenised inputs (names, shapes and int64 values)."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k], dtype=np.int64)
        h.update(f"{k}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class LightTokenizer:
    """The saved runtime tokeniser: truncation to ``max_len`` (longest first), right padding to the
    longest text of the call, int64 arrays named as the ONNX graph's inputs.

    The padding is done here, not by the tokenizers library: padded Encodings turned into arrays
    cost more than the tokenising itself when one long text pads a window of short ones."""

    def __init__(self, path: Path, max_len: int, pad: dict[str, Any], input_names: tuple[str, ...]) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.enable_truncation(int(max_len), strategy="longest_first", direction="right")
        self._tok.no_padding()
        self._pad = {"input_ids": int(pad["pad_id"]), "attention_mask": 0, "token_type_ids": int(pad["pad_type_id"])}
        self.input_names = input_names

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Tokenise ``texts`` into (n, longest) arrays."""
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)  # no character offsets: not needed
        enc = encode(texts)
        ids = [e.ids for e in enc]
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        top = int(lengths.max()) if len(ids) else 0
        real = np.arange(top) < lengths[:, None]
        out: dict[str, np.ndarray] = {}
        for k in self.input_names:
            a = np.full((len(ids), top), self._pad[k], dtype=np.int64)
            if k == "attention_mask":
                a[real] = 1
            else:
                rows = ids if k == "input_ids" else [e.type_ids for e in enc]
                a[real] = np.fromiter((v for r in rows for v in r), dtype=np.int64, count=int(lengths.sum()))
            out[k] = a
        return out


def record(st_model: Any, model_folder: Path, export_folder: Path, meta: dict[str, Any], *, dim: int,
           default_max_len: int, position_limit: int | None, input_names: tuple[str, ...]) -> bool:
    """Save the runtime tokeniser of ``st_model`` and the light record into ``meta`` (the caller
    writes it) when the light tokeniser reproduces sentence-transformers' ids on :data:`PROBE`;
    return whether it did. ``default_max_len``: the model's own max_seq_length (``st_model`` may
    run with the user's). Models it cannot stand for (left padding, no fast tokeniser, inputs
    other than ids / mask / token types) get no record and keep the heavy path."""
    tok = getattr(st_model, "tokenizer", None)
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str") or getattr(tok, "padding_side", "right") != "right":
        return False
    if not set(input_names) <= {"input_ids", "attention_mask", "token_type_ids"} or "input_ids" not in input_names:
        return False
    pad_id = getattr(tok, "pad_token_id", None)
    if pad_id is None:
        return False
    pad = {"pad_id": int(pad_id), "pad_token": str(tok.pad_token),
           "pad_type_id": int(getattr(tok, "pad_token_type_id", 0) or 0)}
    max_len = int(st_model.max_seq_length)
    feats = st_model.preprocess(PROBE)
    want = ids_digest({k: feats[k].numpy() for k in input_names})
    write_text(export_folder / TOKENIZER_FILE, backend.to_str())
    got = ids_digest(LightTokenizer(export_folder / TOKENIZER_FILE, max_len, pad, input_names)(PROBE))
    if got != want:
        log.info("the tokenizers library alone does not reproduce %s's token ids: the heavy path stays", model_folder)
        return False
    meta[LIGHT_KEY] = {"format": LIGHT_FORMAT, "model_folder": str(model_folder), "folder_digest": folder_digest(model_folder),
                       "versions": dep_versions(), "max_seq_length": int(default_max_len), "dim": int(dim),
                       "position_limit": position_limit, "pad": pad, "input_names": list(input_names),
                       "probe_len": max_len, "probe_ids": want}
    return True


def load(model_folder: Path, export_folder: Path, max_seq_length: int | None) -> tuple[dict[str, Any], LightTokenizer] | None:
    """The light record and tokeniser of the export in ``export_folder`` when they stand for the
    heavy path today, else None (with the reason logged at debug level)."""
    try:
        meta = json.loads((export_folder / "meta.json").read_text(encoding="utf-8"))
        rec = meta.get(LIGHT_KEY) if isinstance(meta, dict) else None
    except (OSError, ValueError):
        rec = None
    why = _stale(rec, model_folder)
    if why is None and rec is not None:
        try:
            names = tuple(rec["input_names"])
            probe = LightTokenizer(export_folder / TOKENIZER_FILE, rec["probe_len"], rec["pad"], names)
            if ids_digest(probe(PROBE)) != rec["probe_ids"]:
                why = "the saved tokeniser no longer gives the recorded ids"
            else:
                length = max_seq_length or rec["max_seq_length"]
                tok = probe if length == rec["probe_len"] else LightTokenizer(export_folder / TOKENIZER_FILE, length,
                                                                             rec["pad"], names)
                return rec, tok
        except Exception as exc:  # a damaged tokeniser file, a record of the wrong shape
            why = f"{type(exc).__name__}: {exc}"
    log.debug("light ONNX path not taken for %s: %s", model_folder, why)
    return None


def _stale(rec: Any, model_folder: Path) -> str | None:
    if not isinstance(rec, dict) or rec.get("format") != LIGHT_FORMAT:
        return "no light record"
    if rec.get("versions") != dep_versions():
        return "sentence-transformers, transformers or tokenizers changed since the record"
    if rec.get("folder_digest") != folder_digest(model_folder):
        return "the model folder's tokeniser or configs changed since the record"
    return None
