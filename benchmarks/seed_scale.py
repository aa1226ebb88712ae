"""Seconds and peak RSS of every fmal seed strategy on synthetic pools of 384-d unit vectors
(clustered, not uniform), against scikit-activeml's TypiClust / ProbCover / CoreSet and
small-text's greedy_coreset at the sizes they can handle.

Each run is its own subprocess, so its peak RSS (``ru_maxrss``, which counts the touched pages of
the memory-mapped matrix) is its own. fmal reads the pool memory-mapped, as ``fmal seed`` does; the
peers get the matrix in RAM (they need it). ``select`` = strategy + the coverage report the CLI
prints; ``strategy`` = the strategy alone. Wall and CPU seconds are both reported: on a shared
machine CPU seconds are the fairer comparison, and the peer ratio uses them (set OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1 for a like-for-like single-thread comparison).

    python benchmarks/seed_scale.py                       # 20k, 100k, 1M; budget 100
    python benchmarks/seed_scale.py --sizes 20000 --no-peers
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
#: peer -> (fmal strategy it implements, pool sizes it is run on)
PEERS = {
    "skactiveml.TypiClust": ("typiclust", (100_000,)),
    "skactiveml.CoreSet": ("kcenter", (100_000,)),
    "small_text.greedy_coreset": ("kcenter", (100_000,)),
    "skactiveml.ProbCover": ("probcover", (20_000,)),  # float64 N x N distances: 3.2 GB at 20k, 80 GB at 100k
}
#: below this size fmal strategies run only where a peer is compared
FULL_SIZE = 100_000
FMAL = ("random", "kmeans", "typiclust", "kcenter", "probcover", "auto")


def default_cache() -> Path:
    return Path(os.environ.get("FMAL_BENCH_CACHE", Path.home() / ".cache" / "fmal" / "bench" / "seed_scale"))


def make_pool(path: Path, n: int, *, n_clusters: int = 500, seed: int = 0, block: int = 65536) -> Path:
    """A seeded pool of ``n`` unit vectors around ``n_clusters`` centres of Zipf-like sizes and
    varied spreads, written block by block to ``path`` (.npy). Reused when it already exists."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, DIM))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    weights /= weights.sum()
    spread = rng.uniform(0.03, 0.07, size=n_clusters)  # per-dim noise: cos to centre ~0.6-0.9
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    X = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, DIM))
    for s in range(0, n, block):
        b = min(block, n - s)
        lab = rng.choice(n_clusters, size=b, p=weights)
        xb = centers[lab] + spread[lab, None] * rng.normal(size=(b, DIM))
        X[s : s + b] = (xb / np.linalg.norm(xb, axis=1, keepdims=True)).astype(np.float32)
    X.flush()
    del X
    os.replace(tmp, path)
    return path


def worker(kind: str, name: str, data: Path, budget: int, seed: int) -> dict:
    """Run one strategy in this (fresh) process and return its timings and peak RSS."""
    out: dict = {"kind": kind, "name": name}
    if kind == "fmal":
        from fmal.seed import SEED_STRATEGIES, diagnose

        X = np.load(data, mmap_mode="r")
        t0, c0 = time.perf_counter(), time.process_time()
        res = SEED_STRATEGIES.call(name, X, budget, random_state=seed)
        t1, c1 = time.perf_counter(), time.process_time()
        diagnose(X, res.indices, delta=res.delta, assign=res.assign, random_state=seed)
        t2, c2 = time.perf_counter(), time.process_time()
        out.update(strategy_s=t1 - t0, select_s=t2 - t0, strategy_cpu=c1 - c0, select_cpu=c2 - c0,
                   picks=int(np.unique(res.indices).size), info=_short(res.info))
    else:
        X = np.load(data)
        n = X.shape[0]
        t0, c0 = time.perf_counter(), time.process_time()
        if name == "small_text.greedy_coreset":
            from small_text.query_strategies.coresets import greedy_coreset

            # it needs one labeled row to start from: the row nearest the pool's mean, as fmal's kcenter
            first = int(np.argmax(X @ X.mean(axis=0)))
            rest = greedy_coreset(X, np.arange(n), np.asarray([first]), budget - 1, distance_metric="euclidean", normalized=True)
            picks = np.concatenate([[first], np.asarray(rest, dtype=np.int64)])
        else:
            import skactiveml.pool as skp

            cls = getattr(skp, name.split(".")[1])
            y = np.full(n, np.nan)
            picks = cls(random_state=seed).query(X, y, batch_size=budget)
        t1, c1 = time.perf_counter(), time.process_time()
        out.update(strategy_s=t1 - t0, select_s=t1 - t0, strategy_cpu=c1 - c0, select_cpu=c1 - c0, picks=int(np.unique(picks).size))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _short(info: dict) -> dict:
    return {k: v for k, v in info.items() if k in {"delta", "graph_rows", "note", "sample_coverage"}}


