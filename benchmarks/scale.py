"""Scale-out figures on synthetic clustered 384-d unit vectors (no encoder), in one run.

For each pool size: the vectors are written chunk by chunk into a real fmal pool folder (never
held in RAM whole); then, each in its own subprocess so that peak RSS is its own:
  - index build for each index type: seconds, peak RSS, size on disk, recall@10 vs exact search;
  - `fmal seed` with the default strategy (budget 100) and one `fmal query` round (budget 100,
    `--candidates knn:K`) on the auto index: seconds and peak RSS. When the pool is over the RAM cap
    (``--ram-cap``, else half the RAM), seed runs twice: the default (two-level k-means over the
    index's IVF lists, sampled coverage report) and ``--exact`` (every row streamed), with the
    number of the 1,000 gold clusters their 100 picks hit, next to what 100 uniform random picks
    hit on average (about 95: 100 picks rarely share a cluster, so this count says little).
The data is synthetic (isotropic Gaussian clusters), which makes ANN indexes look worse than on
real embeddings: recall here is a lower bound.

    python benchmarks/scale.py --sizes 100000 [1000000 10000000] [--kinds auto flat ivfflat ivfpq hnsw]

Pools go to runs/bench/scale/ (``--workdir``); writes benchmarks/results/scale.json (``--name``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402  (puts the repo on sys.path)

REPO = _results.REPO

DIM = 384


def write_pool(path: Path, n: int, *, k: int = 1000, seed: int = 0, block: int = 200_000) -> np.ndarray:
    """A pool folder of n clustered unit vectors; returns each row's cluster (used as the label)."""
    from fmal._atomic import write_json
    from fmal.pool import files as pool_files

    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, DIM)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    y = rng.integers(0, k, size=n)
    X = np.lib.format.open_memmap(path / pool_files.EMBEDDINGS, mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, block):
        yb = y[s : s + block]
        xb = centers[yb] + 0.08 * rng.normal(size=(len(yb), DIM)).astype(np.float32)
        X[s : s + len(yb)] = xb / np.linalg.norm(xb, axis=1, keepdims=True)
    X.flush()
    del X
    np.save(path / "gold-clusters.npy", y, allow_pickle=False)
    ids = [f"s{i:09d}" for i in range(n)]
    pd.DataFrame({"id": ids, "text": [f"synthetic row {i}" for i in range(n)]}).to_parquet(path / pool_files.ROWS, index=False)
    write_json(path / "manifest.json", {
        "format": pool_files.FORMAT, "format_version": pool_files.FORMAT_VERSION, "n_rows": n, "n_unique_texts": n, "dim": DIM,
        "dtype": "float32", "normalized": True, "model": {"name": "synthetic", "fingerprint": "synthetic"},
        "input": {"path": "synthetic", "format": "synthetic", "fingerprint": f"synthetic-{n}-{seed}", "text_col": "text", "id_col": "id"},
        "index": {}, "files": {"rows": pool_files.ROWS, "embeddings": pool_files.EMBEDDINGS, "index": pool_files.INDEX},
    })
    return y


