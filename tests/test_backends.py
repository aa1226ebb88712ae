"""Encoder backends (torch, onnx, onnx-int8), the ONNX export cache, stored precision, threads and
max_seq_length. ONNX exports go to a per-session FMAL_CACHE, never to ~/.cache."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fmal
from fmal import _onnx
from fmal.pool import open_pool
from fmal.pool.files import EMBEDDINGS, MANIFEST
from fmal.encoders import BACKENDS, DEFAULT_BACKEND, load_encoder
from fmal.exceptions import InvalidInputError, ModelMismatchError

DEMO_CSV = Path(__file__).resolve().parents[1] / "examples" / "data" / "trec6_demo.csv"

SENTENCES = pd.read_csv(DEMO_CSV, dtype=str)["text"].head(64).tolist() + ["", "a", "word " * 400]


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fmal-cache")


@pytest.fixture(autouse=True)
def _cache_env(monkeypatch: pytest.MonkeyPatch, onnx_cache: Path) -> None:
    monkeypatch.setenv("FMAL_CACHE", str(onnx_cache))


@pytest.fixture(scope="session")
def tiny_torch(tiny_model_dir: Path) -> np.ndarray:
    return load_encoder(tiny_model_dir, backend="torch").encode(SENTENCES)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backends_match_torch_on_tiny_model(tiny_model_dir: Path, tiny_torch: np.ndarray, backend: str) -> None:
    enc = load_encoder(tiny_model_dir, backend=backend)
    X = enc.encode(SENTENCES)
    assert X.shape == tiny_torch.shape and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    cos = _cosines(X, tiny_torch)
    assert cos.mean() >= 0.99 and cos.min() >= (0.999 if backend == "onnx" else 0.98), (cos.mean(), cos.min())
    assert enc.encode([]).shape == (0, enc.dim)
    # rows come back in input order: the shuffled input gives the shuffled output
    perm = np.random.default_rng(0).permutation(len(SENTENCES))
    np.testing.assert_allclose(enc.encode([SENTENCES[i] for i in perm]), X[perm], atol=1e-5)


@pytest.fixture(scope="module")
def bundled_torch() -> np.ndarray:
    return load_encoder(None, backend="torch").encode(SENTENCES)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_backends_match_torch_on_the_bundled_model(bundled_torch: np.ndarray, backend: str) -> None:
    enc = load_encoder(None, backend=backend)
    assert enc.onnx_file and Path(enc.onnx_file).name == ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")
    meta = json.loads((Path(enc.onnx_file).parent / _onnx.META).read_text())
    assert meta["recipe"] == _onnx.RECIPE_ID and meta["files"]["onnx"]["fused"]["Attention"] == 6  # MiniLM-L6: fused
    cos = _cosines(enc.encode(SENTENCES), bundled_torch)
    assert cos.mean() >= 0.99 and cos.min() >= (0.9999 if backend == "onnx" else 0.95), (cos.mean(), cos.min())


def test_export_is_fused_and_int8_keeps_the_first_ffn_fp32(tiny_model_dir: Path) -> None:
    import onnx

    enc = load_encoder(tiny_model_dir, backend="onnx-int8")
    folder = Path(enc.onnx_file or "").parent
    meta = json.loads((folder / _onnx.META).read_text())
    assert meta["recipe"] == _onnx.RECIPE_ID and meta["recipe_text"] == _onnx.RECIPE
    fused = meta["files"]["onnx"]["fused"]
    assert fused["Attention"] == 2 and fused["SkipLayerNormalization"] == 4, fused  # 2 layers, eager attention
    ops = {n.name: n.op_type for n in onnx.load(str(folder / "model-int8.onnx"), load_external_data=False).graph.node}
    assert "QAttention" in ops.values()
    fp32 = [n for n, op in ops.items() if op == "MatMul"]
    assert len(fp32) == 2 and all("layer.0/intermediate/dense" in n or "layer.0/output/dense" in n for n in fp32), fp32
    assert not list(folder.glob("*unfused*")), "the intermediate unfused export was left behind"
    assert enc.onnx_fused is True and enc.describe()["onnx_fused"] is True


def test_unfusable_model_runs_unfused(tiny_model_dir: Path, tiny_torch: np.ndarray, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FMAL_CACHE", str(tmp_path / "cache"))

    def cannot_fuse(*a: object, **k: object) -> None:
        raise ValueError("no attention layer fused")

    monkeypatch.setattr(_onnx, "_fuse", cannot_fuse)
    with caplog.at_level(logging.WARNING, logger="fmal._onnx"):
        enc = load_encoder(tiny_model_dir, backend="onnx-int8")
    assert "runs unfused" in caplog.text
    folder = Path(enc.onnx_file or "").parent
    assert json.loads((folder / _onnx.META).read_text())["files"]["onnx"]["fused"] == {}
    assert not list(folder.glob("*unfused*"))
    assert _cosines(enc.encode(SENTENCES), tiny_torch).mean() >= 0.99
    assert enc.onnx_fused is False
    # a later load from the cache says so again, and a pool built with it records it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fmal.encoders"):
        again = load_encoder(tiny_model_dir, backend="onnx-int8")
    assert again.onnx_fused is False and "runs unfused" in caplog.text
    src = tmp_path / "t.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "text": SENTENCES[:3]}).to_csv(src, index=False)
    fmal.embed(src, "u", index_dir=tmp_path / "ix", model=tiny_model_dir, backend="onnx-int8")
    assert json.loads((tmp_path / "ix" / "u" / "manifest.json").read_text())["model"]["onnx_fused"] is False


def test_cache_of_another_recipe_is_rebuilt(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("FMAL_CACHE", str(tmp_path / "cache"))
    first = load_encoder(tiny_model_dir, backend="onnx-int8")
    folder = Path(first.onnx_file or "").parent
    meta = json.loads((folder / _onnx.META).read_text())
    meta.pop("recipe")
    meta["format"] = 2  # what fmal's previous (unfused) export recipe wrote
    (folder / _onnx.META).write_text(json.dumps(meta))
    with caplog.at_level(logging.INFO, logger="fmal._onnx"):
        load_encoder(tiny_model_dir, backend="onnx-int8")
    assert "older or different export recipe (cache format 2" in caplog.text and "rebuilding" in caplog.text, caplog.text
    assert "model-int8.onnx, made by another export recipe" in caplog.text and "meta.json does not" not in caplog.text
    assert json.loads((folder / _onnx.META).read_text())["recipe"] == _onnx.RECIPE_ID


def test_export_is_cached_and_reused(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_encoder(tiny_model_dir, backend="onnx-int8")  # exported by now (here or by an earlier test)

    def no_export(*a: object, **k: object) -> None:
        raise AssertionError("exported a second time")

    monkeypatch.setattr(_onnx, "_export_fp32", no_export)
    monkeypatch.setattr(_onnx, "_quantize_int8", no_export)
    for backend in ("onnx", "onnx-int8"):
        enc = load_encoder(tiny_model_dir, backend=backend)
        assert enc.onnx_file is not None and Path(enc.onnx_file).parent.parent.name == "onnx"


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_corrupt_or_missing_cache_is_rebuilt(tiny_model_dir: Path, tiny_torch: np.ndarray, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                             damage: str) -> None:
    monkeypatch.setenv("FMAL_CACHE", str(tmp_path / "cache"))
    first = load_encoder(tiny_model_dir, backend="onnx")
    f = Path(first.onnx_file or "")
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    else:
        f.unlink()
    with caplog.at_level(logging.INFO, logger="fmal._onnx"):
        enc = load_encoder(tiny_model_dir, backend="onnx")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "rebuilding" in messages or "exporting" in messages, messages
    if damage == "truncate":
        assert "sha256" in messages
    if damage == "delete":
        assert "missing" in messages
    assert _cosines(enc.encode(SENTENCES), tiny_torch).min() >= 0.999
    assert json.loads((f.parent / _onnx.META).read_text())["files"]["onnx"]["size"] == f.stat().st_size


def test_max_seq_length_is_honoured_and_reported(tiny_model_dir: Path) -> None:
    enc = load_encoder(tiny_model_dir, backend="onnx", max_seq_length=8)
    assert enc.max_seq_length == 8 and enc.describe()["max_seq_length"] == 8
    long_a, long_b = "alpha beta gamma delta epsilon zeta eta theta", "alpha beta gamma delta epsilon zeta eta iota kappa"
    X = enc.encode([long_a, long_b])  # differ only after the 8th token: identical once truncated
    np.testing.assert_allclose(X[0], X[1], atol=1e-6)
    with pytest.raises(InvalidInputError, match="max-seq-length"):
        load_encoder(tiny_model_dir, max_seq_length=0)
    with pytest.raises(InvalidInputError, match="at most the model's 128"):
        load_encoder(tiny_model_dir, max_seq_length=4096)


def test_threads_default_to_available_cores(tiny_model_dir: Path) -> None:
    import os

    enc = load_encoder(tiny_model_dir)
    assert enc.threads == len(os.sched_getaffinity(0))
    with pytest.raises(InvalidInputError, match="threads"):
        load_encoder(tiny_model_dir, threads=0)


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_concurrent_batches_give_the_same_rows(tiny_model_dir: Path, backend: str) -> None:
    """``threads`` batches run at once on one single-threaded session: the batches are the same as
    one at a time, so the rows are byte-identical (int8 included)."""
    one = load_encoder(tiny_model_dir, backend=backend, threads=1).encode(SENTENCES, batch_size=8)
    three = load_encoder(tiny_model_dir, backend=backend, threads=3).encode(SENTENCES, batch_size=8)
    np.testing.assert_array_equal(one, three)


def test_bad_backend_and_precision_are_named(small_csv: Path, index_dir: Path) -> None:
    assert DEFAULT_BACKEND in BACKENDS
    with pytest.raises(InvalidInputError, match=r"--backend must be one of \['torch', 'onnx', 'onnx-int8'\], got 'tensorrt'"):
        fmal.embed(small_csv, "p", index_dir=index_dir, backend="tensorrt")
    with pytest.raises(InvalidInputError, match=r"--precision must be one of \['float32', 'float16'\], got 'int8'"):
        fmal.embed(small_csv, "p", index_dir=index_dir, precision="int8")


def test_backend_is_part_of_the_pool_identity(small_csv: Path, index_dir: Path, tiny_model_dir: Path) -> None:
    res = fmal.embed(small_csv, "p", index_dir=index_dir, model=tiny_model_dir, backend="onnx")
    m = json.loads((res.pool_path / MANIFEST).read_text())
    assert m["model"]["backend"] == "onnx" and m["model"]["threads"] >= 1 and m["model"]["max_seq_length"] == 128
    again = fmal.embed(small_csv, "p", index_dir=index_dir, model=tiny_model_dir)  # no --backend: keep the pool's
    assert again.skipped and again.backend == "onnx"
    with pytest.raises(ModelMismatchError, match="built with --backend onnx, not torch"):
        fmal.embed(small_csv, "p", index_dir=index_dir, model=tiny_model_dir, backend="torch")
    with pytest.raises(ModelMismatchError, match="precision float32, not float16"):
        fmal.embed(small_csv, "p", index_dir=index_dir, model=tiny_model_dir, precision="float16")


def test_float16_pool_works_with_seed_and_query(small_csv: Path, index_dir: Path, tiny_model_dir: Path,
                                               tmp_path: Path) -> None:
    r16 = fmal.embed(small_csv, "h", index_dir=index_dir, model=tiny_model_dir, backend="torch", precision="float16")
    r32 = fmal.embed(small_csv, "f", index_dir=index_dir, model=tiny_model_dir, backend="torch", precision="float32")
    assert r16.precision == "float16"
    f16, f32 = (r.pool_path / EMBEDDINGS for r in (r16, r32))
    assert f16.stat().st_size < 0.6 * f32.stat().st_size
    pool = open_pool(r16.pool_path)
    assert pool.manifest.dtype == "float16" and pool.stored_embeddings.dtype == np.float16
    assert pool.embeddings.dtype == np.float32
    np.testing.assert_allclose(pool.embeddings, open_pool(r32.pool_path).embeddings, atol=2e-3)
    sel = fmal.seed(r16.pool_path, 12, "kmeans")
    assert len(sel.ids) == 12
    df = pd.read_csv(small_csv, dtype=str).set_index("id")
    labels = tmp_path / "labels.csv"
    df.loc[sel.ids, ["label"]].reset_index().to_csv(labels, index=False)
    if df.loc[sel.ids, "label"].nunique() < 2:
        pytest.skip("seed picked one class only")
    q = fmal.query(r16.pool_path, labels, 5)
    assert len(q.ids) == 5 and not set(q.ids) & set(sel.ids)


def test_int8_weight_range_follows_the_cpu(tiny_model_dir: Path) -> None:
    """Full 8-bit weights where the CPU has VNNI, 7-bit (reduce_range) elsewhere; recorded in the recipe."""
    import onnx
    from onnx import numpy_helper

    enc = load_encoder(tiny_model_dir, backend="onnx-int8")
    vnni = _onnx.cpu_has_vnni()
    assert ("8-bit weights (VNNI)" in _onnx.RECIPE["int8"]) is vnni and ("reduce_range" in _onnx.RECIPE["int8"]) is not vnni
    g = onnx.load(str(enc.onnx_file), load_external_data=False).graph
    q = [numpy_helper.to_array(t) for t in g.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims]
    top = max(int(np.abs(w.astype(np.int16)).max()) for w in q)
    assert top > 64 if vnni else top <= 64, top


def test_default_backend_meets_the_bar_on_the_tiny_model(tiny_model_dir: Path, tiny_torch: np.ndarray) -> None:
    assert DEFAULT_BACKEND == "onnx"
    cos = _cosines(load_encoder(tiny_model_dir, backend=DEFAULT_BACKEND).encode(SENTENCES), tiny_torch)
    assert cos.min() >= 0.999, cos.min()


def test_device_cpu_and_auto_without_a_gpu(tiny_model_dir: Path, small_csv: Path, index_dir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from fmal import encoders

    monkeypatch.setattr(encoders, "_torch_cuda", lambda: False)
    for backend in ("torch", "onnx"):
        enc = load_encoder(tiny_model_dir, backend=backend, device="auto")
        assert enc.device == "cpu" and enc.describe()["device"] == "cpu"
    res = fmal.embed(small_csv, "d", index_dir=index_dir, model=tiny_model_dir, backend="onnx", device="cpu")
    assert json.loads((res.pool_path / MANIFEST).read_text())["model"]["device"] == "cpu"


def test_auto_never_picks_an_absent_onnx_cuda_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from fmal import encoders

    monkeypatch.setattr(encoders, "_torch_cuda", lambda: True)
    monkeypatch.setattr(_onnx, "has_cuda_provider", lambda: False)
    assert encoders.resolve_device("auto", "onnx") == "cpu" and encoders.resolve_device(None, "onnx-int8") == "cpu"
    assert encoders.resolve_device("auto", "torch") == "cuda"
    monkeypatch.setattr(_onnx, "has_cuda_provider", lambda: True)
    assert encoders.resolve_device("auto", "onnx") == "cuda" and encoders.resolve_device("cuda:1", "onnx") == "cuda:1"
    assert _onnx._providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})


def test_cuda_requests_fail_cleanly_without_a_gpu(tiny_model_dir: Path, small_csv: Path, index_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch, cli) -> None:
    from fmal import encoders

    monkeypatch.setattr(encoders, "_torch_cuda", lambda: False)
    monkeypatch.setattr(_onnx, "has_cuda_provider", lambda: False)
    with pytest.raises(InvalidInputError, match=r"--device cuda: torch sees no CUDA GPU .*use --device cpu"):
        load_encoder(tiny_model_dir, backend="torch", device="cuda")
    with pytest.raises(InvalidInputError, match=r"--device cuda:1: the installed onnxruntime has no CUDAExecutionProvider; "
                                                r"install onnxruntime-gpu, or use --backend torch"):
        fmal.embed(small_csv, "c", index_dir=index_dir, model=tiny_model_dir, backend="onnx", device="cuda:1")
    with pytest.raises(InvalidInputError, match=r"--device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        fmal.embed(small_csv, "c", index_dir=index_dir, model=tiny_model_dir, device="gpu")
    res = cli("embed", str(small_csv), "--pool", "c", "--index-dir", str(index_dir), "--model", str(tiny_model_dir),
              "--backend", "onnx-int8", "--device", "cuda")
    assert res.exit_code != 0 and "install onnxruntime-gpu" in res.output and "Traceback" not in res.output, res.output
    assert not (index_dir / "c" / MANIFEST).exists()


def test_gpus_per_worker_is_for_the_ray_engine_and_reaches_its_actors(tmp_path, cli):
    """``--gpus-per-worker`` asks Ray for GPUs per encoder actor: refused with the local engine (a
    local run uses a GPU through ``--device``) and below 0; the Ray engine keeps it for its actors.
    (No GPU here: the request itself is untested on hardware.)"""
    from fmal.engines.ray_engine import RayEngine

    data = tmp_path / "t.csv"
    data.write_text("id,text\na,hello\nb,world\n")
    with pytest.raises(InvalidInputError, match="gpus_per_worker asks Ray for GPUs"):
        fmal.embed(data, "p", index_dir=tmp_path / "ix", gpus_per_worker=1)
    with pytest.raises(InvalidInputError, match="gpus_per_worker must be >= 0"):
        fmal.embed(data, "p", index_dir=tmp_path / "ix", engine="ray", gpus_per_worker=-1)
    res = cli("embed", data, "--pool", "p", "--index-dir", tmp_path / "ix", "--gpus-per-worker", "0.5")
    assert res.exit_code != 0 and "--gpus-per-worker asks Ray for GPUs" in res.output and "--engine ray" in res.output
    assert not (tmp_path / "ix" / "p").exists()
    assert RayEngine({}, gpus_per_worker=0.5).gpus_per_worker == 0.5