def run_one(kind: str, name: str, data: Path, budget: int, seed: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, name, str(data), str(budget), str(seed)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"kind": kind, "name": name, "error": f"timeout {timeout:.0f} s"}
    if p.returncode != 0:
        err = (p.stderr.strip().splitlines() or ["?"])[-1]
        return {"kind": kind, "name": name, "error": err[:120]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", nargs="+", default=list(FMAL))
    ap.add_argument("--peers", nargs="*", default=list(PEERS), help="peer names; none with --no-peers")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--output", type=Path, help="also write the markdown table here")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        kind, name, data, budget, seed = a.worker
        print(json.dumps(worker(kind, name, Path(data), int(budget), int(seed))))
        return
    peers = [] if a.no_peers else a.peers
    print(f"pools cached under {a.cache} (budget {a.budget}, seed {a.seed}, {os.cpu_count()} cores)", flush=True)
    rows: list[dict] = []
    for n in a.sizes:
        t0 = time.perf_counter()
        data = make_pool(a.cache / f"clustered-{n}x{DIM}-s{a.seed}.npy", n, seed=a.seed)
        print(f"\n## n = {n:,} ({n * DIM * 4 / 2**20:,.0f} MB matrix; pool ready in {time.perf_counter() - t0:.1f} s)", flush=True)
        res: dict[str, dict] = {}
        here = [s for s in a.strategies if n >= FULL_SIZE or any(PEERS[p][0] == s and n in PEERS[p][1] for p in peers)]
        for s in here:
            res[s] = r = run_one("fmal", s, data, a.budget, a.seed, a.timeout)
            rows.append({"n": n, **r})
            print(f"  fmal {s:<10} " + _fmt(r, n), flush=True)
        for peer in peers:
            strat, sizes = PEERS[peer]
            if n not in sizes:
                continue
            r = run_one("peer", peer, data, a.budget, a.seed, a.timeout)
            mine = res.get(strat, {})
            if "select_cpu" in mine and "strategy_cpu" in r:  # CPU seconds: fair on a shared machine
                r["ratio"] = r["strategy_cpu"] / mine["strategy_cpu"]  # the same work: the peers print no report
                r["ratio_report"] = r["strategy_cpu"] / mine["select_cpu"]
                r["ratio_wall"] = r["strategy_s"] / mine["strategy_s"]
            rows.append({"n": n, **r, "vs": strat})
            print(f"  {peer:<26} " + _fmt(r, n), flush=True)
    table = markdown(rows)
    print("\n" + table)
    if a.output:
        a.output.write_text(table + "\n", encoding="utf-8")
        print(f"wrote {a.output}")


def _fmt(r: dict, n: int) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    x = n * DIM * 4 / 2**20
    s = (f"{r['strategy_s']:7.2f} s wall, {r['strategy_cpu']:6.2f} s CPU (with report {r['select_s']:6.2f} s wall, "
         f"{r['select_cpu']:6.2f} s CPU)  peak RSS {r['peak_rss_mb']:7.0f} MB = {r['peak_rss_mb'] / x:4.2f}x matrix")
    if "ratio" in r:
        s += f"  fmal is {r['ratio']:.1f}x faster in CPU ({r['ratio_wall']:.1f}x wall; {r['ratio_report']:.1f}x with its report)"
    if r.get("info"):
        s += f"  {r['info']}"
    return s


def markdown(rows: list[dict]) -> str:
    out = ["| n | implementation | strategy s wall (CPU) | with report s wall (CPU) | peak RSS MB | RSS / matrix "
           "| peer / fmal: CPU s | wall s | CPU s, fmal with report |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        who = f"fmal {r['name']}" if r["kind"] == "fmal" else f"{r['name']} (vs fmal {r['vs']})"
        if "error" in r:
            out.append(f"| {r['n']:,} | {who} | {r['error']} | | | | | | |")
            continue
        x = r["n"] * DIM * 4 / 2**20
        ratio = f"{r['ratio']:.1f} | {r['ratio_wall']:.1f} | {r['ratio_report']:.1f}" if "ratio" in r else " | "
        out.append(f"| {r['n']:,} | {who} | {r['strategy_s']:.2f} ({r['strategy_cpu']:.2f}) | {r['select_s']:.2f} "
                   f"({r['select_cpu']:.2f}) | {r['peak_rss_mb']:.0f} | "
                   f"{r['peak_rss_mb'] / x:.2f} | {ratio} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
