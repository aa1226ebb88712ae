"""Cost of one query round on big synthetic pools: fit the probe + score + select 100.

Synthetic 384-d pools (unit vectors around 50 random centres, 6 classes) of 100k and 1M rows are
written as memory-mapped .npy files with a flat FAISS index beside them, like a real fmal pool.
Each configuration runs in its own subprocess, so its peak RSS is its own: full scan
(``--candidates all``) vs SEALS (``knn:K``) for several strategies, and at 100k modAL's and
small-text's equivalent margin query (fit LogisticRegression on the labels, score the pool, take
the top 100), in the same run. Prints a markdown table.

    python benchmarks/query_scale.py                  # 100k and 1M
    python benchmarks/query_scale.py --sizes 100000   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

DIM = 384
N_CLASSES = 6
N_LABELS = 200
BUDGET = 100
STRATEGIES = ("margin", "cluster-margin", "badge", "typical-margin", "auto")


def make_pool(folder: Path, n: int, seed: int = 0, chunk: int = 100_000) -> None:
    """Write X.npy (memmap, unit rows), y.npy (class of each row) and index.faiss (flat IP)."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centre_class = rng.integers(0, N_CLASSES, size=50)
    X = np.lib.format.open_memmap(folder / "X.npy", mode="w+", dtype=np.float32, shape=(n, DIM))
    y = np.empty(n, dtype=np.int64)
    index = faiss.IndexFlatIP(DIM)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        c = rng.integers(0, 50, size=m)
        xb = centres[c] + 0.08 * rng.normal(size=(m, DIM)).astype(np.float32)
        xb /= np.linalg.norm(xb, axis=1, keepdims=True)
        X[s : s + m] = xb
        y[s : s + m] = centre_class[c]
        index.add(xb)
    X.flush()
    del X
    np.save(folder / "y.npy", y)
    faiss.write_index(index, str(folder / "index.faiss"))


def make_ivf(folder: Path, seed: int = 0, chunk: int = 100_000) -> None:
    """An approximate index as a big pool would use: IVF (nlist ~ 4 sqrt(N), at most 1024), nprobe 16."""
    import faiss

    X = np.load(folder / "X.npy", mmap_mode="r")
    n = X.shape[0]
    nlist = int(min(1024, 4 * np.sqrt(n)))
    ivf = faiss.index_factory(DIM, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    train = np.sort(np.random.default_rng(seed).choice(n, size=min(n, 32 * nlist), replace=False))
    ivf.train(np.ascontiguousarray(X[train]))
    for s in range(0, n, chunk):
        ivf.add(np.ascontiguousarray(X[s : s + chunk]))
    faiss.write_index(ivf, str(folder / "index_ivf.faiss"))


def _labeled(n: int, seed: int = 0) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=N_LABELS, replace=False))


def run_fmal(folder: Path, strategy: str, candidates: str, ivf: bool = False) -> dict:
    """One fmal round, the way ``fmal.api.query`` does it, on the pool in ``folder``."""
    import faiss

    from fmal.api.rounds import _proba_batched
    from fmal.probe import LinearProbe
    from fmal.query import QUERY_STRATEGIES, QueryContext, knn_candidates, parse_candidates

    X = np.load(folder / "X.npy", mmap_mode="r")
    y = np.load(folder / "y.npy")
    n = X.shape[0]
    labeled = _labeled(n)
    spec = parse_candidates(candidates)
    t_load = time.perf_counter()
    index = None
    if spec.kind == "knn":
        index = faiss.read_index(str(folder / ("index_ivf.faiss" if ivf else "index.faiss")))
        if ivf:
            faiss.extract_index_ivf(index).nprobe = 16
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    probe = LinearProbe(random_state=0).fit(np.asarray(X[labeled]), y[labeled].astype(str))
    t_fit = time.perf_counter()
    excluded = np.zeros(n, dtype=bool)
    excluded[labeled] = True
    cand = knn_candidates(index, X, labeled, excluded, spec.k, BUDGET) if spec.kind == "knn" else np.nonzero(~excluded)[0]
    proba = _proba_batched(probe, X, cand)
    t_score = time.perf_counter()
    ctx = QueryContext(X=X, candidates=cand, proba=proba, classes=probe.classes_, labeled=labeled, index=index,
                       probe=probe, random_state=0)
    res = QUERY_STRATEGIES.get(strategy)(ctx, BUDGET)
    t1 = time.perf_counter()
    assert res.indices.size == BUDGET
    return {"fit_s": t_fit - t0, "score_s": t_score - t_fit, "select_s": t1 - t_score, "round_s": t1 - t0,
            "index_load_s": load_s, "scored": int(cand.size)}


