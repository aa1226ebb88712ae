"""Texts/s of `fmal embed` against raw `SentenceTransformer.encode` on the same 2,000 texts.

    python benchmarks/embed_throughput.py [--n 2000] [--repeats 2] [--data FILE.csv]   # default: shipped trec6

Both sides are timed end to end in this process, interleaved (raw, fmal, raw, fmal, ...; best of
``--repeats``) so that other load on the machine hits both alike:
  raw   SentenceTransformer(bundled model) + .encode(texts, batch_size=64)
  fmal  fmal.embed(csv, pool, overwrite=True): model load, read, embed, write, FAISS index, manifest
with fmal's default backend and, for reference, ``--backend torch`` (the same runtime as raw).
Target: fmal / raw >= 0.95. Writes benchmarks/results/embed_throughput.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402  (puts the repo on sys.path)


def raw_run(texts: list[str]) -> float:
    """Seconds for a plain sentence-transformers user: load the model, encode."""
    from sentence_transformers import SentenceTransformer

    from fmal.encoders import default_model_path

    t0 = time.perf_counter()
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    return time.perf_counter() - t0


def fmal_run(csv: Path, index_dir: Path, backend: str | None) -> float:
    import fmal

    t0 = time.perf_counter()
    fmal.embed(csv, "bench", index_dir=index_dir, overwrite=True, backend=backend)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="CSV with a text column (default: the shipped trec6)")
    args = ap.parse_args()
    args.data = args.data or _results.dataset_csv("trec6")
    t_start = time.perf_counter()

    from fmal.encoders import DEFAULT_BACKEND, available_threads, load_encoder

    texts = pd.read_csv(args.data, dtype=str)["text"].dropna().drop_duplicates().head(args.n).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "texts.csv"
        pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "text": texts}).to_csv(csv, index=False)
        load_encoder(None, backend=DEFAULT_BACKEND)  # one-off ONNX export (cached) stays out of the timings
        fmal_run(csv, Path(tmp) / "ix", "torch")  # warm: imports, page cache, fingerprint
        runs: dict[str, list[float]] = {"raw SentenceTransformer.encode": [], "fmal embed (torch)": [],
                                        f"fmal embed (default: {DEFAULT_BACKEND})": []}
        for _ in range(args.repeats):
            runs["raw SentenceTransformer.encode"].append(raw_run(texts))
            runs["fmal embed (torch)"].append(fmal_run(csv, Path(tmp) / "ix", "torch"))
            runs[f"fmal embed (default: {DEFAULT_BACKEND})"].append(fmal_run(csv, Path(tmp) / "ix", None))
    best = {k: min(v) for k, v in runs.items()}
    raw = best["raw SentenceTransformer.encode"]
    print(f"{len(texts):,} texts of {args.data.name}, {available_threads()} core(s), best of {args.repeats} "
          "interleaved runs, model load included on both sides")
    print(f"{'':40s} {'seconds':>8s} {'texts/s':>8s} {'ratio':>6s}")
    for k, s in best.items():
        print(f"{k:40s} {s:8.2f} {len(texts) / s:8.1f} {raw / s:6.2f}")
    ratio = raw / best[f"fmal embed (default: {DEFAULT_BACKEND})"]
    print(f"fmal embed / raw = {ratio:.2f} (target >= 0.95): {'met' if ratio >= 0.95 else 'NOT met'}")
    _results.write("embed_throughput", {"n_texts": len(texts), "runs": {k: {"seconds": round(s, 3), "texts_s": round(len(texts) / s, 1),
                                                                         "ratio": round(raw / s, 3)} for k, s in best.items()}},
                   seconds=time.perf_counter() - t_start, settings={"n": args.n, "repeats": args.repeats, "data": _results.rel(args.data)})


if __name__ == "__main__":
    main()
