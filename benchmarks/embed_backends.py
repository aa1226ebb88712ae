"""Speed of fmal's encoder backends against raw sentence-transformers (torch fp32), and how close
their vectors are to it.

    python benchmarks/embed_backends.py [--sizes 2000 20000] [--repeats N] [--batch-size 64] [--slice 2048]

For each size (texts sampled from the three shipped datasets in benchmarks/data/, seed 0) and each
runtime, in one run: texts/s of the encode call (model already loaded, one warm-up batch), the
ratio to raw ``SentenceTransformer.encode``, and the mean and minimum cosine of its embeddings to
raw fp32. Runtimes are interleaved slice by slice (each slice of ``--slice`` texts through every
runtime, the order rotating) so that other load on the machine hits them alike. A slice is 2,048
texts by default, the chunk ``fmal embed`` hands to the encoder: every runtime sorts by length
within the call it gets, so smaller slices would pad more than real use does. Without ``--repeats``
each size is timed over enough rounds to encode at least 4,000 texts per runtime (2 rounds at
2,000, 1 at 20,000).

The physical bound: FLOPs per token of the model (matmuls of every layer, plus attention over the
text's own length) times the tokens encoded, over the measured peak FLOP/s of a large fp32 matrix
multiply (torch) and of an int8 one (onnxruntime MatMulInteger) on this machine.

The accuracy cost of a backend as users run it (pools built by ``fmal embed``, a probe trained and
scored on them) is measured by benchmarks/embed_accuracy.py. Writes
benchmarks/results/embed_backends_SIZE.json for each size (``--name``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402  (puts the repo on sys.path)

BACKENDS = ("torch", "onnx", "onnx-int8")


def sample_texts(n: int) -> list[str]:
    files = [_results.DATA / f"{d}.csv.gz" for d in sorted(_results.DATASETS)]
    texts = pd.concat([pd.read_csv(f, dtype=str)["text"] for f in files]).dropna().drop_duplicates()
    return texts.sample(n=min(n, len(texts)), random_state=0).tolist()


def fp32_peak(threads: int, n: int = 1024, reps: int = 8) -> float:
    """Measured FLOP/s of an n x n fp32 matmul with torch (best of ``reps``)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def int8_peak(threads: int, n: int = 1024, reps: int = 8) -> float:
    """Measured op/s of an n x n uint8 x int8 MatMulInteger with onnxruntime (what onnx-int8 runs)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "mm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]), helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 128, (n, n), dtype=np.uint8), "b": rng.integers(-64, 64, (n, n), dtype=np.int8)}
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        s.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def model_flops(st_model, texts: list[str]) -> tuple[float, int]:
    """(total FLOPs, tokens) to encode ``texts`` unpadded: per token and layer 2*(4*d*d + 2*d*ff)
    for the projections and 4*len*d for attention scores and their weighted sum."""
    cfg = st_model[0].auto_model.config
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    lengths = np.concatenate([
        st_model.preprocess(texts[i : i + 512])["attention_mask"].sum(1).numpy() for i in range(0, len(texts), 512)
    ]).astype(np.float64)
    per_token_fixed = layers * 2 * (4 * d * d + 2 * d * ff)
    flops = float((lengths * (per_token_fixed + layers * 4 * lengths * d)).sum())
    return flops, int(lengths.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--repeats", type=int, default=None, help="rounds per size (default: >= 4,000 texts timed)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--slice", type=int, default=2048, help="texts per interleaving slice (fmal embed's chunk)")
    ap.add_argument("--name", default="embed_backends", help="results file: benchmarks/results/NAME.json")
    args = ap.parse_args()

    from sentence_transformers import SentenceTransformer

    from fmal.encoders import DEFAULT_BACKEND, available_threads, default_model_path, load_encoder

    threads = available_threads()
    raw_model = SentenceTransformer(str(default_model_path()), device="cpu")
    fm = {b: load_encoder(None, backend=b) for b in BACKENDS}  # exports (once, cached) happen here
    runners = {"raw": lambda t, bs: raw_model.encode(t, batch_size=bs, normalize_embeddings=True, show_progress_bar=False)}
    runners |= {b: (lambda t, bs, e=fm[b]: e.encode(t, batch_size=bs)) for b in BACKENDS}
    for r in runners.values():
        r(["warm up the runtime with a first batch"] * 64, args.batch_size)

    peak32, peak8 = fp32_peak(threads), int8_peak(threads)
    print(f"machine: {threads} core(s) available; measured peak: fp32 matmul {peak32 / 1e9:.1f} GFLOP/s (torch), "
          f"int8 MatMulInteger {peak8 / 1e9:.1f} Gop/s (onnxruntime)")
    print("timings may be taken with other jobs on the same cores: runtimes are interleaved slice by slice; "
          "compare ratios within a size")
    results: dict[int, dict[str, dict[str, float]]] = {}
    for n in args.sizes:
        t_size = time.perf_counter()
        texts = sample_texts(n)
        flops, tokens = model_flops(raw_model, texts)
        # fine-grained interleaving: every slice of texts is encoded by every runtime in turn (the
        # order rotating), and the matmul peaks are re-measured between slices, so load from other
        # jobs that comes and goes hits every runtime and the bound alike
        times = {k: 0.0 for k in runners}
        parts: dict[str, list[np.ndarray]] = {k: [] for k in runners}
        peaks32, peaks8 = [peak32], [peak8]
        names = list(runners)
        repeats = args.repeats or max(1, -(-4000 // len(texts)))
        turn = 0
        for rep in range(repeats):
            for lo in range(0, len(texts), args.slice):
                part = texts[lo : lo + args.slice]
                turn += 1
                for k in names[turn % len(names):] + names[: turn % len(names)]:
                    t0 = time.perf_counter()
                    e = runners[k](part, args.batch_size)
                    times[k] += time.perf_counter() - t0
                    if rep == 0:
                        parts[k].append(e)
                peaks32.append(fp32_peak(threads, reps=2))
                peaks8.append(int8_peak(threads, reps=2))
        embs = {k: np.concatenate(v) for k, v in parts.items()}
        peak32, peak8 = float(np.median(peaks32)), float(np.median(peaks8))
        raw_s = times["raw"] / repeats
        rows = {}
        for k in runners:
            cos = (embs[k] * embs["raw"]).sum(1) / np.linalg.norm(embs[k], axis=1) / np.linalg.norm(embs["raw"], axis=1)
            s = times[k] / repeats
            peak = peak8 if k == "onnx-int8" else peak32
            rows[k] = {"texts_s": len(texts) / s, "ratio": raw_s / s, "mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
                       "of_bound": (flops / s) / peak}
        results[n] = {"runtimes": rows}
        bound32 = peak32 / flops * len(texts)
        print(f"\nmedian peaks measured between slices: fp32 {peak32 / 1e9:.1f} GFLOP/s, int8 {peak8 / 1e9:.1f} Gop/s")
        print(f"{len(texts):,} texts, {repeats} round(s) ({tokens:,} tokens, {tokens / len(texts):.1f}/text; "
              f"{flops / 1e12:.2f} TFLOP): "
              f"bound {bound32:,.0f} texts/s at the fp32 peak, {peak8 / flops * len(texts):,.0f} at the int8 peak")
        print(f"{'runtime':12s} {'texts/s':>9s} {'x raw':>6s} {'mean cos':>9s} {'min cos':>8s} {'% of bound':>10s}")
        for k, r in rows.items():
            print(f"{k:12s} {r['texts_s']:9.1f} {r['ratio']:6.2f} {r['mean_cos']:9.5f} {r['min_cos']:8.5f} {100 * r['of_bound']:9.1f}%")
        t0 = time.perf_counter()
        for i in range(0, len(texts), 8192):
            raw_model.preprocess(texts[i : i + 8192])
        tok = time.perf_counter() - t0
        print(f"tokenisation alone: {tok:.2f} s = {100 * tok / (times['onnx-int8'] / repeats):.1f}% of the onnx-int8 encode time "
              "(done once per window, before the forward passes)")
        results[n].update({"n_texts": len(texts), "repeats": repeats, "tokens_per_text": round(tokens / len(texts), 1),
                           "fp32_peak_gflops": round(peak32 / 1e9, 1), "int8_peak_gops": round(peak8 / 1e9, 1),
                           "bound_fp32_texts_s": round(bound32, 1), "bound_int8_texts_s": round(peak8 / flops * len(texts), 1),
                           "tokenisation_share_of_int8": round(tok / (times["onnx-int8"] / repeats), 4),
                           "seconds": time.perf_counter() - t_size})

    prov = _results.provenance(",".join(BACKENDS))
    for n, r in results.items():  # one file per size: a quick run can redo the small size alone
        _results.write(f"{args.name}_{n}", {str(n): r}, provenance_=prov, seconds=r.pop("seconds"),
                       settings={"sizes": args.sizes, "batch_size": args.batch_size, "slice": args.slice,
                                 "repeats": args.repeats, "default_backend": DEFAULT_BACKEND})


if __name__ == "__main__":
    main()