def run_modal(folder: Path) -> dict:
    """modAL: ActiveLearner(LogisticRegression(C=10)) fitted on the labels, margin_sampling query."""
    from modAL.models import ActiveLearner
    from modAL.uncertainty import margin_sampling
    from sklearn.linear_model import LogisticRegression

    X = np.load(folder / "X.npy", mmap_mode="r")
    y = np.load(folder / "y.npy")
    labeled = _labeled(X.shape[0])
    t0 = time.perf_counter()
    pool_mask = np.ones(X.shape[0], dtype=bool)
    pool_mask[labeled] = False
    learner = ActiveLearner(estimator=LogisticRegression(C=10.0, max_iter=1000), query_strategy=margin_sampling,
                            X_training=np.asarray(X[labeled]), y_training=y[labeled])
    t_fit = time.perf_counter()
    X_pool = np.asarray(X[pool_mask])
    idx, _ = learner.query(X_pool, n_instances=BUDGET)
    t1 = time.perf_counter()
    assert len(idx) == BUDGET
    return {"fit_s": t_fit - t0, "score_s": float("nan"), "select_s": t1 - t_fit, "round_s": t1 - t0,
            "index_load_s": 0.0, "scored": int(pool_mask.sum())}


def run_small_text(folder: Path) -> dict:
    """small-text: PoolBasedActiveLearner(LogisticRegression(C=10)) with BreakingTies (= margin)."""
    from sklearn.linear_model import LogisticRegression
    from small_text import BreakingTies, PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

    X = np.load(folder / "X.npy", mmap_mode="r")
    y = np.load(folder / "y.npy")
    labeled = _labeled(X.shape[0])
    t0 = time.perf_counter()
    data = SklearnDataset(np.asarray(X), y, target_labels=np.arange(N_CLASSES))
    factory = SklearnClassifierFactory(LogisticRegression(C=10.0, max_iter=1000), N_CLASSES)
    learner = PoolBasedActiveLearner(factory, BreakingTies(), data)
    learner.initialize_data(labeled, y[labeled])
    t_fit = time.perf_counter()
    idx = learner.query(num_samples=BUDGET)
    t1 = time.perf_counter()
    assert len(idx) == BUDGET
    return {"fit_s": t_fit - t0, "score_s": float("nan"), "select_s": t1 - t_fit, "round_s": t1 - t0,
            "index_load_s": 0.0, "scored": int(X.shape[0] - N_LABELS)}


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args: list[str]) -> None:
    """Run one configuration and print its result (with this process's peak RSS) as JSON."""
    folder, tool, strategy, candidates = Path(args[0]), args[1], args[2], args[3]
    if tool == "fmal":
        out = run_fmal(folder, strategy, candidates.removesuffix("+ivf"), ivf=candidates.endswith("+ivf"))
    elif tool == "modAL":
        out = run_modal(folder)
    else:
        out = run_small_text(folder)
    out["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    ap.add_argument("--knn", type=int, default=100, help="K of the knn:K candidates")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--flat-knn-max", type=int, default=10**9,
                    help="skip knn:K on the flat index above this many rows (it scans the pool once per labeled row)")
    ap.add_argument("--workdir", type=Path, default=None)
    a = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory(prefix="fmal-query-scale-") if a.workdir is None else None
    work = Path(tmp.name) if tmp else a.workdir
    rows = []
    try:
        for n in a.sizes:
            folder = work / f"pool-{n}"
            t = time.perf_counter()
            if not (folder / "index.faiss").exists():
                make_pool(folder, n)
            if not (folder / "index_ivf.faiss").exists():
                make_ivf(folder)
            print(f"pool of {n:,} rows ready in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            cands = ["all", f"knn:{a.knn}", f"knn:{a.knn}+ivf"] if n <= a.flat_knn_max else ["all", f"knn:{a.knn}+ivf"]
            configs = [("fmal", s, c) for s in a.strategies for c in cands]
            if not a.no_peers and n <= 100_000:
                configs += [("modAL", "margin", "all"), ("small-text", "breaking-ties", "all")]
            for tool, strategy, cands in configs:
                proc = subprocess.run([sys.executable, __file__, "--child", str(folder), tool, strategy, cands],
                                      capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:], file=sys.stderr)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                rows.append({"n": n, "tool": tool, "strategy": strategy, "candidates": cands, **r})
                print(f"  {tool} {strategy} {cands}: {r['round_s']:.2f} s, {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
    finally:
        if tmp:
            tmp.cleanup()
    print(f"\nOne round: fit probe on {N_LABELS} labels + score candidates + select {BUDGET} (dim {DIM}, "
          f"{N_CLASSES} classes; synthetic clustered data; seconds of wall clock; index load listed apart; "
          "knn:K searches the flat index, knn:K+ivf an IVF index (nlist <= 1024) with nprobe 16; peak RSS includes ~600 MB of imports)\n")
    print("| rows | tool | strategy | candidates | scored | fit s | score s | select s | round s | index load s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['tool']} | {r['strategy']} | {r['candidates']} | {r['scored']:,} | {r['fit_s']:.2f} | "
              f"{r['score_s']:.2f} | {r['select_s']:.2f} | {r['round_s']:.2f} | {r['index_load_s']:.2f} | "
              f"{r['peak_rss_mb']:.0f} |")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main()
