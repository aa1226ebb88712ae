"""Label efficiency of the query strategies on the shipped labeled datasets (benchmarks/data/).

For each dataset, strategy and seed: 20 seed labels (random, seeded), then rounds of 20 picks up to
200 labels; at each step a LinearProbe is fitted on the labels so far and its accuracy measured on
the fixed held-out ``test`` rows. The pool is the ``train`` rows; their gold label is the annotator.
Prints accuracy per step (mean over seeds) and AULC (mean accuracy over the steps) vs random as
markdown, plus the probe's expected calibration error (ECE) on the test rows.

    python benchmarks/query_quality.py                       # embeds the datasets if needed
    python benchmarks/query_quality.py --jobs 16 --seeds 5

Pure functions only (LinearProbe + QUERY_STRATEGIES over the embeddings), no CLI. The first step
(``prepare``) embeds each dataset with ``fmal embed`` (default backend) into ``--index-dir``
(default runs/bench/pools) unless a finished pool is already there, and writes embeddings + labels
as .npz in ``--cache`` (default runs/bench/cache), which the worker processes read. Writes
benchmarks/results/query_quality.json (``--name``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _results  # noqa: E402,I001  (puts the repo on sys.path)

import numpy as np
import pandas as pd

DATASETS = ("trec6", "sms_spam", "rotten_tomatoes")
DEFAULT_STRATEGIES = (
    "random", "margin", "entropy", "least-confidence", "cluster-margin", "badge", "typical-margin", "auto",
    # ablations of auto: no typical phase, a later switch, no random share, margin after the switch
    "auto:switch_per_class=0", "auto:switch_per_class=5", "auto:switch_per_class=20", "auto:random_share=0",
    "auto:then=margin",
)


def prepare(name: str, data_dir: Path | None, index_dir: Path, cache: Path) -> Path:
    """Embed ``name`` (unless its pool is up to date) and write X, labels and split as .npz."""
    from fmal import api
    from fmal.pool import open_pool

    out = cache / f"{name}.npz"
    csv = data_dir / f"{name}.csv" if data_dir else _results.dataset_csv(name)
    api.embed(csv, name, index_dir=index_dir)  # "nothing to do" when the pool is built from this file
    p = open_pool(name, index_dir)
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    rows = p.rows_of(df["id"].tolist(), source=name)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, X=np.asarray(p.embeddings[rows], dtype=np.float32), y=df["label"].to_numpy(dtype=str),
             split=df["split"].to_numpy(dtype=str))
    return out


def parse_strategy(spec: str) -> tuple[str, dict[str, float | str]]:
    """``name`` or ``name:key=value,key=value`` -> (name, params); numbers become floats."""
    name, _, rest = spec.partition(":")

    def value(v: str) -> float | str:
        try:
            return float(v)
        except ValueError:
            return v

    params = {k: value(v) for k, v in (kv.split("=") for kv in rest.split(",") if kv)}
    return name, params


def run_one(task: tuple) -> dict:
    """One learning curve: (cache file, strategy spec, seed, n_seed, step, max_labels, probe C)."""
    import faiss

    from fmal.probe import LinearProbe, expected_calibration_error
    from fmal.query import QUERY_STRATEGIES, QueryContext

    faiss.omp_set_num_threads(1)
    path, spec, seed, n_seed, step, max_labels, probe_c = task
    d = np.load(path)
    train, test = d["split"] == "train", d["split"] == "test"
    X, y = np.ascontiguousarray(d["X"][train]), d["y"][train]
    Xt, yt = d["X"][test], d["y"][test]
    index = faiss.IndexFlatIP(X.shape[1])
    index.add(X)
    name, params = parse_strategy(spec)
    QUERY_STRATEGIES.check(name, params)  # a misspelt parameter fails before any work
    rng = np.random.default_rng(seed)
    labeled = np.sort(rng.choice(X.shape[0], size=n_seed, replace=False))
    acc, ece, seconds = [], [], 0.0
    while True:
        probe = LinearProbe(C=probe_c, random_state=seed).fit(X[labeled], y[labeled]) if np.unique(y[labeled]).size > 1 else None
        if probe is None:  # one class so far: predict it everywhere
            acc.append(float(np.mean(yt == y[labeled][0])))
            ece.append(float("nan"))
        else:
            pt = probe.predict_proba(Xt)
            acc.append(float(np.mean(probe.classes_[pt.argmax(1)] == yt)))
            ece.append(expected_calibration_error(pt, yt, probe.classes_))
        if labeled.size >= max_labels:
            break
        mask = np.ones(X.shape[0], dtype=bool)
        mask[labeled] = False
        cand = np.nonzero(mask)[0]
        t0 = time.perf_counter()
        if probe is None:
            picks = np.random.default_rng(seed * 7919 + labeled.size).choice(cand, size=step, replace=False)
        else:
            proba = probe.predict_proba(X[cand])
            ctx = QueryContext(X=X, candidates=cand, proba=proba, classes=probe.classes_, labeled=labeled,
                               index=index, probe=probe, random_state=seed * 7919 + labeled.size)
            picks = QUERY_STRATEGIES.call(name, ctx, step, **params).indices
        seconds += time.perf_counter() - t0
        assert np.unique(picks).size == step and not np.isin(picks, labeled).any(), spec
        labeled = np.sort(np.concatenate([labeled, picks]))
    return {"dataset": Path(path).stem, "strategy": spec, "seed": seed, "acc": acc, "ece": ece, "query_s": seconds}


def aulc(acc: list[float]) -> float:
    """Normalised area under the learning curve (trapezoid over equally spaced steps)."""
    a = np.asarray(acc)
    return float(np.trapezoid(a) / (a.size - 1)) if a.size > 1 else float(a[0])


def report(results: list[dict], n_seed: int, step: int) -> str:
    """Markdown: accuracy per step and AULC per strategy, per dataset; AULC summary vs random."""
    df = pd.DataFrame(results)
    df["aulc"] = df["acc"].map(aulc)
    out = []
    for ds, g in df.groupby("dataset", sort=False):
        steps = len(g["acc"].iloc[0])
        labels = [n_seed + i * step for i in range(steps)]
        out.append(f"\n### {ds}: test accuracy (mean of {g['seed'].nunique()} seeds) by number of labels\n")
        out.append("| strategy | " + " | ".join(map(str, labels)) + " | AULC | vs random |")
        out.append("|---|" + "---|" * (steps + 2))
        rnd = g[g["strategy"] == "random"]["aulc"].mean()
        for s, gs in g.groupby("strategy", sort=False):
            m = np.mean(np.stack(gs["acc"].to_list()), axis=0)
            out.append(f"| {s} | " + " | ".join(f"{v:.3f}" for v in m)
                       + f" | {gs['aulc'].mean():.4f} ± {gs['aulc'].std(ddof=1) if len(gs) > 1 else 0:.4f}"
                       + f" | {gs['aulc'].mean() - rnd:+.4f} |")
    piv = df.groupby(["strategy", "dataset"], sort=False)["aulc"].mean().unstack()
    piv["mean"] = piv.mean(axis=1)
    out.append("\n### AULC summary (mean over seeds; last column: mean over datasets)\n")
    out.append("| strategy | " + " | ".join(piv.columns) + " |")
    out.append("|---|" + "---|" * len(piv.columns))
    for s, r in piv.iterrows():
        out.append(f"| {s} | " + " | ".join(f"{v:.4f}" for v in r) + " |")
    rnd = df[df["strategy"] == "random"]
    if len(rnd):
        e = rnd.groupby("dataset", sort=False)["ece"].apply(lambda s: np.nanmean([v[-1] for v in s]))
        out.append(f"\nProbe calibration (random picks, {n_seed + (len(rnd['acc'].iloc[0]) - 1) * step} labels): "
                   "ECE on test rows: " + ", ".join(f"{k} {v:.3f}" for k, v in e.items()))
    qs = df.groupby("strategy", sort=False)["query_s"].mean()
    out.append("\nQuery seconds per curve (mean): " + ", ".join(f"{k} {v:.2f}" for k, v in qs.items()))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS))
    ap.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-seed", type=int, default=20)
    ap.add_argument("--step", type=int, default=20)
    ap.add_argument("--max-labels", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--probe-c", default="auto", help="the probe's C: 'auto' (cross-validated) or a number")
    ap.add_argument("--data-dir", type=Path, default=None, help="read NAME.csv here instead of the shipped datasets")
    ap.add_argument("--index-dir", type=Path, default=None, help="where the pools are (default runs/bench/pools)")
    ap.add_argument("--cache", type=Path, default=None, help="default runs/bench/cache")
    ap.add_argument("--json", type=Path, default=None, help="also write the raw curves here")
    ap.add_argument("--name", default="query_quality", help="results file: benchmarks/results/NAME.json")
    ap.add_argument("--prepare-only", action="store_true")
    a = ap.parse_args(argv)
    os.chdir(_results.REPO)
    a.index_dir = a.index_dir or _results.pools_dir()
    a.cache = a.cache or _results.WORK / "cache"
    files = [prepare(ds, a.data_dir, a.index_dir, a.cache) for ds in a.datasets]
    if a.prepare_only:
        return
    probe_c = a.probe_c if a.probe_c == "auto" else float(a.probe_c)
    tasks = [(str(f), s, seed, a.n_seed, a.step, a.max_labels, probe_c) for f in files for s in a.strategies for seed in range(a.seeds)]
    t0 = time.perf_counter()
    if a.jobs > 1:
        with ProcessPoolExecutor(a.jobs) as ex:
            results = list(ex.map(run_one, tasks, chunksize=1))
    else:
        results = [run_one(t) for t in tasks]
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results))
    print(report(results, a.n_seed, a.step))
    print(f"\n{len(tasks)} curves in {time.perf_counter() - t0:.0f} s with {a.jobs} jobs")
    df = pd.DataFrame(results)
    df["aulc"] = df["acc"].map(aulc)
    numbers: dict = {}
    for (ds, st), g in df.groupby(["dataset", "strategy"], sort=False):
        rnd = df[(df["dataset"] == ds) & (df["strategy"] == "random")].set_index("seed")["aulc"]
        diff = (g.set_index("seed")["aulc"] - rnd).dropna() * 100
        numbers.setdefault(ds, {})[st] = {"aulc": round(float(g["aulc"].mean()), 4),
                                          "vs_random_points": {"mean": round(float(diff.mean()), 3), **_t_interval(diff.to_numpy())},
                                          "per_seed_aulc": [round(float(v), 4) for v in g.sort_values("seed")["aulc"]]}
    _results.write(a.name, numbers, seconds=time.perf_counter() - t0,
                   settings={"datasets": a.datasets, "strategies": a.strategies, "seeds": a.seeds, "n_seed": a.n_seed,
                             "step": a.step, "max_labels": a.max_labels, "probe_c": a.probe_c,
                             "data": "shipped" if a.data_dir is None else _results.rel(a.data_dir)})


def _t_interval(d: np.ndarray) -> dict:
    """95% two-sided t-interval of the mean of paired differences (points)."""
    from scipy import stats

    if d.size < 2:
        return {"lo": None, "hi": None}
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return {"lo": round(float(d.mean()) - half, 3), "hi": round(float(d.mean()) + half, 3)}


if __name__ == "__main__":
    main()