def run_measured(cmd: list[str], timeout: float = 3600, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``cmd``; return (seconds, peak RSS in GiB of that process, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{out[-2000:]}")
    return secs, usage.ru_maxrss / 2**20, out  # ru_maxrss is in KiB on Linux


BUILD = """
import json, sys, numpy as np
from pathlib import Path
from fmal import index as fi
from fmal._atomic import write_json
from fmal.pool import open_embeddings
from fmal.pool.files import EMBEDDINGS
path, kind, mem, save = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
m = json.load(open(f"{path}/manifest.json"))
X = open_embeddings(Path(path) / EMBEDDINGS, m["n_rows"], m["dim"], m["dtype"])  # blocks past the RAM cap
index, info = fi.build(X, kind, max_memory=mem)
out = f"{path}/index.faiss" if save else f"{path}/index-{kind}.faiss"
fi.save_index(index, out)
if save:
    m["index"] = info; write_json(f"{path}/manifest.json", m)
import os; info["bytes_on_disk"] = os.path.getsize(out)
if not save: os.remove(out)
print("RESULT " + json.dumps(info))
"""


def ray_vs_local(work: Path, n_texts: int) -> list[dict]:
    """Embedding throughput of the Ray engine (local Ray, 2 workers) vs the local engine, on the same
    ``n_texts`` distinct texts sampled from the shipped datasets (as embed_backends.py samples)."""
    from embed_backends import sample_texts

    texts = sample_texts(n_texts)
    n_texts = len(texts)
    data = work / f"ray-texts-{n_texts}.csv"
    pd.DataFrame({"text": texts}).to_csv(data, index=False)
    out = []
    for engine, extra in (("local", []), ("ray", ["--engine", "ray", "--workers", "2"])):
        secs, rss, _ = run_measured([sys.executable, "-m", "fmal", "embed", str(data), "--pool", f"tp-{engine}-{n_texts}",
                                     "--index-dir", str(work), "--overwrite", *extra])
        out.append({"n": n_texts, "step": f"embed {engine} engine", "seconds": round(secs, 1),
                    "texts_per_s": round(n_texts / secs, 1), "peak_rss_gib": round(rss, 2)})
        print("  ", out[-1], flush=True)
    out[-1]["ratio_to_local"] = round(out[0]["seconds"] / out[1]["seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--kinds", nargs="+", default=["flat", "ivfflat", "ivfpq", "auto"])
    ap.add_argument("--max-index-memory", default="4G")
    ap.add_argument("--workdir", default=None, help="where the synthetic pools go (default: runs/bench/scale)")
    ap.add_argument("--name", default="scale", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--knn", type=int, default=50, help="K of --candidates knn:K for the query round")
    ap.add_argument("--ram-cap", default=None,
                    help="FMAL_MAX_RAM for seed and query (e.g. 512M to read a 1M pool block by block as a 10M one "
                         "is on this machine); default: fmal's (half the RAM)")
    ap.add_argument("--ray-texts", type=int, default=0,
                    help="also embed this many texts of the shipped datasets with the local engine and with Ray (2 workers)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    from fmal.index import parse_memory

    mem = parse_memory(args.max_index_memory)
    work = Path(args.workdir) if args.workdir else _results.WORK / "scale"
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    fmal_cli = [py, "-m", "fmal"]
    rows = []
    if args.ray_texts:
        rows += ray_vs_local(work, args.ray_texts)
    for n in args.sizes:
        pool = work / f"synthetic-{n}"
        t0 = time.perf_counter()
        if not (pool / "gold-clusters.npy").exists():
            # in a child process: a process started while this one is large would report this one's
            # peak as its own (Linux folds the pre-exec memory into the child's ru_maxrss)
            run_measured([py, "-c", f"import sys; sys.path.insert(0, {str(REPO / 'benchmarks')!r}); "
                                    f"from scale import write_pool; write_pool(__import__('pathlib').Path({str(pool)!r}), {n})"])
        y = np.load(pool / "gold-clusters.npy", allow_pickle=False)
        matrix_gib = n * DIM * 4 / 2**30
        print(f"\n== {n:,} vectors ({matrix_gib:.2f} GiB float32), written in {time.perf_counter() - t0:.1f} s -> {pool}", flush=True)
        for kind in args.kinds:
            if kind == "flat" and n * DIM * 4 > mem:
                print(f"  {kind}: skipped (exceeds the {args.max_index_memory} budget)")
                continue
            secs, rss, out = run_measured([py, "-c", BUILD, str(pool), kind, str(mem), "1" if kind == "auto" else "0"])
            info = json.loads(out.split("RESULT ", 1)[1])
            rows.append({"n": n, "step": f"index {kind}", "factory": info["factory"], "seconds": round(secs, 1),
                         "peak_rss_gib": round(rss, 2), "disk_mib": round(info["bytes_on_disk"] / 2**20, 1),
                         "recall@10": info["recall_at_10"], "params": info["search_params"]})
            print("  ", rows[-1], flush=True)
        env = {"FMAL_MAX_RAM": args.ram_cap} if args.ram_cap else None
        for old in ("session.json", "labels.csv", "rounds"):  # a cold start: no labels or rounds of an earlier run
            f = pool / old
            if f.is_dir():
                shutil.rmtree(f)
            else:
                f.unlink(missing_ok=True)
        seed_cmd = fmal_cli + ["seed", "--pool", str(pool), "--budget", "100"]
        secs, rss, out = run_measured(seed_cmd + ["--output", str(work / "seed.csv")], env=env)
        blocks = "read in blocks:" in out  # fmal prints info keys with spaces
        mode = "two-level over the IVF lists" if "two level:" in out else ("exact, in blocks" if blocks else "exact")
        picks = pd.read_csv(work / "seed.csv", dtype=str)
        hit = len({int(y[int(i[1:])]) for i in picks["id"]})
        share = np.bincount(y) / len(y)
        expected = float((1 - (1 - share) ** len(picks)).sum())  # distinct clusters hit by as many uniform picks
        rows.append({"n": n, "step": f"fmal seed (default strategy, budget 100; {mode})", "seconds": round(secs, 1),
                     "peak_rss_gib": round(rss, 2), "gold_clusters_hit": hit, "gold_clusters_random": round(expected, 1)})
        print("  ", rows[-1], flush=True)
        if blocks:  # the baseline in the same run: every row streamed from disk
            secs_x, rss_x, _ = run_measured(seed_cmd + ["--exact", "--output", str(work / "seed-exact.csv")], env=env)
            hit_x = len({int(y[int(i[1:])]) for i in pd.read_csv(work / "seed-exact.csv", dtype=str)["id"]})
            rows.append({"n": n, "step": "fmal seed --exact (every row streamed in blocks)", "seconds": round(secs_x, 1),
                         "peak_rss_gib": round(rss_x, 2), "gold_clusters_hit": hit_x, "gold_clusters_random": round(expected, 1)})
            print("  ", rows[-1], f"-> default is {secs_x / secs:.1f}x faster than --exact", flush=True)
        lab = [f"c{y[int(i[1:])] % 10}" for i in picks["id"]]
        pd.DataFrame({"id": picks["id"], "label": lab}).to_csv(work / "labels.csv", index=False)
        secs, rss, out = run_measured(fmal_cli + ["query", "--pool", str(pool), "--labels", str(work / "labels.csv"),
                                                  "--budget", "100", "--candidates", f"knn:{args.knn}", "--output", str(work / "q.csv")],
                                      env=env)
        rows.append({"n": n, "step": f"fmal query (knn:{args.knn}, budget 100)", "seconds": round(secs, 1), "peak_rss_gib": round(rss, 2)})
        print("  ", rows[-1], flush=True)
        rows.append({"n": n, "step": "embedding matrix (reference)", "peak_rss_gib": round(matrix_gib, 2)})
    print("\n" + pd.DataFrame(rows).to_string(index=False))
    _results.write(args.name, {"rows": rows}, backend="none (synthetic vectors, no encoder)", seconds=time.perf_counter() - t_start,
                   settings={"sizes": args.sizes, "kinds": args.kinds, "max_index_memory": args.max_index_memory,
                             "knn": args.knn, "ram_cap": args.ram_cap, "ray_texts": args.ray_texts})


if __name__ == "__main__":
    main()
