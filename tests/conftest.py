"""Shared fixtures. Everything runs offline (HF_HUB_OFFLINE=1) on real components: a tiny
random-weight BERT (hidden 32, 2 layers) built once per session, real FAISS, real scikit-learn."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
if "FMAL_CACHE" not in os.environ:  # ONNX exports of the test models: never into ~/.cache
    import atexit
    import tempfile

    os.environ["FMAL_CACHE"] = tempfile.mkdtemp(prefix="fmal-test-cache-")
    atexit.register(shutil.rmtree, os.environ["FMAL_CACHE"], True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEMO_CSV = REPO / "examples" / "data" / "trec6_demo.csv"
BENCH_DATA = REPO / "benchmarks" / "data"  # the three labeled datasets (gzipped) the benchmarks use


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight BERT (hidden 32, 2 layers) saved as a plain transformers folder, with the
    bundled model's tokenizer. sentence-transformers loads it with mean pooling."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from fmal.encoders import default_model_path

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(str(default_model_path()))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def demo_csv() -> Path:
    return DEMO_CSV


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    d = tmp_path / "indexes"
    d.mkdir()
    return d


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    """200 demo rows (id,text,label,split) as a CSV."""
    df = pd.read_csv(DEMO_CSV, dtype=str).head(200)
    p = tmp_path / "small.csv"
    df.to_csv(p, index=False)
    return p


@pytest.fixture(scope="session")
def _tiny_pool_template(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    import fmal

    d = tmp_path_factory.mktemp("tiny-pool")
    src = d / "small.csv"
    pd.read_csv(DEMO_CSV, dtype=str).head(200).to_csv(src, index=False)
    fmal.embed(src, "tiny", index_dir=d / "indexes", model=tiny_model_dir)
    return d


@pytest.fixture
def tiny_pool(tmp_path: Path, _tiny_pool_template: Path) -> tuple[Path, str, Path]:
    """A freshly copied 200-row pool built with the tiny model: (index_dir, pool name, source csv)."""
    d = tmp_path / "tp"
    shutil.copytree(_tiny_pool_template, d)
    return d / "indexes", "tiny", d / "small.csv"


@pytest.fixture
def cli():
    """Run the fmal CLI in-process: ``cli("seed", "--pool", ...)`` -> click Result (stdout and stderr
    apart: this click has no ``mix_stderr``; ``.output`` holds both)."""
    from typer.testing import CliRunner

    from fmal.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])


def assert_cli_error(result, *needles: str) -> str:
    """A failed command: non-zero exit, one line on stderr starting 'error:' that names ``needles``,
    nothing on stdout, no traceback. Returns the line."""
    assert result.exit_code not in (0, None), result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.stdout == ""
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def cli_error():
    """``assert_cli_error`` as a fixture (tests do not import conftest)."""
    return assert_cli_error


def clustered(n: int = 600, d: int = 16, k: int = 6, spread: float = 0.05, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in ``k`` well separated clusters, and each row's cluster (a known answer)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    y = rng.integers(0, k, size=n)
    X = centers[y] + spread * rng.normal(size=(n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), y


class _TableEncoder:
    """An encoder that looks each text's vector up in a table: a pool with embeddings chosen by the test."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.dim = len(next(iter(vectors.values())))
        self.name = "table-encoder"
        self.fingerprint = "table:" + str(len(vectors))

    def encode(self, texts: list[str], *, batch_size: int = 64, normalize: bool = True) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def vector_pool(index_dir: Path, name: str, X: np.ndarray, texts: list[str] | None = None, ids: list[str] | None = None) -> Path:
    """Build pool ``name`` under ``index_dir`` whose embeddings are exactly ``X`` (unit rows)."""
    from fmal.io import TextTable
    from fmal.pool import build_pool

    n = X.shape[0]
    texts = texts or [f"text {i}" for i in range(n)]
    ids = ids or [f"r{i}" for i in range(n)]
    table = TextTable(Path("vectors.csv"), "csv", ids, texts, "text", "id", f"sha256:{n}", pd.DataFrame({"id": ids, "text": texts}))
    path = Path(index_dir) / name
    build_pool(table, _TableEncoder(dict(zip(texts, X))), path)
    return path
