"""Ingesting embeddings made elsewhere, and growing a pool: seconds and peak memory.

    python benchmarks/ingest.py                      # 1M x 384 float32, append 10%
    python benchmarks/ingest.py --rows 200000        # quicker

Cases, each in its own child process (so its peak memory is its own):

* ``baseline_ingest``: ``np.load`` the whole .npy, normalise it, train and fill the FAISS index
  fmal's ``--index auto`` picks for this size (written to disk): what a script would do.
* ``fmal_ingest``: ``fmal embed --embeddings vectors.npy --ids ids.parquet`` (auto index), the
  whole pool written: embeddings, rows, index, manifest with sha256 of every file.
* ``fmal_index``: the index step alone (``fmal.index.build`` on the written pool's embeddings, auto
  kind, then saved): train, add, recall measurement and nprobe tuning, with the seconds and GFLOP
  of each step. Its ``bound_share`` is the FLOPs of training and assignment (k-means iterations on
  the training sample, then N x nlist x d) over its seconds times the fp32 matmul peak measured in
  the same run (``_results.fp32_peak_gflops``, best of before and after the cases): 100% would be
  pure arithmetic at peak; ``bound_share_train_add`` counts only the train and add seconds. The
  recall queries' exact scores, computed in the add step's products (200 more columns beside the
  nlist centroids), are not counted: the share is a lower bound.
* ``fmal_ingest_ivfsq``: the same with ``--index ivfsq`` (8-bit codes, a quarter of the vectors): memory no longer
  holds the float32 vectors anywhere, which shows what the ingestion itself keeps (blocks).
* ``baseline_append``: ``np.load`` the pool's and the new vectors, concatenate and save them,
  read the index, add the new vectors, write it.
* ``fmal_append``: ``fmal embed --embeddings new.npy --ids new_ids.parquet --pool P --append`` (10%
  of the pool): old embeddings copied block by block, index extended, recall re-measured, checksums.

Peak memory: ``peak_rss`` is the kernel's high-water mark (``ru_maxrss``), which counts the pages
of memory-mapped files a process touched (page cache, reclaimable); ``peak_anon`` is the largest
anonymous memory (``RssAnon``, sampled every 20 ms), what the process itself allocated. Ratios are
fmal / baseline, measured in the same run on the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CASES = ("baseline_ingest", "fmal_ingest", "fmal_index", "fmal_ingest_ivfsq", "baseline_append", "fmal_append")

_SAMPLER = r"""
import json, os, resource, sys, threading, time
peak = {"anon": 0}
def _sample():
    while True:
        try:
            for line in open("/proc/self/status"):
                if line.startswith("RssAnon:"):
                    peak["anon"] = max(peak["anon"], int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.02)
