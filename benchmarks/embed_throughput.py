"""Texts/s of `fmal embed` against raw `SentenceTransformer.encode` on the same 2,000 texts.

    python benchmarks/embed_throughput.py [--n 2000] [--repeats 2] [--data FILE.csv]   # default: shipped trec6

Both sides are timed end to end in this process, interleaved (raw, fmal, raw, fmal, ...; best of
``--repeats``) so that other load on the machine hits both alike:
  raw   SentenceTransformer(bundled model) + .encode(texts, batch_size=64)
  fmal  fmal.embed(csv, pool, overwrite=True): model load, read, embed, write, FAISS index, manifest
with fmal's default backend and, for reference, ``--backend torch`` (the same runtime as raw).
Target: fmal / raw >= 0.95. Writes benchmarks/results/embed_throughput.json.

    python benchmarks/embed_throughput.py --processes [--n 6000] [--repeats 2]

times each side as a process of its own, as a user runs it (interpreter start-up and imports
included): a plain script (SentenceTransformer, encode, np.save) against ``fmal embed texts.csv``
(load, read, embed, write, index, manifest), on the first N distinct texts of the shipped datasets,
and compares the two sets of vectors (mean / min cosine). Target: fmal / raw >= 2.0, mean cosine
>= 0.99. Writes benchmarks/results/embed_throughput_processes.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
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


RAW_SCRIPT = """
import sys
import numpy as np, pandas as pd
from sentence_transformers import SentenceTransformer
from fmal.encoders import default_model_path
texts = pd.read_csv(sys.argv[1], dtype=str)["text"].tolist()
model = SentenceTransformer(str(default_model_path()), device="cpu")
np.save(sys.argv[2], model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))
"""


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=_results.REPO)
    return time.perf_counter() - t0


def processes(n: int, repeats: int) -> None:
    """Both sides as processes of their own (start-up included), interleaved; best of ``repeats``."""
    import numpy as np

    from fmal.encoders import DEFAULT_BACKEND, available_threads, load_encoder

    t_start = time.perf_counter()
    frames = [pd.read_csv(_results.dataset_csv(d), dtype=str) for d in _results.DATASETS]
    texts = pd.concat(frames)["text"].dropna().drop_duplicates().head(n).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        csv, raw_npy, ix = Path(tmp) / "texts.csv", Path(tmp) / "raw.npy", Path(tmp) / "ix"
        pd.DataFrame({"id": [f"t{i}" for i in range(len(texts))], "text": texts}).to_csv(csv, index=False)
        load_encoder(None, backend=DEFAULT_BACKEND)  # one-off ONNX export (cached) stays out of the timings
        raw_cmd = [sys.executable, "-c", RAW_SCRIPT, str(csv), str(raw_npy)]
        fmal_cmd = [sys.executable, "-m", "fmal", "embed", str(csv), "--pool", "bench", "--index-dir", str(ix), "--overwrite"]
        runs: dict[str, list[float]] = {"raw script": [], f"fmal embed ({DEFAULT_BACKEND})": []}
        for _ in range(repeats):
            runs["raw script"].append(_timed(raw_cmd))
            runs[f"fmal embed ({DEFAULT_BACKEND})"].append(_timed(fmal_cmd))
        raw_X = np.load(raw_npy)
        ids = pd.read_parquet(ix / "bench" / "rows.parquet")["id"].tolist()
        fmal_X = np.load(ix / "bench" / "embeddings.npy").astype(np.float32)
        cos = (raw_X[[int(i[1:]) for i in ids]] * fmal_X).sum(axis=1)
    best = {k: min(v) for k, v in runs.items()}
    raw = best["raw script"]
    ratio = raw / best[f"fmal embed ({DEFAULT_BACKEND})"]
    print(f"{len(texts):,} texts of {', '.join(_results.DATASETS)}, {available_threads()} core(s), each side a process "
          f"of its own (start-up, imports, model load, encode, save), best of {repeats} interleaved runs")
    for k, sec in best.items():
        print(f"{k:28s} {sec:8.2f} s {len(texts) / sec:8.1f} texts/s {raw / sec:6.2f}x")
    print(f"fmal embed / raw = {ratio:.2f} (target >= 2.0): {'met' if ratio >= 2.0 else 'NOT met'}; "
          f"mean / min cosine to the raw vectors {cos.mean():.4f} / {cos.min():.4f} (target mean >= 0.99)")
    _results.write("embed_throughput_processes",
                   {"n_texts": len(texts), "ratio": round(ratio, 3), "mean_cosine": round(float(cos.mean()), 5),
                    "min_cosine": round(float(cos.min()), 5),
                    "runs": {k: {"seconds": round(sec, 3), "all": [round(x, 3) for x in runs[k]]} for k, sec in best.items()}},
                   seconds=time.perf_counter() - t_start, settings={"n": n, "repeats": repeats})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="CSV with a text column (default: the shipped trec6)")
    ap.add_argument("--processes", action="store_true", help="each side a process of its own, start-up included")
    args = ap.parse_args()
    if args.processes:
        return processes(args.n, args.repeats)
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
