"""Does the two-level path lose label efficiency? The k-means seed strategies on a pool over the RAM
cap cluster the IVF index's lists (k-means of their centroids weighted by size) instead of the rows,
and choose each cluster's pick among a sample of its rows (fmal.seed.clustering.pool_kmeans).

On the shipped labeled datasets (benchmarks/data/) (train rows as the pool, held-out test rows to score), for each
budget: the accuracy of a linear probe trained on the picks of each strategy run exactly (rows in
RAM) and two-level (the same rows read as a BlockMatrix, with an IVF index of
``max(auto nlist, --lists-per-pick x budget)`` lists), against random picks, over several seeds.
At 10M rows the auto index has 1,024 lists, about 10 per pick at a budget of 100: the default
``--lists-per-pick 8`` is that regime.

    python benchmarks/seed_two_level.py [--datasets trec6 sms_spam rotten_tomatoes] [--budgets 10 20 40] [--seeds 5]

Writes benchmarks/results/seed_two_level.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402,I001  (puts the repo on sys.path)
import faiss
import numpy as np

from fmal._matrix import BlockMatrix
from fmal.index import _nlist
from fmal.seed import SEED_STRATEGIES
from seed_quality import DATASETS, load_dataset, probe_accuracy


def ivf(X: np.ndarray, nlist: int, seed: int) -> faiss.Index:
    index = faiss.index_factory(X.shape[1], f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.min_points_per_centroid = 1
    index.train(X)
    index.add(X)
    return index


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--budgets", type=int, nargs="+", default=[10, 20, 40])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--strategies", nargs="+", default=["auto", "typiclust", "kmeans"])
    ap.add_argument("--lists-per-pick", type=int, default=8)
    ap.add_argument("--index-dir", type=Path, default=None, help="where the pools are (default runs/bench/pools)")
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows: list[dict] = []
    print("| dataset | budget | lists | random | " + " | ".join(f"{s} exact | {s} two-level" for s in args.strategies) + " |")
    print("|---|---:|---:|---:|" + "---:|---:|" * len(args.strategies))
    gaps: list[float] = []
    seconds = {"exact": 0.0, "two-level": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            Xtr, ytr, Xte, yte = load_dataset(name, args.index_dir)
            f = Path(tmp) / f"{name}.npy"
            np.save(f, Xtr)
            B = BlockMatrix(f)
            for budget in args.budgets:
                nlist = max(_nlist(len(Xtr)), args.lists_per_pick * budget)
                acc: dict[str, list[float]] = {}
                for seed in range(args.seeds):
                    index = ivf(Xtr, nlist, seed)
                    rnd = np.random.default_rng(seed).choice(len(Xtr), size=budget, replace=False)
                    acc.setdefault("random", []).append(probe_accuracy(Xtr, ytr, Xte, yte, rnd, seed))
                    for s in args.strategies:
                        for mode, X in (("exact", Xtr), ("two-level", B)):
                            t0 = time.perf_counter()
                            res = SEED_STRATEGIES.call(s, X, budget, index=index, random_state=seed)
                            seconds[mode] += time.perf_counter() - t0
                            assert ("two_level" in res.info) == (mode == "two-level"), res.info
                            acc.setdefault(f"{s} {mode}", []).append(probe_accuracy(Xtr, ytr, Xte, yte, res.indices, seed))
                cells = [f"{np.mean(acc['random']):.3f}"]
                for s in args.strategies:
                    e, t = np.mean(acc[f"{s} exact"]), np.mean(acc[f"{s} two-level"])
                    gaps.append(t - e)
                    cells += [f"{e:.3f}", f"{t:.3f}"]
                rows.append({"dataset": name, "budget": budget, "lists": nlist,
                             **{k: round(float(np.mean(v)), 4) for k, v in acc.items()}})
                print(f"| {name} | {budget} | {nlist} | " + " | ".join(cells) + " |", flush=True)
    print(f"\ntwo-level minus exact accuracy: mean {np.mean(gaps):+.4f}, min {np.min(gaps):+.4f}, max {np.max(gaps):+.4f} "
          f"over {len(gaps)} cells ({args.seeds} seeds each)")
    print(f"strategy seconds: exact {seconds['exact']:.1f}, two-level {seconds['two-level']:.1f} (small pools: "
          "the two-level path pays off when the exact one streams the pool from disk)")
    _results.write("seed_two_level", {"cells": rows, "gap_mean": round(float(np.mean(gaps)), 4),
                                      "gap_min": round(float(np.min(gaps)), 4), "gap_max": round(float(np.max(gaps)), 4),
                                      "n_cells": len(gaps)},
                   seconds=time.perf_counter() - t_start,
                   settings={"datasets": args.datasets, "budgets": args.budgets, "seeds": args.seeds,
                             "strategies": args.strategies, "lists_per_pick": args.lists_per_pick})


if __name__ == "__main__":
    main()