threading.Thread(target=_sample, daemon=True).start()
t0 = time.perf_counter()
"""

_REPORT = r"""
seconds = time.perf_counter() - t0
print("__RESULT__" + json.dumps({"seconds": seconds, "peak_anon": peak["anon"],
      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""

BASELINE_INGEST = r"""
import numpy as np, faiss
from fmal import index as fmal_index
X = np.load(sys.argv[1]).astype(np.float32, copy=False)
X /= np.linalg.norm(X, axis=1, keepdims=True)
choice = fmal_index.choose_index(X.shape[0], X.shape[1])
idx = faiss.index_factory(X.shape[1], choice.factory, faiss.METRIC_INNER_PRODUCT)
if not idx.is_trained:
    rows = np.sort(np.random.default_rng(0).choice(X.shape[0], size=max(64 * choice.nlist, 10_000), replace=False))
    idx.train(X[rows])
idx.add(X)
faiss.write_index(idx, sys.argv[2])
"""

BASELINE_APPEND = r"""
import numpy as np, faiss
old = np.load(sys.argv[1], mmap_mode="r"); new = np.load(sys.argv[2]).astype(np.float32)
new /= np.linalg.norm(new, axis=1, keepdims=True)
np.save(sys.argv[4], np.concatenate([old, new]))
idx = faiss.read_index(sys.argv[3]); idx.add(new); faiss.write_index(idx, sys.argv[5])
"""

FMAL_INDEX = r"""
from fmal import index as fi
from fmal._matrix import BlockMatrix
tm = {}
index, info = fi.build(BlockMatrix(sys.argv[1]), "auto", timings=tm)
fi.save_index(index, sys.argv[2])
print("__INDEX__" + json.dumps({"timings": tm, "factory": info.get("factory"), "recall_at_10": info.get("recall_at_10"),
      "search_params": info.get("search_params")}))
"""

FMAL_CLI = r"""
from fmal.cli import main
sys.argv = ["fmal", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    if exc.code:
        raise
"""


def run(code: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-c", _SAMPLER + code + _REPORT, *args], env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"child failed ({p.returncode}): {p.stderr[-2000:]}")
    out = {}
    for tag in ("__INDEX__", "__RESULT__"):
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith(tag)), None)
        if line is not None:
            out.update(json.loads(line[len(tag):]))
    return out


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--append-share", type=float, default=0.1)
    ap.add_argument("--workdir", type=Path, default=None, help="where the test files go (default: a temp folder, removed)")
    ap.add_argument("--name", default="ingest", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES),
                    help="run only these (fmal_index and the appends need fmal_ingest's pool)")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _results import fp32_peak_gflops

    peak = fp32_peak_gflops(reps=30)  # best of many: on a busy machine a few reps find no quiet moment
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = tempfile.TemporaryDirectory(prefix="fmal-ingest-", dir=args.workdir)
    d = Path(tmp.name)
    n, dim, n_new = args.rows, args.dim, int(args.rows * args.append_share)
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(d / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for s in range(0, n, 100_000):
        X[s : s + 100_000] = rng.normal(size=(min(100_000, n - s), dim))
    X.flush()
    del X
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(n)]}), d / "ids.parquet")
    np.save(d / "new.npy", rng.normal(size=(n_new, dim)).astype(np.float32))
    pq.write_table(pa.table({"id": [f"n{i}" for i in range(n_new)]}), d / "new_ids.parquet")
    file_bytes = (d / "vectors.npy").stat().st_size
    print(f"{n:,} x {dim} float32 = {gib(file_bytes)}; append {n_new:,} rows", flush=True)

    res: dict[str, dict] = {}
    ix = d / "ix"
    common = ["--ids", str(d / "ids.parquet"), "--index-dir", str(ix)]
    cases = {
        "baseline_ingest": lambda: run(BASELINE_INGEST, str(d / "vectors.npy"), str(d / "baseline.faiss")),
        "fmal_ingest": lambda: run(FMAL_CLI, "embed", "--embeddings", str(d / "vectors.npy"), "--pool", "p", *common),
        "fmal_index": lambda: run(FMAL_INDEX, str(ix / "p" / "embeddings.npy"), str(d / "alone.faiss")),
        "fmal_ingest_ivfsq": lambda: run(FMAL_CLI, "embed", "--embeddings", str(d / "vectors.npy"), "--pool", "sq", "--index", "ivfsq",
                                         *common),
        "baseline_append": lambda: run(BASELINE_APPEND, str(ix / "p" / "embeddings.npy"), str(d / "new.npy"),
                                       str(ix / "p" / "index.faiss"), str(d / "grown.npy"), str(d / "grown.faiss")),
        "fmal_append": lambda: run(FMAL_CLI, "embed", "--embeddings", str(d / "new.npy"), "--ids", str(d / "new_ids.parquet"),
                                   "--pool", "p", "--index-dir", str(ix), "--append"),
    }
    import shutil

    for case in CASES:
        if case not in args.cases:
            continue
        res[case] = cases[case]()
        print(case, res[case], flush=True)
        for leftover in (ix / "sq", d / "grown.npy", d / "alone.faiss", d / "baseline.faiss", d / "grown.faiss"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    peak = max(peak, fp32_peak_gflops(reps=30))
    manifest = json.loads((ix / "p" / "manifest.json").read_text()) if (ix / "p" / "manifest.json").exists() else {"index": {}}
    if "fmal_index" in res:
        r = res["fmal_index"]
        sec, gflop = r["timings"]["seconds"], r["timings"]["gflop"]
        flop = gflop.get("train", 0) + gflop.get("add", 0)
        r["bound_share"] = round(flop / peak / r["seconds"], 3)
        r["bound_share_train_add"] = round(flop / peak / (sec["train"] + sec["add"]), 3)

    def ratio(a: str, b: str, key: str) -> float | None:
        return round(res[a][key] / res[b][key], 3) if a in res and b in res else None

    import _results

    prov = _results.provenance()
    prov["machine"]["fp32_peak_gflops"] = round(peak, 1)  # this run's best, before and after the cases
    out = {
        "rows": n, "dim": dim, "file_bytes": file_bytes, "append_rows": n_new, "fp32_peak_gflops": peak,
        "index": {k: manifest["index"].get(k) for k in ("type", "factory", "recall_at_10", "search_params")},
        "results": res,
        "ratios_fmal_over_baseline": {
            "ingest_seconds": ratio("fmal_ingest", "baseline_ingest", "seconds"),
            "ingest_peak_anon": ratio("fmal_ingest", "baseline_ingest", "peak_anon"),
            "ingest_peak_rss": ratio("fmal_ingest", "baseline_ingest", "peak_rss"),
            "append_seconds": ratio("fmal_append", "baseline_append", "seconds"),
            "append_peak_anon": ratio("fmal_append", "baseline_append", "peak_anon"),
        },
        "peak_anon_over_file": {k: round(v["peak_anon"] / file_bytes, 3) for k, v in res.items()},
    }
    _results.write(args.name, out, settings={"rows": n, "dim": dim, "append_share": args.append_share,
                                             "cases": list(args.cases)}, provenance_=prov)
    print(f"\n{'case':<20} {'seconds':>9} {'peak anon':>11} {'peak rss':>11}")
    for k, v in res.items():
        print(f"{k:<20} {v['seconds']:>9.1f} {gib(v['peak_anon']):>11} {gib(v['peak_rss']):>11}")
    print(json.dumps(out["ratios_fmal_over_baseline"]))
    if "fmal_index" in res:
        r = res["fmal_index"]
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"]["seconds"].items())
        print(f"index alone ({r['factory']}, recall@10 {r['recall_at_10']} at {r['search_params']}): {r['seconds']:.1f} s ({steps}); "
              f"train + assignment {sum(r['timings']['gflop'].get(k, 0) for k in ('train', 'add')):.0f} GFLOP at a "
              f"{peak:.0f} GFLOP/s fp32 peak: {100 * r['bound_share']:.0f}% of the FLOP bound "
              f"({100 * r['bound_share_train_add']:.0f}% over the train and add seconds)")
    tmp.cleanup()


if __name__ == "__main__":
    main()
