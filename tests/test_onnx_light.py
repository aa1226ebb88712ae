"""The light ONNX path (fmal._onnx_light): a cached export runs with the tokenizers library and
onnxruntime alone, giving the token ids and the vectors of the sentence-transformers path byte for
byte, and falls back to that path whenever its record may not stand for it."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fmal import _onnx, _onnx_light
from fmal.encoders import default_model_path, load_encoder

DEMO_CSV = Path(__file__).resolve().parents[1] / "examples" / "data" / "trec6_demo.csv"
AWKWARD = _onnx_light.PROBE + [
    "\n", "\u3000", "    leading and trailing    ", "word " * 300 + "tail", "😀" * 400, "الْعَرَبِيَّة עִבְרִית",
    "Ǆemal ΣΊΣΥΦΟΣ straße İstanbul", "a\x00b\x1fc control", "http://example.com/a?b=c&d=e#f", "🏳️‍🌈🇩🇪",
    "漢字" * 300, "   ", "\ufeffBOM", "Mr. O'Neil's co-op—“quoted”…",
]
TEXTS = pd.read_csv(DEMO_CSV, dtype=str)["text"].head(48).tolist() + AWKWARD


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("FMAL_CACHE", str(tmp_path_factory.getbasetemp() / "fmal-cache-light"))


def _heavy(monkeypatch: pytest.MonkeyPatch, model: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    with monkeypatch.context() as m:
        m.setattr(_onnx, "load_light", lambda *a, **k: None)
        enc = load_encoder(model, **kwargs)
    assert enc._st is not None
    return enc


@pytest.mark.parametrize("max_len", [None, 8, 128])
def test_light_tokenizer_gives_the_transformers_ids_on_awkward_texts(tiny_model_dir: Path, max_len: int | None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    heavy = _heavy(monkeypatch, tiny_model_dir, backend="onnx", max_seq_length=max_len)
    light = load_encoder(tiny_model_dir, backend="onnx", max_seq_length=max_len)
    assert light._st is None and light.max_seq_length == heavy.max_seq_length
    for texts in [TEXTS, AWKWARD] + [[t] for t in AWKWARD]:
        want = {k: v.numpy() for k, v in heavy.model.preprocess(texts).items() if k in heavy._input_names}
        got = light._tokenize(texts)
        assert want.keys() == got.keys()
        for k in want:
            assert got[k].dtype == np.int64 and np.array_equal(want[k], got[k]), (k, texts[:2])


def test_bundled_model_tokenizer_matches_on_the_shipped_texts(tmp_path: Path) -> None:
    """The bundled model's own tokeniser (BERT uncased, 256 tokens), no export needed: the record
    is made against its sentence-transformers tokeniser."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(default_model_path()), device="cpu")
    meta: dict[str, dict] = {}
    names = ("input_ids", "token_type_ids", "attention_mask")
    assert _onnx_light.record(st, default_model_path(), tmp_path, meta, dim=384, default_max_len=st.max_seq_length,
                              position_limit=512, input_names=names)
    tok = _onnx_light.LightTokenizer(tmp_path / _onnx_light.TOKENIZER_FILE, st.max_seq_length, meta["light"]["pad"], names)
    want, got = st.preprocess(TEXTS), tok(TEXTS)
    for k in names:
        assert np.array_equal(want[k].numpy(), got[k]), k


@pytest.mark.parametrize("backend,max_len", [("onnx", None), ("onnx", 8), ("onnx-int8", None)])
def test_light_vectors_are_byte_identical_to_the_heavy_path(tiny_model_dir: Path, backend: str, max_len: int | None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    heavy = _heavy(monkeypatch, tiny_model_dir, backend=backend, max_seq_length=max_len, threads=2)
    light = load_encoder(tiny_model_dir, backend=backend, max_seq_length=max_len, threads=2)
    assert light._st is None, "the second load should not need sentence-transformers"
    assert light.describe() == heavy.describe()
    a, b = heavy.encode(TEXTS, batch_size=8), light.encode(TEXTS, batch_size=8)
    assert a.tobytes() == b.tobytes()
    assert light.encode([]).shape == (0, light.dim)
    assert light.model is not None and light.model.max_seq_length == light.max_seq_length  # loaded on demand


def test_stale_records_fall_back_to_the_heavy_path(tiny_model_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    load_encoder(model, backend="onnx")  # records (or finds a record)
    assert load_encoder(model, backend="onnx")._st is None
    # a tokeniser setting changed in the model folder: the weights' fingerprint is the same
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["do_lower_case"] = not cfg.get("do_lower_case", True)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.DEBUG, logger="fmal._onnx_light"):
        enc = load_encoder(model, backend="onnx")
    assert enc._st is not None and "tokeniser or configs changed" in caplog.text
    assert load_encoder(model, backend="onnx")._st is None  # the heavy load recorded the new tokeniser
    # a damaged saved tokeniser, or other library versions: the heavy path again
    export = Path(enc.onnx_file or "").parent
    (export / _onnx_light.TOKENIZER_FILE).write_text("{}")
    assert load_encoder(model, backend="onnx")._st is not None
    monkeypatch.setattr(_onnx_light, "dep_versions", lambda: {"tokenizers": "0.0"})
    assert load_encoder(model, backend="onnx")._st is not None


def test_trust_remote_code_and_torch_never_take_the_light_path(tiny_model_dir: Path) -> None:
    load_encoder(tiny_model_dir, backend="onnx")
    assert load_encoder(tiny_model_dir, backend="onnx", trust_remote_code=True)._st is not None
    assert load_encoder(tiny_model_dir, backend="torch")._st is not None


def test_warm_fmal_embed_imports_no_torch(tiny_model_dir: Path, small_csv: Path, tmp_path: Path) -> None:
    """A second ``fmal embed`` on the default backend runs without torch, sentence-transformers or
    transformers: their imports were most of its fixed cost (issue 18)."""
    load_encoder(tiny_model_dir, backend="onnx")
    code = ("import sys, fmal; fmal.embed(sys.argv[1], 'p', index_dir=sys.argv[2], model=sys.argv[3]); "
            "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(small_csv), str(tmp_path / "ix"), str(tiny_model_dir)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_encode_chunks_gives_the_rows_of_encode(tiny_model_dir: Path, backend: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """encode_chunks tokenises the next chunk ahead (ONNX): the same batches, the same bytes."""
    enc = load_encoder(tiny_model_dir, backend=backend, threads=2)
    chunks = [TEXTS[:20], TEXTS[20:21], TEXTS[21:]]
    one_by_one = [enc.encode(c, batch_size=4) for c in chunks]
    ahead = list(enc.encode_chunks(iter(chunks), batch_size=4))
    assert [a.tobytes() for a in ahead] == [b.tobytes() for b in one_by_one]
    assert list(enc.encode_chunks([])) == []
    # windows smaller than a chunk: later windows are tokenised on the same helper thread
    monkeypatch.setattr(_onnx, "WINDOW", 8)
    small = [enc.encode(c, batch_size=4) for c in chunks]
    assert [a.tobytes() for a in enc.encode_chunks(chunks, batch_size=4)] == [b.tobytes() for b in small]
    gen = enc.encode_chunks(chunks, batch_size=4)
    assert next(gen).tobytes() == small[0].tobytes()
    gen.close()  # a build stopped halfway: the helper thread is shut down
